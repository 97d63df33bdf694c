#!/usr/bin/env bash
# Train every shipped policy: PPO, seeds 0-2, on the sim variant and with domain randomization
# (configs/randomization/<task_lower>.yaml). Each command trains into runs/ (git-ignored: TensorBoard
# logs and checkpoints stay there) and ships model.zip, vecnormalize.pkl and metadata.json into
# policies/, with its entry in policies/manifest.yaml.
#
# Usage: scripts/train_all.sh [sim|dr|all] [a|b]   (default: all variants, both lanes)
# Two lanes run in parallel (the machine has 2 cores; each process uses one torch thread); the
# second argument runs one lane only, e.g. to start the dr half of a lane when its core frees up.
# Set PYTHON to choose the interpreter (default: python on PATH, e.g. the activated venv).
set -euo pipefail
cd "$(dirname "$0")/.."
phase="${1:-all}"
lanes="${2:-ab}"
mkdir -p runs

train() {  # train TASK VARIANT SEED
  local task="$1" variant="$2" seed="$3" dr=()
  if [[ "$variant" == dr ]]; then
    dr=(--randomization "configs/randomization/${task,,}.yaml")
  fi
  "${PYTHON:-python}" scripts/train_policy.py --task "$task" --seed "$seed" "${dr[@]}" --no-progress \
    --out "runs/$task/$variant/seed$seed" --ship "policies/$task/$variant/seed$seed" \
    || echo "FAILED: $task $variant seed $seed"
}

# Roughly seed-major, so that an interrupted run leaves whole seeds behind.
lane_a() {  # $1 = variant
  train Hopper "$1" 0
  train HalfCheetah "$1" 0
  train InvertedPendulum "$1" 0
  train InvertedPendulum "$1" 1
  train Walker2d "$1" 1
  train InvertedDoublePendulum "$1" 1
  train Hopper "$1" 2
  train HalfCheetah "$1" 2
}

lane_b() {  # $1 = variant
  train Walker2d "$1" 0
  train InvertedDoublePendulum "$1" 0
  train Hopper "$1" 1
  train HalfCheetah "$1" 1
  train InvertedPendulum "$1" 2
  train Walker2d "$1" 2
  train InvertedDoublePendulum "$1" 2
}

case "$phase" in
  all) variants=(sim dr) ;;
  sim | dr) variants=("$phase") ;;
  *) echo "usage: $0 [sim|dr|all] [a|b]" >&2; exit 2 ;;
esac
for lane in a b; do
  if [[ "$lanes" == *"$lane"* ]]; then
    for variant in "${variants[@]}"; do "lane_$lane" "$variant"; done \
      > "runs/lane_${lane}_${phase}.log" 2>&1 &
  fi
done
wait
