#!/usr/bin/env bash
# Create .venv and install sim2real with its test extras. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
# The CPU build of PyTorch first: an unpinned torch would pull a multi-GB CUDA build.
python -m pip install -q torch==2.13.0
# Every other package at the versions the README's numbers were measured with (constraints.txt).
python -m pip install -q -c constraints.txt -e ".[test,ray]"
