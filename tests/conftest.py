import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("MUJOCO_GL", "egl")
sys.path.insert(0, str(Path(__file__).parent))  # the test-only robot in sliding_block.py

import sim2real

TASKS = list(sim2real.tasks())


@pytest.fixture(params=TASKS)
def task(request) -> str:
    return request.param
