"""Write a diffusers pipeline folder with google/ddpm-cat-256's UNet2DModel and DDPMScheduler configuration and
random weights (the architecture and schedule are what set the speed; nothing is downloaded).

    python experiments/ddpm-256-speed/make_folder.py runs/ddpm-256/a --seed 0
"""

from __future__ import annotations

import argparse

import torch
from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

# google/ddpm-cat-256 (and ddpm-church-256, ddpm-bedroom-256, ddpm-celebahq-256): unet/config.json
UNET = dict(
    sample_size=256, in_channels=3, out_channels=3, layers_per_block=2,
    block_out_channels=(128, 128, 256, 256, 512, 512),
    down_block_types=("DownBlock2D", "DownBlock2D", "DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D"),
    act_fn="silu", attention_head_dim=None, center_input_sample=False, downsample_padding=0, flip_sin_to_cos=False,
    freq_shift=1, mid_block_scale_factor=1, norm_eps=1e-6, norm_num_groups=32, time_embedding_type="positional",
)  # fmt: skip
# its scheduler/scheduler_config.json (no prediction_type: epsilon)
SCHEDULER = dict(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear", clip_sample=True,
                 variance_type="fixed_small")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    unet = UNet2DModel(**UNET)
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler(**SCHEDULER)).save_pretrained(args.out)
    print(f"{args.out}: UNet2DModel with {sum(p.numel() for p in unet.parameters()) / 1e6:.1f} M parameters")


if __name__ == "__main__":
    main()
