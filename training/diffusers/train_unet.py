"""Train a colored-MNIST domain as a diffusers `UNet2DModel`, the way diffusers' unconditional example does.

DDPM (Ho et al. 2020): 1000 discrete timesteps, linear β from 1e-4 to 0.02, ε-prediction, plain MSE, AdamW, an
EMA of the weights; saved as a diffusers pipeline folder (model_index.json, unet/, scheduler/) in float16. The
noising and the loop are this file's own; diffusers only builds, runs and saves the network and writes the
scheduler config. Resumable: the state (weights, EMA, AdamW moments as safetensors; step and RNG as JSON) is
rewritten every --save-every steps in --state, and the same command continues it.

    OMP_NUM_THREADS=1 python training/diffusers/train_unet.py --digit 5 --state runs/ddpm/fives \
        --out training/diffusers/fives-ddpm --steps 8000
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import signal
import time
from pathlib import Path

import torch
from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel
from safetensors.torch import load_file, save_file

from ddib.data.colored_mnist import colored_mnist
from ddib.data.domains import data_dir_or_default

NUM_TRAIN_TIMESTEPS, BETA_START, BETA_END = 1000, 1e-4, 0.02


def build_unet() -> UNet2DModel:
    """A 1.1 M-parameter UNet2DModel for 32×32 RGB (2.2 MB in float16)."""
    return UNet2DModel(
        sample_size=32, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(32, 64, 64),
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"), norm_num_groups=16, attention_head_dim=32,
    )  # fmt: skip


def alphas_cumprod() -> torch.Tensor:
    """ᾱ_n = ∏_{m≤n} (1 − β_m), β linear in n (DDPM's schedule)."""
    betas = torch.linspace(BETA_START, BETA_END, NUM_TRAIN_TIMESTEPS, dtype=torch.float64)
    return torch.cumprod(1 - betas, 0).float()


def save_state(path: Path, step: int, unet, ema, opt) -> None:
    """Weights, EMA and AdamW moments as safetensors; step and RNG as JSON (no pickle)."""
    tensors = {f"model.{k}": v.contiguous() for k, v in unet.state_dict().items()}
    tensors |= {f"ema.{k}": v.contiguous() for k, v in ema.state_dict().items()}
    names = dict(unet.named_parameters())
    for name, p in names.items():
        st = opt.state.get(p)
        if st:
            tensors[f"exp_avg.{name}"] = st["exp_avg"]
            tensors[f"exp_avg_sq.{name}"] = st["exp_avg_sq"]
    path.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path / "state.safetensors.tmp"))
    (path / "state.safetensors.tmp").replace(path / "state.safetensors")
    meta = {"step": step, "rng": torch.get_rng_state().tolist()}
    (path / "state.json").write_text(json.dumps(meta))


def load_state(path: Path, unet, ema, opt) -> int:
    tensors = load_file(str(path / "state.safetensors"))
    unet.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
    meta = json.loads((path / "state.json").read_text())
    for name, p in unet.named_parameters():
        if f"exp_avg.{name}" in tensors:
            opt.state[p] = {"step": torch.tensor(float(meta["step"])), "exp_avg": tensors[f"exp_avg.{name}"],
                            "exp_avg_sq": tensors[f"exp_avg_sq.{name}"]}  # fmt: skip
    torch.set_rng_state(torch.tensor(meta["rng"], dtype=torch.uint8))
    return int(meta["step"])


def export(out: Path, ema) -> None:
    """The EMA weights in float16 as a diffusers pipeline folder with its DDPMScheduler config."""
    scheduler = DDPMScheduler(num_train_timesteps=NUM_TRAIN_TIMESTEPS, beta_start=BETA_START, beta_end=BETA_END,
                              beta_schedule="linear", prediction_type="epsilon")  # fmt: skip
    DDPMPipeline(unet=copy.deepcopy(ema).half(), scheduler=scheduler).save_pretrained(str(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--digit", type=int, required=True)
    ap.add_argument("--state", type=Path, required=True, help="resumable training state folder")
    ap.add_argument("--out", type=Path, required=True, help="diffusers pipeline folder to write")
    ap.add_argument("--steps", type=int, default=8000)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--save-every", type=int, default=250)
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args()

    torch.manual_seed(args.digit)
    images, _ = colored_mnist(data_dir_or_default(args.data_dir), args.digit, "train")
    data = images.float().div(127.5).sub(1.0)
    unet = build_unet()
    ema = copy.deepcopy(unet).requires_grad_(False)
    opt = torch.optim.AdamW(unet.parameters(), lr=args.lr, betas=(0.95, 0.999), weight_decay=1e-6, eps=1e-8)
    step = load_state(args.state, unet, ema, opt) if (args.state / "state.json").is_file() else 0
    abar = alphas_cumprod()
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    args.state.mkdir(parents=True, exist_ok=True)
    log = (args.state / "log.jsonl").open("a")
    t0, running = time.time(), None
    while step < args.steps and not stop:
        # warmup, then cosine decay to zero at --steps (diffusers' example: cosine with warmup)
        lr = args.lr * min(1.0, (step + 1) / args.warmup) * 0.5 * (1 + math.cos(math.pi * step / args.steps))
        for g in opt.param_groups:
            g["lr"] = lr
        x0 = data[torch.randint(len(data), (args.batch_size,))]
        n = torch.randint(NUM_TRAIN_TIMESTEPS, (args.batch_size,))
        noise = torch.randn_like(x0)
        a = abar[n].view(-1, 1, 1, 1)
        x_n = a.sqrt() * x0 + (1 - a).sqrt() * noise
        loss = torch.nn.functional.mse_loss(unet(x_n, n).sample, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            for pe, p in zip(ema.parameters(), unet.parameters(), strict=True):
                pe.lerp_(p, 1 - min(args.ema, (1 + step) / (10 + step)))
        step += 1
        # an average over this run's steps only, so a resumed run's first log lines are not pulled towards 0
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        if step % 50 == 0:
            log.write(json.dumps({"step": step, "loss": running, "lr": lr, "s": time.time() - t0}) + "\n")
            log.flush()
        if step % args.save_every == 0 or step == args.steps:
            save_state(args.state, step, unet, ema, opt)
            export(args.out, ema)
    save_state(args.state, step, unet, ema, opt)
    export(args.out, ema)


if __name__ == "__main__":
    main()
