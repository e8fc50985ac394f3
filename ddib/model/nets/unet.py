"""UNet ε-network: GroupNorm residual blocks, sinusoidal time embedding (plus a label embedding when
class-conditional), attention at low resolution."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import UNetConfig
from .embedding import LabelEmbedding, time_mlp


class ResBlock(nn.Module):
    """h = x + conv(act(norm(conv(act(norm(x))) + emb(t)))) with a 1×1 skip when widths differ."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, groups: int, dropout: float):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2 = nn.GroupNorm(groups, c_out)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        # Zero-init the last conv so each block starts as the identity (stable early training).
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(emb)[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class Attention(nn.Module):
    """Single-head self-attention over spatial positions with a residual connection."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, 1, c, h * w).transpose(-1, -2).unbind(1)
        y = F.scaled_dot_product_attention(q, k, v)
        return x + self.out(y.transpose(-1, -2).reshape(b, c, h, w))


class UNet(nn.Module):
    """ε̂ = UNet(x_t, t) for images; t ∈ [0, 1] is only a conditioning scalar here."""

    def __init__(self, cfg: UNetConfig):
        super().__init__()
        self.config = cfg
        ch = cfg.base_channels
        emb_dim = 4 * ch
        self.time_embed = time_mlp(ch, emb_dim, cfg.time_scale)
        self.label_embed = LabelEmbedding(cfg.num_classes, emb_dim) if cfg.num_classes else None
        self.stem = nn.Conv2d(cfg.channels, ch, 3, padding=1)

        block = lambda c_in, c_out: ResBlock(c_in, c_out, emb_dim, cfg.groups, cfg.dropout)  # noqa: E731
        self.down = nn.ModuleList()
        skips = [ch]
        res = cfg.image_size
        c = ch
        for level, mult in enumerate(cfg.channel_mults):
            for _ in range(cfg.num_res_blocks):
                layer = nn.ModuleList([block(c, ch * mult)])
                c = ch * mult
                if res in cfg.attention_resolutions:
                    layer.append(Attention(c, cfg.groups))
                self.down.append(layer)
                skips.append(c)
            if level < len(cfg.channel_mults) - 1:
                self.down.append(nn.ModuleList([nn.Conv2d(c, c, 3, stride=2, padding=1)]))
                skips.append(c)
                res //= 2

        self.mid = nn.ModuleList([block(c, c), Attention(c, cfg.groups), block(c, c)])

        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(cfg.channel_mults))):
            for _ in range(cfg.num_res_blocks + 1):
                layer = nn.ModuleList([block(c + skips.pop(), ch * mult)])
                c = ch * mult
                if res in cfg.attention_resolutions:
                    layer.append(Attention(c, cfg.groups))
                self.up.append(layer)
            if level > 0:
                self.up.append(
                    nn.ModuleList([nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c, c, 3, padding=1)])
                )
                res *= 2

        self.head = nn.Sequential(nn.GroupNorm(cfg.groups, c), nn.SiLU(), nn.Conv2d(c, cfg.channels, 3, padding=1))
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """labels: (B,) class indices of a conditional network (num_classes = no label; None: none for all)."""
        emb = self.time_embed(t)
        if self.label_embed is not None:
            emb = emb + self.label_embed(labels, x.shape[0], x.device)
        h = self.stem(x)
        hs = [h]
        for layer in self.down:
            h = self._run_layer(layer, h, emb)
            hs.append(h)
        for m in self.mid:
            h = m(h, emb) if isinstance(m, ResBlock) else m(h)
        for layer in self.up:
            if isinstance(layer[0], ResBlock):
                h = torch.cat([h, hs.pop()], dim=1)
            h = self._run_layer(layer, h, emb)
        return self.head(h)

    @staticmethod
    def _run_layer(layer: nn.ModuleList, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        for m in layer:
            h = m(h, emb) if isinstance(m, ResBlock) else m(h)
        return h
