#!/usr/bin/env bash
# Set everything up, then run the main job: the sim-to-real demo on the shipped policies.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
sim2real demo --overwrite "$@"   # a rerun replaces results/demo
