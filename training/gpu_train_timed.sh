#!/usr/bin/env bash
# Train several domains side by side on one GPU within a wall-time budget, ending with a learning-rate cooldown
# sized from the throughput measured in the same call (a lent GPU's calls are time-limited and its speed is not
# known in advance, so a fixed --steps would either stop before its cooldown or leave time unused).
#   bash training/gpu_train_timed.sh DATA_DIR MODELS_DIR SECONDS DOMAIN...
# Phase 1 trains at constant learning rate for (1 − COOLDOWN_FRACTION) of SECONDS; phase 2 resumes every run with
# --steps = reached + its measured steps/s × the time left × SAFETY and --cooldown over all of those steps.
# Environment: COOLDOWN_FRACTION (0.3), SAFETY (0.8), BATCH (128), LR (5e-4), MODEL_SIZE (small), DEVICE (cuda),
# EXTRA (more `ddib train` options; `{domain}` is replaced by each domain, e.g. "--init-from models/{domain}").
set -uo pipefail
DATA_DIR=$1; MODELS_DIR=$2; BUDGET=$3; shift 3
DOMAINS=$*
FRACTION=${COOLDOWN_FRACTION:-0.3}
PHASE1=$(python -c "print(int($BUDGET * (1 - $FRACTION)))")
mkdir -p "$MODELS_DIR/logs"

train() {  # domain steps cooldown seconds logfile
  OMP_NUM_THREADS=1 timeout --signal=TERM "$4" python -m ddib train --domain "$1" --steps "$2" --cooldown "$3" \
    --batch-size "${BATCH:-128}" --lr "${LR:-5e-4}" --model-size "${MODEL_SIZE:-small}" \
    --models-dir "$MODELS_DIR" --data-dir "$DATA_DIR" --device "${DEVICE:-cuda}" \
    --sample-every 100000000 --save-every 250 --log-every 100 ${EXTRA//\{domain\}/$1} >> "$5" 2>&1
}
trained_steps() { python -c "import json,sys; print(json.load(open(sys.argv[1]))['trained_steps'])" "$MODELS_DIR/$1/config.json" 2>/dev/null || echo 0; }

start=$(date +%s)
for domain in $DOMAINS; do
  trained_steps "$domain" > "$MODELS_DIR/logs/$domain.start"
  train "$domain" 100000000 0 "$PHASE1" "$MODELS_DIR/logs/$domain.log" &
done
wait
elapsed=$(( $(date +%s) - start )); left=$(( BUDGET - elapsed ))
for domain in $DOMAINS; do
  reached=$(trained_steps "$domain")
  # steps/s from the last log line (training time only); phase 2 pays phase 1's start-up time again
  more=$(python - "$MODELS_DIR/logs/$domain.log" "$(cat "$MODELS_DIR/logs/$domain.start")" "$elapsed" "$left" "${SAFETY:-0.8}" <<'PY'
import re, sys
log, first, elapsed, left, safety = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
lines = re.findall(r"step (\d+)/\d+ .* elapsed (\d+)s", open(log).read())
step, seconds = (int(lines[-1][0]), float(lines[-1][1])) if lines else (first, elapsed)
rate = (step - first) / max(seconds, 1.0)
print(max(1, int(rate * (left - (elapsed - seconds)) * safety)))
PY
)
  echo "$domain: step $reached saved after ${elapsed}s; cooldown over $more more steps in ${left}s" | tee -a "$MODELS_DIR/logs/$domain.log"
  train "$domain" $(( reached + more )) "$more" "$left" "$MODELS_DIR/logs/$domain.log" &
done
wait
for domain in $DOMAINS; do echo "$domain: $(tail -n 1 "$MODELS_DIR/logs/$domain.log") (trained_steps $(trained_steps "$domain"))"; done
