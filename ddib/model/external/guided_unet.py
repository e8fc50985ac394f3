"""The UNet of openai's guided-diffusion (Dhariwal & Nichol 2021) and improved-diffusion (Nichol & Dhariwal 2021),
written so that their `.pt` state dicts load key for key.

improved-diffusion's network is guided-diffusion's without resblock up/down sampling, head channels and the new
attention order, so one class reads both. Attention runs through `scaled_dot_product_attention`; the "legacy"
order splits q, k, v per head, the new one splits them before the heads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class GuidedUNetConfig:
    """guided-diffusion's `create_model` arguments, resolved (channel_mult and attention downsample rates)."""

    image_size: int
    in_channels: int
    model_channels: int
    out_channels: int
    num_res_blocks: int
    attention_ds: tuple[int, ...]
    channel_mult: tuple[float, ...]
    num_classes: int = 0
    num_heads: int = 1
    num_head_channels: int = -1
    num_heads_upsample: int = -1
    use_scale_shift_norm: bool = False
    resblock_updown: bool = False
    use_new_attention_order: bool = False


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """[cos(t·f_i), sin(t·f_i)] with f_i = max_period^(−i/half) (Vaswani et al. 2017, as guided-diffusion)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t[:, None].float() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(emb, (0, 1)) if dim % 2 else emb


class GroupNorm32(nn.GroupNorm):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).type(x.dtype)


def norm(channels: int) -> nn.Module:
    return GroupNorm32(32, channels)


class Upsample(nn.Module):
    def __init__(self, channels: int, use_conv: bool):
        super().__init__()
        if use_conv:
            self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv(x) if hasattr(self, "conv") else x


class Downsample(nn.Module):
    def __init__(self, channels: int, use_conv: bool):
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1) if use_conv else nn.AvgPool2d(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class ResBlock(nn.Module):
    """GroupNorm–SiLU–conv twice, the timestep embedding added (or as FiLM scale and shift), optional resampling."""

    def __init__(self, channels: int, emb_channels: int, out_channels: int, scale_shift: bool, up=False, down=False):
        super().__init__()
        self.scale_shift, self.updown = scale_shift, up or down
        self.in_layers = nn.Sequential(norm(channels), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1))
        resample = Upsample(channels, False) if up else Downsample(channels, False) if down else nn.Identity()
        self.h_upd, self.x_upd = resample, resample
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, out_channels * (2 if scale_shift else 1)))
        self.out_layers = nn.Sequential(norm(out_channels), nn.SiLU(), nn.Dropout(0.0),
                                        nn.Conv2d(out_channels, out_channels, 3, padding=1))  # fmt: skip
        self.skip_connection = nn.Identity() if out_channels == channels else nn.Conv2d(channels, out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        if self.updown:
            h = self.in_layers[-1](self.h_upd(self.in_layers[:-1](x)))
            x = self.x_upd(x)
        else:
            h = self.in_layers(x)
        e = self.emb_layers(emb).type(h.dtype)[..., None, None]
        if self.scale_shift:
            scale, shift = e.chunk(2, dim=1)
            h = self.out_layers[1:](self.out_layers[0](h) * (1 + scale) + shift)
        else:
            h = self.out_layers(h + e)
        return self.skip_connection(x) + h


class AttentionBlock(nn.Module):
    """Self-attention over the pixels, a 1×1 qkv projection in and a projection out, residual."""

    def __init__(self, channels: int, num_heads: int, num_head_channels: int, new_order: bool):
        super().__init__()
        self.heads = num_heads if num_head_channels == -1 else channels // num_head_channels
        self.new_order = new_order
        self.norm = norm(channels)
        self.qkv = nn.Conv1d(channels, channels * 3, 1)
        self.proj_out = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, *spatial = x.shape
        x = x.reshape(b, c, -1)
        qkv = self.qkv(self.norm(x))
        ch, length = c // self.heads, qkv.shape[-1]
        if self.new_order:  # q, k, v first, then heads
            q, k, v = qkv.reshape(b, 3, self.heads, ch, length).unbind(1)
        else:  # heads first, each holding its own q, k, v
            q, k, v = qkv.reshape(b, self.heads, 3 * ch, length).split(ch, dim=2)
        a = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        h = self.proj_out(a.transpose(-1, -2).reshape(b, c, length))
        return (x + h).reshape(b, c, *spatial)


class EmbedSequential(nn.Sequential):
    """A sequence whose residual blocks also take the timestep embedding."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        for layer in self:
            x = layer(x, emb) if isinstance(layer, ResBlock) else layer(x)
        return x


def blocks(cfg: GuidedUNetConfig):
    """(res, attn): makers of the residual and attention blocks of a network with these flags."""
    emb = cfg.model_channels * 4
    res = lambda i, o, **kw: ResBlock(i, emb, o, cfg.use_scale_shift_norm, **kw)  # noqa: E731
    attn = lambda c, h: AttentionBlock(c, h, cfg.num_head_channels, cfg.use_new_attention_order)  # noqa: E731
    return res, attn


def encoder(cfg: GuidedUNetConfig) -> tuple[nn.Module, nn.ModuleList, EmbedSequential, list[int], int, int]:
    """The UNet's first half, which guided-diffusion's noisy classifier shares: the timestep embedding, the input
    blocks and the middle block, with the channels each input block hands a skip connection, the last block's
    channels and its downsampling rate."""
    mc, emb = cfg.model_channels, cfg.model_channels * 4
    res, attn = blocks(cfg)
    time_embed = nn.Sequential(nn.Linear(mc, emb), nn.SiLU(), nn.Linear(emb, emb))
    ch = int(cfg.channel_mult[0] * mc)
    input_blocks = nn.ModuleList([EmbedSequential(nn.Conv2d(cfg.in_channels, ch, 3, padding=1))])
    chans, ds = [ch], 1
    for level, mult in enumerate(cfg.channel_mult):
        for _ in range(cfg.num_res_blocks):
            layers = [res(ch, int(mult * mc))]
            ch = int(mult * mc)
            if ds in cfg.attention_ds:
                layers.append(attn(ch, cfg.num_heads))
            input_blocks.append(EmbedSequential(*layers))
            chans.append(ch)
        if level != len(cfg.channel_mult) - 1:
            down = res(ch, ch, down=True) if cfg.resblock_updown else Downsample(ch, True)
            input_blocks.append(EmbedSequential(down))
            chans.append(ch)
            ds *= 2
    middle = EmbedSequential(res(ch, ch), attn(ch, cfg.num_heads), res(ch, ch))
    return time_embed, input_blocks, middle, chans, ch, ds


class GuidedUNet(nn.Module):
    """guided-diffusion's `UNetModel`: ε̂ (and, with learned variances, the variance interpolation) at (x, n[, y])."""

    def __init__(self, cfg: GuidedUNetConfig):
        super().__init__()
        mc = cfg.model_channels
        heads_up = cfg.num_heads if cfg.num_heads_upsample == -1 else cfg.num_heads_upsample
        res, attn = blocks(cfg)
        self.model_channels = mc
        self.time_embed, self.input_blocks, self.middle_block, chans, ch, ds = encoder(cfg)
        if cfg.num_classes:
            self.label_emb = nn.Embedding(cfg.num_classes, mc * 4)
        input_ch = int(cfg.channel_mult[0] * mc)
        self.output_blocks = nn.ModuleList()
        for level, mult in list(enumerate(cfg.channel_mult))[::-1]:
            for i in range(cfg.num_res_blocks + 1):
                layers = [res(ch + chans.pop(), int(mc * mult))]
                ch = int(mc * mult)
                if ds in cfg.attention_ds:
                    layers.append(attn(ch, heads_up))
                if level and i == cfg.num_res_blocks:
                    layers.append(res(ch, ch, up=True) if cfg.resblock_updown else Upsample(ch, True))
                    ds //= 2
                self.output_blocks.append(EmbedSequential(*layers))
        self.out = nn.Sequential(norm(ch), nn.SiLU(), nn.Conv2d(input_ch, cfg.out_channels, 3, padding=1))

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.time_embed(timestep_embedding(timesteps, self.model_channels))
        if y is not None:
            emb = emb + self.label_emb(y)
        hs, h = [], x
        for block in self.input_blocks:
            h = block(h, emb)
            hs.append(h)
        h = self.middle_block(h, emb)
        for block in self.output_blocks:
            h = block(torch.cat([h, hs.pop()], dim=1), emb)
        return self.out(h)
