#!/usr/bin/env bash
# What one CUDA device measures in one sitting; tables land in $OUT (default bench/). Stages run in the order STAGES
# names them (comma-separated; default throughput,ddpm256,speed,graphs: the cheapest and most wanted first, since a
# sitting may be cut off and every finished table stays in $OUT):
#   quality     the RGB pair's quality-vs-NFE curve on this device (the CPU's, whose presets the bundled configs hold,
#               is bench/quality-fives-sevens-rgb/quality-cpu.md): `bench quality` on fresh exports in $WORK
#   throughput  images/s of every preset of both bundled pairs at batch 1, 16, 256, 1024 against the RGB pair's
#               unipc × 20 rgb-cyclic, fp32 and bf16 eager (`bench throughput --presets`)
#   ddpm256     the google/ddpm-cat-256-sized diffusers pair (experiments/ddpm-256-speed/), fp32, bf16, fp16; needs
#               diffusers importable, or DEPS naming a tarball of it (pack-carry.sh beside this script) to unpack
#   speed       how far each kernel setting (SPEED_SETTINGS) moves each preset's translation from fp32 eager
#               (`bench speed`): bf16 / fp16 (decoding only, as always) count only within one 8-bit level
#   graphs      the throughput stage with CUDA graphs, fp32 and bf16 (one torch.compile per batch size: the slowest)
#   PYTHONPATH=. DDIB_DATA_DIR=.carry DEPS=.carry/site.tar.gz bash experiments/gpu-sitting/run.sh   (repository root;
#   PYTHON picks the interpreter; MNIST in $DDIB_DATA_DIR/MNIST/raw for the quality stage)
set -euo pipefail
py=${PYTHON:-python}
out=${OUT:-bench}
work=${WORK:-runs/quality}
dev=${DEVICE:-cuda}
sizes=${SIZES:-1,16,256,1024}
n=${N:-1000}
steps=${STEPS:-6,8,10,12,14,16,18,20}
reference=${REFERENCE:-unipc:100}
kernels=${KERNELS:-eager,bf16}
graph_kernels=${GRAPH_KERNELS:-cuda_graphs,bf16+cuda_graphs}
speed_settings=${SPEED_SETTINGS:-eager,bf16,cuda_graphs,bf16+cuda_graphs}
speed_batch=${SPEED_BATCH:-256}
stages=${STAGES:-throughput,ddpm256,speed,graphs}
ddib() { echo "+ ddib $*" >&2; $py -m ddib "$@"; }
for stage in ${stages//,/ }; do
  case $stage in
    quality | throughput | ddpm256 | speed | graphs) ;;
    *) echo "error: unknown stage $stage (quality, throughput, ddpm256, speed, graphs)" >&2; exit 2 ;;
  esac
done

for d in fives-rgb sevens-rgb; do
  [ -f "$work/$d/config.json" ] || ddib export --domain "$d" --out "$work/$d"
done

quality() {
  ddib bench quality --from fives-rgb --to sevens-rgb -n "$n" --steps-list "$steps" --grids untuned,learned \
    --reference "$reference" --device "$dev" --models-dir "$work" \
    --out-dir "$out/quality-fives-sevens-rgb"
}

pairs=(--pair fives,sevens --pair fives-rgb,sevens-rgb --presets --baseline unipc:20
       --baseline-pair fives-rgb,sevens-rgb --baseline-symmetry rgb-cyclic)
presets_throughput() {  # $1: comma-separated kernel settings, one process (and table) each
  for k in ${1//,/ }; do
    ddib bench throughput --device "$dev" --models-dir "$work" "${pairs[@]}" --batch-sizes "$sizes" --repeats 3 \
      --kernels "$k" --out-dir "$out/throughput-presets-$dev/$k"
  done
}
throughput() { presets_throughput "$kernels"; }
graphs() { presets_throughput "$graph_kernels"; }

speed() {
  for q in fast default exact; do
    for pair in fives,sevens fives-rgb,sevens-rgb; do
      ddib bench speed --device "$dev" --from "${pair%,*}" --to "${pair#*,}" --quality "$q" --models-dir "$work" \
        --batch-size "$speed_batch" --threads 1 --train-size "" --settings "$speed_settings" \
        --out-dir "$out/speed-$dev-${pair%,*}-$q" || echo "(${pair}: no $q preset stored, skipped)" >&2
    done
  done
}

ddpm256() {
  if ! $py -c 'import diffusers' 2>/dev/null && [ -n "${DEPS:-}" ]; then
    site=$(mktemp -d)
    tar xzf "$DEPS" -C "$site"
    export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$site"
  fi
  for seed in 0 1; do
    [ -f "runs/ddpm-256/$seed/model_index.json" ] ||
      $py experiments/ddpm-256-speed/make_folder.py "runs/ddpm-256/$seed" --seed "$seed"
  done
  for k in eager bf16 fp16; do
    ddib bench throughput --device "$dev" --from runs/ddpm-256/0 --to runs/ddpm-256/1 --batch-sizes 1,8,32 \
      --kernels "$k" --out-dir "$out/throughput-ddpm-256-$dev/$k"
  done
  ddib bench speed --device "$dev" --from runs/ddpm-256/0 --to runs/ddpm-256/1 --batch-size 8 --threads 1 \
    --train-size "" --settings eager,bf16,fp16 --out-dir "$out/speed-ddpm-256-$dev"
}

failed=()
for stage in ${stages//,/ }; do  # a stage that fails (diffusers missing, a kernel setting refused) stops only itself
  echo "== $stage" >&2
  $stage || { echo "(stage $stage failed; going on)" >&2; failed+=("$stage"); }
done
[ ${#failed[@]} -eq 0 ] || { echo "failed stages: ${failed[*]}" >&2; exit 1; }
