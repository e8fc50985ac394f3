"""Fixed-step solves learned end to end: a `unipc` solve's σ̄ nodes and per-step coefficients fitted by gradient
descent through the solver itself, on its distance to a converged solve (S4S, Frankel et al. 2025; the learned
coefficients of DPM-Solver-v3, Zheng et al. 2023).

The nodes are σ̄_i = σ̄_min·(σ̄_max/σ̄_min)^{u_i} with u = cumsum(softmax(ℓ)), so every step stays positive and the
ends stay put; the coefficients are `solvers.corrected`'s, one per x̂0 difference a step uses. A bridge's two solves
are fitted jointly on the translation's error (`tuning.gradient.tune_bridge`): what the target's decode shows is
what the source's encode is fitted to, and the decode sees the latents the encode actually makes.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..model.diffusion import Diffusion


def correction_sizes(steps: int, order: int = 3) -> list[int]:
    """x̂0 differences each step of `exponential_multistep_pc` moves along: the corrector's (its history and the new
    x̂0) on every step but the last, which is uncorrected and has only its history's."""
    history = [min(i + 1, order) for i in range(steps)]
    return [h if i < steps - 1 else h - 1 for i, h in enumerate(history)]


class LearnedSolve(nn.Module):
    """One direction's fixed-step `unipc` solve with learnable nodes and per-step corrections (in solve order)."""

    def __init__(self, model: Diffusion, grid: torch.Tensor, corrections: list[list[float]] | None = None,
                 learn_coefficients: bool = True):  # fmt: skip
        super().__init__()
        sched = model.schedule
        self.log_span = (math.log(sched.sigma_min), math.log(sched.sigma_max))
        increments = torch.diff(torch.log(grid.double()))  # softmax(ℓ) = increments / span reproduces `grid`
        self.logits = nn.Parameter(torch.log(increments / increments.sum()))
        steps = len(grid) - 1
        corrections = corrections or [[0.0] * k for k in correction_sizes(steps)]
        if [len(c) for c in corrections] != correction_sizes(steps):
            raise ValueError(f"corrections of sizes {[len(c) for c in corrections]} do not fit a {steps}-step solve")
        self.coefficients = nn.ParameterList(
            [nn.Parameter(torch.tensor(c, dtype=torch.float64), requires_grad=learn_coefficients) for c in corrections]
        )  # fmt: skip

    def grid(self) -> torch.Tensor:
        """The increasing σ̄ nodes (float64), differentiable in the logits."""
        lo, hi = self.log_span
        u = torch.cumsum(torch.softmax(self.logits, 0), 0)
        inner = torch.exp(lo + (hi - lo) * u[:-1])
        return torch.cat([inner.new_tensor([math.exp(lo)]), inner, inner.new_tensor([math.exp(hi)])])

    def corrections(self) -> list[torch.Tensor]:
        return list(self.coefficients)

    def export(self) -> tuple[list[float], list[list[float]]]:
        """(grid, corrections) as plain lists, the config.json form."""
        return self.grid().tolist(), [c.tolist() for c in self.coefficients]


@dataclass
class FitResult:
    """A gradient fit's validation error before and after, and how long it ran."""

    val_start: float
    val_best: float
    iterations: int
    best_iteration: int


def fit(
    solves: list[LearnedSolve],
    loss: Callable[[torch.Tensor], torch.Tensor],
    count: int,
    validate: Callable[[], float],
    iterations: int = 200,
    batch_size: int = 32,
    lr: float = 0.02,
    every: int = 10,
    seed: int = 0,
    on_step: Callable[[int, float], None] | None = None,
) -> FitResult:
    """Adam on the solves' parameters, loss(indices) over minibatches of `count` tuning items, the learning rate
    cosine-annealed to zero; keeps the parameters with the lowest validate() (checked every `every` iterations,
    and at the start, so the fit never ends worse on validation than it began)."""
    generator = torch.Generator().manual_seed(seed)  # the minibatches
    params = [p for s in solves for p in s.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(iterations, 1))
    start = best = validate()
    best_state, best_iteration = copy.deepcopy([s.state_dict() for s in solves]), 0
    for it in range(1, iterations + 1):
        idx = torch.randperm(count, generator=generator)[: min(batch_size, count)]
        value = loss(idx)
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
        schedule.step()
        if it % every == 0 or it == iterations:
            current = validate()
            if current < best:
                best, best_iteration = current, it
                best_state = copy.deepcopy([s.state_dict() for s in solves])
            if on_step:
                on_step(it, best)
    for s, state in zip(solves, best_state, strict=True):
        s.load_state_dict(state)
    return FitResult(start, best, iterations, best_iteration)
