"""guided-diffusion's noisy classifier p_φ(y | x_t, t) (Dhariwal & Nichol 2021, `EncoderUNetModel`): the UNet's first
half and a pooling head, written so that its `.pt` state dicts (`256x256_classifier.pt`, ...) load key for key."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .guided_unet import GuidedUNetConfig, encoder, norm, timestep_embedding

POOLS = ("attention", "adaptive", "spatial", "spatial_v2")


class AttentionPool2d(nn.Module):
    """CLIP's attention pooling: the pixels' mean attends over the pixels (plus a learned position embedding)."""

    def __init__(self, spatial: int, channels: int, head_channels: int, out_channels: int):
        super().__init__()
        self.positional_embedding = nn.Parameter(torch.zeros(channels, spatial**2 + 1))
        self.qkv_proj = nn.Conv1d(channels, 3 * channels, 1)
        self.c_proj = nn.Conv1d(channels, out_channels, 1)
        self.heads = channels // head_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, *_ = x.shape
        x = x.reshape(b, c, -1)
        x = torch.cat([x.mean(dim=-1, keepdim=True), x], dim=-1) + self.positional_embedding[None].to(x.dtype)
        q, k, v = (t.reshape(b, self.heads, c // self.heads, -1).transpose(-1, -2)
                   for t in self.qkv_proj(x).chunk(3, dim=1))  # fmt: skip
        a = F.scaled_dot_product_attention(q, k, v).transpose(-1, -2).reshape(b, c, -1)
        return self.c_proj(a)[:, :, 0]


class GuidedClassifier(nn.Module):
    """Logits over `out_channels` classes of a noisy image x_t at timestep n."""

    def __init__(self, cfg: GuidedUNetConfig, pool: str):
        super().__init__()
        self.model_channels, self.pool = cfg.model_channels, pool
        self.time_embed, self.input_blocks, self.middle_block, chans, ch, ds = encoder(cfg)
        if pool == "attention":
            head = AttentionPool2d(cfg.image_size // ds, ch, cfg.num_head_channels, cfg.out_channels)
            self.out = nn.Sequential(norm(ch), nn.SiLU(), head)
        elif pool == "adaptive":
            self.out = nn.Sequential(norm(ch), nn.SiLU(), nn.AdaptiveAvgPool2d(1), nn.Conv2d(ch, cfg.out_channels, 1),
                                     nn.Flatten())  # fmt: skip
        else:  # spatial: every block's mean over the pixels, concatenated
            features = sum(chans) + ch
            mid = (nn.ReLU(),) if pool == "spatial" else (nn.GroupNorm(32, 2048), nn.SiLU())
            self.out = nn.Sequential(nn.Linear(features, 2048), *mid, nn.Linear(2048, cfg.out_channels))

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        emb = self.time_embed(timestep_embedding(timesteps, self.model_channels))
        means, h = [], x
        for block in self.input_blocks:
            h = block(h, emb)
            means.append(h.mean(dim=(2, 3)))
        h = self.middle_block(h, emb)
        if self.pool.startswith("spatial"):
            return self.out(torch.cat([*means, h.mean(dim=(2, 3))], dim=-1))
        return self.out(h)
