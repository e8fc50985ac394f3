#!/usr/bin/env bash
# Train all ten colored-MNIST digit models with the bundled models' recipe (download-free: MNIST is read from
# --data-dir), e.g. for `ddib classify` / `ddib translate` without --from over ten domains.
#   bash training/train_all_digits.sh [DATA_DIR] [MODELS_DIR] [STEPS]
# Environment: MODEL_SIZE (default small), LR (default 5e-4), COOLDOWN (default 0; N: the learning rate decays
# linearly to 0 over the last N steps), DOMAINS (default all ten, space-separated; split them over processes to
# use several cores or GPUs).
# Resumable: re-running continues every model from its last checkpoint. One model at a time; on a multi-GPU
# machine prefix the train command with `torchrun --standalone --nproc-per-node N -m` instead of `ddib`.
set -euo pipefail
DATA_DIR=${1:-${DDIB_DATA_DIR:-data}}
MODELS_DIR=${2:-models}
STEPS=${3:-30000}
for domain in ${DOMAINS:-zeros ones twos threes fours fives sixes sevens eights nines}; do
  ddib train --domain "$domain" --steps "$STEPS" --batch-size 64 --lr "${LR:-5e-4}" --cooldown "${COOLDOWN:-0}" \
    --model-size "${MODEL_SIZE:-small}" --models-dir "$MODELS_DIR" --data-dir "$DATA_DIR" \
    --sample-every 1000 --save-every 250
done
