"""Progress display: a rich bar on a terminal, plain log lines otherwise."""

from __future__ import annotations

import math

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ..train.loop import Progress as TrainProgress
from .app import console


def bar(description: str = "", *fields: str) -> Progress:
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn()]
    columns += [TextColumn(f) for f in fields]
    columns += [TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn()]
    return Progress(*columns, console=console, disable=not console.is_terminal, transient=False)


class TrainDisplay:
    """Shows step, loss, images/s and ETA: a live bar on a terminal, a line every `log_every` steps otherwise."""

    def __init__(self, total: int, log_every: int = 100, enabled: bool = True, unit: str = "img"):
        self.total = total
        self.unit = unit
        self.log_every = max(1, log_every)
        self.enabled = enabled
        self.interactive = console.is_terminal and enabled
        self.progress = bar("train", "loss {task.fields[loss]}", "{task.fields[rate]} " + unit + "/s")
        self.task = None
        self.loss_ema = math.nan
        self.first_step = 0

    def __enter__(self):
        if self.interactive:
            self.progress.start()
        return self

    def __exit__(self, *exc):
        if self.interactive:
            self.progress.stop()

    def __call__(self, p: TrainProgress) -> None:
        if not self.enabled:
            return
        if p.event == "start":
            self.first_step = p.step
            if self.interactive:
                self.task = self.progress.add_task("train", total=p.total, completed=p.step, loss="-", rate="-")
            if p.step:
                console.print(f"resuming at step {p.step}/{p.total}")
            return
        if p.event == "saved":
            if not self.interactive and p.step % self.log_every and p.step != p.total:
                return
            console.print(f"step {p.step}: checkpoint saved to {p.path}")
            return
        if p.event == "sampled":
            console.print(f"step {p.step}: samples written to {p.path}")
            return
        self.loss_ema = p.loss_ema
        if self.interactive:
            self.progress.update(self.task, completed=p.step, loss=f"{self.loss_ema:.4f}", rate=f"{p.images_per_s:.0f}")
        elif p.step % self.log_every == 0 or p.step == p.total:
            eta = (p.total - p.step) * p.elapsed / max(1, p.step - self.first_step)
            console.print(
                f"step {p.step}/{p.total}  loss {self.loss_ema:.4f}  {p.images_per_s:.0f} {self.unit}/s  "
                f"elapsed {p.elapsed:.0f}s  eta {eta:.0f}s"
            )
