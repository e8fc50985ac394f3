#!/usr/bin/env bash
# Train many domain models at once on one GPU (a small UNet at batch 64 leaves most of a GPU idle, so several
# processes share it), each resumable, for a bounded wall time: meant for a lent GPU whose calls are time-limited.
#   bash training/gpu_train_all.sh DATA_DIR MODELS_DIR STEPS SECONDS [DOMAIN ...]
# Re-run it to continue; each run stops every process after SECONDS (the last checkpoint is kept, at most
# --save-every steps back). Default domains: all ten digits. Environment: MODEL_SIZE (small), LR (5e-4),
# COOLDOWN (0), DEVICE (cuda), EXTRA (more `ddib train` options).
set -uo pipefail
DATA_DIR=$1; MODELS_DIR=$2; STEPS=$3; SECONDS_LEFT=$4; shift 4
DOMAINS=${*:-zeros ones twos threes fours fives sixes sevens eights nines}
mkdir -p "$MODELS_DIR/logs"
for domain in $DOMAINS; do
  OMP_NUM_THREADS=1 timeout --signal=TERM "$SECONDS_LEFT" python -m ddib train --domain "$domain" \
    --steps "$STEPS" --batch-size 64 --lr "${LR:-5e-4}" --cooldown "${COOLDOWN:-0}" \
    --model-size "${MODEL_SIZE:-small}" --models-dir "$MODELS_DIR" --data-dir "$DATA_DIR" --device "${DEVICE:-cuda}" \
    --sample-every 2000 --save-every 250 ${EXTRA:-} > "$MODELS_DIR/logs/$domain.log" 2>&1 &
done
wait
for domain in $DOMAINS; do echo "$domain: $(tail -n 1 "$MODELS_DIR/logs/$domain.log")"; done
