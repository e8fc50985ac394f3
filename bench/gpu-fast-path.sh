#!/usr/bin/env bash
# The GPU fast path, measured on one CUDA device: translation images/s of the default solve at batch 1, 16, 256 and
# 1024, fp32 eager against CUDA graphs (`--kernels cuda_graphs`), and how far each kernel setting moves the
# translation from fp32 eager (`bench speed`). Tables land in $OUT (default bench/).
#   PYTHONPATH=. bash bench/gpu-fast-path.sh        (from the repository root; PYTHON to pick the interpreter)
set -euo pipefail
py=${PYTHON:-python}
out=${OUT:-bench}
sizes=${SIZES:-1,16,256,1024}
$py -m ddib bench throughput --device cuda --batch-sizes "$sizes" --repeats 3 --kernels eager \
    --out-dir "$out/throughput-cuda-eager"
$py -m ddib bench throughput --device cuda --batch-sizes "$sizes" --repeats 3 --kernels cuda_graphs \
    --out-dir "$out/throughput-cuda-graphs"
$py -m ddib bench speed --device cuda --batch-size 256 --threads 1 --train-size "" \
    --settings eager,compile,cuda_graphs,tf32,bf16 --out-dir "$out/speed-cuda-graphs"
