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
# diffusers' own import closure beyond torch, torchvision, typer, rich, safetensors and numpy (what the image has),
# each as every file its distribution installed: the modules and the metadata diffusers checks versions through.
$py - <<'PY' > .carry/site.files
import importlib.metadata as md, pathlib
mods = """diffusers huggingface_hub requests urllib3 idna certifi charset_normalizer httpx httpx2 httpcore httpcore2
          h11 anyio sniffio truststore packaging yaml regex tqdm importlib_metadata zipp filelock fsspec""".split()
dists = {d for m in mods for d in md.packages_distributions().get(m, [])}
for name in sorted(dists):
    for f in md.distribution(name).files or []:
        if "__pycache__" not in f.parts and not f.parts[0].startswith(".."):
            print(f)
PY
site=$($py -c 'import diffusers, pathlib; print(pathlib.Path(diffusers.__file__).parents[1])')
tar czf .carry/site.tar.gz -C "$site" -T .carry/site.files
rm .carry/site.files
du -sh .carry
