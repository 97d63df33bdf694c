import os
import sys
from pathlib import Path

import pytest
from hypothesis import settings

# CI explores the same examples every run (a red build is reproducible); locally they vary.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

os.environ.setdefault("MUJOCO_GL", "egl")
sys.path.insert(0, str(Path(__file__).parent))  # the test-only robot in sliding_block.py

import sim2real  # noqa: E402  (after the path set-up; registers the env ids)

TASKS = list(sim2real.tasks())


@pytest.fixture(params=TASKS)
def task(request) -> str:
    return request.param
