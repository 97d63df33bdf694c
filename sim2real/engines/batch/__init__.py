"""The ``batch`` engine: the built-in tasks vectorized over ``mujoco.batch``.

:class:`BatchSim` runs ``nsim`` simulations of one task on MuJoCo's C thread
pool (``mujoco.batch.Batch``) and realizes the whole skew pipeline of
DESIGN.md section 3 per simulation, equal to the local pipeline
(:class:`sim2real.skewed_env.SkewedEnv`):

- dynamics as per-simulation model fields (``expand``: ``geom_friction``,
  ``body_mass`` + ``body_inertia`` then ``set_const``, ``dof_damping``,
  ``actuator_gear``, ``opt.gravity``, ``dof_armature``), always relative to the nominal model;
- action and observation latencies on the substep grid, by stepping each
  control step in the segments of :func:`sim2real.skews.step_segments`;
- actuation noise and deadband, sensor bias, noise and dropout, from the same
  per-episode generators (``SeedSequence(seed).spawn``, in the order of
  :data:`~sim2real.engines.batch.pipeline.STREAM_INDEX`) and the same blocks as the local engine;
- reset noise from the task's own ``np_random`` calls
  (:mod:`sim2real.engines.batch.tasks`).

Under the same seeds and actions it gives the Gymnasium env's observations,
rewards and terminations bit for bit (``tests/test_engine_batch.py``).
Per-step randomization (``resample: step``) is not supported.

:func:`run` is the engine for the evaluator: ``run(workload, on_episode)``.
"""

from sim2real.engines.batch.dynamics import BatchDynamics
from sim2real.engines.batch.engine import BatchEngine, run
from sim2real.engines.batch.pipeline import Pipeline, RowStreams, as_point, pipeline_of
from sim2real.engines.batch.sim import BatchSim, StepResult
from sim2real.engines.batch.tasks import KERNELS, State, TaskKernel, kernel_for

__all__ = [
    "KERNELS",
    "BatchDynamics",
    "BatchEngine",
    "BatchSim",
    "Pipeline",
    "RowStreams",
    "State",
    "StepResult",
    "TaskKernel",
    "as_point",
    "kernel_for",
    "pipeline_of",
    "run",
]
