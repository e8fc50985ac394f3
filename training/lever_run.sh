#!/usr/bin/env bash
# One run of the colour-lever study: train a domain at constant learning rate, keep the EMA model at each
# milestone, then cool the last milestone down. Re-running continues where it stopped (every step is resumable).
#   bash training/lever_run.sh DATA_DIR RUN_ROOT NAME DOMAIN "MILESTONES" COOLDOWN [ddib train options...]
# writes RUN_ROOT/NAME/<domain> (the live run), RUN_ROOT/NAME@<step>/<domain> (EMA snapshots: config.json +
# model.safetensors) and RUN_ROOT/NAME@<last>+cool<COOLDOWN>/<domain> (the cooled-down model, with its state).
# Example: bash training/lever_run.sh ../shared/data runs/levers hue fives "1000 2000 3000" 1000 --augment hue
set -euo pipefail
DATA_DIR=$1; ROOT=$2; NAME=$3; DOMAIN=$4; MILESTONES=$5; COOLDOWN=$6; shift 6
COMMON=(--domain "$DOMAIN" --data-dir "$DATA_DIR" --batch-size "${BATCH:-64}" --lr "${LR:-5e-4}"
        --model-size "${MODEL_SIZE:-small}" --prediction v --time-embedding smooth
        --sample-every 0 --save-every 250 --log-every 100 "$@")
PY=${PYTHON:-python}
last=0
for step in $MILESTONES; do
  OMP_NUM_THREADS=${THREADS:-1} $PY -m ddib train "${COMMON[@]}" --models-dir "$ROOT/$NAME" --steps "$step"
  trained=$($PY -c 'import json, sys; print(json.load(open(sys.argv[1]))["trained_steps"])' "$ROOT/$NAME/$DOMAIN/config.json")
  if [ "$trained" = "$step" ]; then  # a run already past this milestone keeps the snapshot taken there
    mkdir -p "$ROOT/$NAME@$step/$DOMAIN"
    cp "$ROOT/$NAME/$DOMAIN/config.json" "$ROOT/$NAME/$DOMAIN/model.safetensors" "$ROOT/$NAME@$step/$DOMAIN/"
  fi
  last=$step
done
cool="$ROOT/$NAME@$last+cool$COOLDOWN"
if [ ! -e "$cool/$DOMAIN/train_state.json" ] && [ ! -e "$cool/$DOMAIN/train_state.pt" ]; then  # .pt: older ddib
  mkdir -p "$cool/$DOMAIN"
  cp "$ROOT/$NAME/$DOMAIN/"{config.json,model.safetensors,train_state.safetensors,train_state.json} "$cool/$DOMAIN/"
fi
OMP_NUM_THREADS=${THREADS:-1} $PY -m ddib train "${COMMON[@]}" --models-dir "$cool" --steps $((last + COOLDOWN)) \
  --cooldown "$COOLDOWN"
