"""Write a guided-diffusion checkpoint with the official 256×256 class-conditional model's flags and random weights
(2.2 GB), with its flags as JSON beside it: loading cost depends on the architecture, not on the weights."""

import argparse
import json
from pathlib import Path

import torch

from ddib.model.external import guided
from ddib.model.external.guided_unet import GuidedUNet

# guided-diffusion's README, 256x256_diffusion.pt
MODEL_FLAGS = ("--attention_resolutions 32,16,8 --class_cond True --diffusion_steps 1000 --image_size 256 "
               "--learn_sigma True --noise_schedule linear --num_channels 256 --num_head_channels 64 "
               "--num_res_blocks 2 --resblock_updown True --use_fp16 True --use_scale_shift_norm True")  # fmt: skip

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path, help="the .pt file to write")
    path = parser.parse_args().out
    flags = guided.parse_flags(MODEL_FLAGS)
    net = GuidedUNet(guided.network_config(guided.resolve_flags(flags)))
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), path)
    path.with_suffix(".json").write_text(json.dumps(flags))
    print(f"{path}: {sum(p.numel() for p in net.parameters()) / 1e6:.1f} M parameters")
