#!/usr/bin/env bash
# Set everything up, then run the linter and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export MUJOCO_GL="${MUJOCO_GL:-egl}"
export RAY_USAGE_STATS_ENABLED=0   # the Ray tests start a private local Ray; nothing is sent out
ruff check sim2real tests scripts
python -m pytest "$@"
