#!/usr/bin/env bash
# Packs what a lent device's image lacks for run.sh (beside this script) into .carry/ (gitignored, under the device tool's
# 64 MiB carry limit): MNIST for the quality stage, and diffusers with the modules it imports beyond torch's for the
# ddpm256 stage, as one tarball the GPU script unpacks when diffusers is not importable there. Then run, on the
# device, with carry [".carry"]:
#   PYTHONPATH=. DDIB_DATA_DIR=.carry DEPS=.carry/site.tar.gz bash experiments/gpu-sitting/run.sh
#   bash experiments/gpu-sitting/pack-carry.sh [MNIST_RAW_DIR]      (default ../shared/data/MNIST/raw; PYTHON as there)
set -euo pipefail
py=${PYTHON:-python}
raw=${1:-../shared/data/MNIST/raw}
mkdir -p .carry/MNIST/raw
cp "$raw"/{train,t10k}-{images-idx3,labels-idx1}-ubyte .carry/MNIST/raw/
site=$($py -c 'import diffusers, pathlib; print(pathlib.Path(diffusers.__file__).parents[1])')
# diffusers' own import closure beyond torch, torchvision, typer, rich, safetensors and numpy (what the image has).
mods=(diffusers huggingface_hub requests urllib3 idna certifi charset_normalizer httpx httpx2 httpcore httpcore2 h11
      anyio sniffio truststore packaging yaml _yaml regex tqdm importlib_metadata zipp filelock fsspec)
have=()
for m in "${mods[@]}"; do
  [ -e "$site/$m" ] && have+=("$m")
  # diffusers checks its dependencies' versions through their metadata
  for d in "$site"/*.dist-info; do
    name=$(basename "$d"); name=${name%%-[0-9]*}; name=${name,,}; name=${name//-/_}
    [ "$name" = "${m,,}" ] && have+=("$(basename "$d")")
  done
done
have+=($(cd "$site" && ls -d PyYAML-*.dist-info pyyaml-*.dist-info 2>/dev/null || true))
tar czf .carry/site.tar.gz --exclude=__pycache__ -C "$site" "${have[@]}"
du -sh .carry
