"""Engines that run episodes: ``local`` (one process), ``batch`` (mujoco.batch), ``ray``."""
