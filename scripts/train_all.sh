#!/usr/bin/env bash
# Train every shipped policy: PPO, seeds 0-2, on the sim variant and with domain randomization
# (configs/randomization/<task_lower>.yaml). Each command trains into runs/ (git-ignored: TensorBoard
# logs and checkpoints stay there) and ships model.zip, vecnormalize.pkl and metadata.json into
# policies/, with its entry in policies/manifest.yaml.
#
# Usage: scripts/train_all.sh [sim|dr|all]   (default all)
# Two lanes run in parallel (the machine has 2 cores; each process uses one torch thread).
set -euo pipefail
cd "$(dirname "$0")/.."
phase="${1:-all}"
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

lane_a() {  # $1 = variant
  train InvertedPendulum "$1" 0
  train InvertedPendulum "$1" 1
  train InvertedPendulum "$1" 2
  train Hopper "$1" 0
  train Walker2d "$1" 0
  train HalfCheetah "$1" 0
  train Hopper "$1" 2
  train Walker2d "$1" 2
}

lane_b() {  # $1 = variant
  train Hopper "$1" 1
  train Walker2d "$1" 1
  train HalfCheetah "$1" 1
  train HalfCheetah "$1" 2
  train InvertedDoublePendulum "$1" 0
  train InvertedDoublePendulum "$1" 1
  train InvertedDoublePendulum "$1" 2
}

for variant in sim dr; do
  if [[ "$phase" == all || "$phase" == "$variant" ]]; then
    lane_a "$variant" > "runs/lane_a_$variant.log" 2>&1 &
    lane_b "$variant" > "runs/lane_b_$variant.log" 2>&1 &
    wait
  fi
done
