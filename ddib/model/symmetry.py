"""Test-time group averaging over colour-channel symmetries: an exactly equivariant ε̂ from any network.

A domain whose distribution is invariant under a group G of channel permutations P (p(Px) = p(x)) has an
equivariant score, ε*(Px, t) = P·ε*(x, t). The colored-MNIST recipe draws each hue uniformly from [0°, 360°)
with full saturation, and a hue shift of 120° permutes (R, G, B) cyclically while h → −h swaps G and B, so
every coloured digit domain is invariant under all six permutations. A trained network is only nearly
equivariant; its group average ε̂_G(x) = 1/|G| Σ_P P⁻¹·ε̂(Px) (Yarotsky 2022; "frame averaging", Puny et al.
2022) is exactly equivariant, and by convexity of the MSE its denoising loss on G-invariant data is never
higher than the network's own. For DDIB this matters for colour: each model's small colour biases (a green
pull in a sevens model) average out, and the bridge commutes with the permutations, so a digit's hue can only
drift within what the symmetry allows (docs/quality.md, "Symmetry"). Models in the HSV cone (`color.rgb_to_cone`)
are exactly equivariant to hue rotations by construction (`Diffusion`); averaging over the one hue reflection
(`chroma-flip`) makes them equivariant to the whole of O(2), which pins a digit's hue to its input's (or the
opposite) at every hue (docs/colour.md). Cost: |G| network passes per evaluation, run as one batch.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch

from ..errors import DDIBError

# Channel permutations of (R, G, B) in each group; the identity comes first.
SYMMETRIES: dict[str, tuple[tuple[int, ...], ...]] = {
    "none": ((0, 1, 2),),
    "rgb-cyclic": ((0, 1, 2), (1, 2, 0), (2, 0, 1)),  # hue shifts by 0°, 120°, 240°
    "rgb-all": tuple(itertools.permutations(range(3))),  # and the three hue reflections
    "rgb-flip": ((0, 1, 2), (0, 2, 1)),  # the hue reflection h → −h, which keeps hue 0 (hue-quotient models)
    "chroma-flip": ((0, 1, 2), (0, 1, 2)),  # HSV-cone models: h → −h, the sign of the third channel flipped
}
# Per group element, the sign each channel of the permuted image takes (g·x)_i = s_i·x_{p_i}; +1 unless listed.
SIGNS: dict[str, tuple[tuple[int, ...], ...]] = {"chroma-flip": ((1, 1, 1), (1, 1, -1))}
# The colour space (`DiffusionConfig.color_space`) a group acts on.
SPACES = {"rgb-cyclic": "rgb", "rgb-all": "rgb", "rgb-flip": "rgb", "chroma-flip": "cone"}


def check_symmetry(name: str, data_shape: tuple[int, ...] | None = None, color_space: str = "rgb",
                   quotient: str = "none") -> None:  # fmt: skip
    """A known group, and (given the data shape) one acting on the model's colour space and three channels, that
    keeps a hue-quotient model's hue-0 slice in place (only the hue reflections do: rgb-flip, chroma-flip)."""
    if name not in SYMMETRIES:
        raise DDIBError(f"unknown symmetry {name!r}; use one of {', '.join(SYMMETRIES)}")
    if name != "none" and SPACES[name] != color_space:
        raise DDIBError(f"symmetry {name!r} acts on {SPACES[name]} images, but the model works in {color_space}")
    if quotient == "hue" and name not in ("none", "rgb-flip", "chroma-flip"):
        raise DDIBError(f"symmetry {name!r} shifts hues, but a hue-quotient model knows only hue 0; use none")
    if data_shape is not None and name != "none" and (len(data_shape) < 2 or data_shape[0] != 3):
        raise DDIBError(f"symmetry {name!r} acts on three colour channels, but the data shape is {tuple(data_shape)}")


def group_size(name: str) -> int:
    return len(SYMMETRIES[name])


def group_average(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor, t: torch.Tensor,
                  name: str) -> torch.Tensor:  # fmt: skip
    """ε̂_G(x, t) = 1/|G| Σ_g g⁻¹·fn(g·x, t), all |G| transformed copies in one call of fn."""
    perms = SYMMETRIES[name]
    if len(perms) == 1:
        return fn(x, t)
    signs = SIGNS.get(name, ((1, 1, 1),) * len(perms))
    scale = [torch.tensor(s, dtype=x.dtype, device=x.device).view(3, *(1,) * (x.ndim - 2)) for s in signs]
    b = x.shape[0]
    elements = list(zip(perms, scale, strict=True))
    out = fn(torch.cat([x[:, list(p)] * s for p, s in elements]), t.repeat(len(perms)))
    # g⁻¹: undo the signs (each is its own inverse), then put channel p[i] back at position p[i] (the inverse
    # permutation).
    back = [(out[k * b : (k + 1) * b] * s)[:, [p.index(c) for c in range(3)]] for k, (p, s) in enumerate(elements)]
    return torch.stack(back).mean(0)


def describe_averaging(*names: str) -> str:
    """' (ε̂ averaged over rgb-cyclic: 3 network passes per NFE)' for summaries; '' when nothing is averaged."""
    used = sorted({n for n in names if n != "none"}, key=group_size)
    if not used:
        return ""
    passes = "/".join(str(group_size(n)) for n in used)
    which = " and ".join(used) + ("" if len(set(names)) == 1 else " (per model)")
    return f" (ε̂ averaged over {which}: {passes} network passes per NFE)"
