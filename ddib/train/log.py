"""`train_log.jsonl`: one JSON line per log interval of a run (step, loss, smoothed loss, lr, images/s, elapsed).

The log continues across resumes: a resumed run first drops the lines past the step it resumes from (written
after the last checkpoint by a process that was then killed) and any torn last line, so the log always
describes the run that the checkpoint holds; `elapsed` counts training time over all of the run's processes.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from ..errors import DDIBError
from ..io.atomic import atomic_write

LOG_FILE = "train_log.jsonl"
# Smoothing of `loss_ema`: the loss of one step is noisy (one batch, one draw of t per image).
LOSS_EMA_DECAY = 0.98


def read_log(path: str | Path) -> list[dict]:
    """The records of a training log; unparseable lines (a torn write) are skipped."""
    records = []
    try:
        lines = Path(path).read_text().splitlines()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise DDIBError(f"cannot read {path}: {exc.strerror or exc}") from None
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int):
            records.append(record)
    return records


@dataclass
class TrainLog:
    """Appends the run's log lines; `resume(step)` first trims the log back to that step."""

    path: Path
    elapsed: float = 0.0  # training seconds before this process
    loss_ema: float = math.nan

    def resume(self, step: int) -> None:
        kept = [r for r in read_log(self.path) if r["step"] <= step]
        if self.path.exists():
            text = "".join(json.dumps(r) + "\n" for r in kept)
            atomic_write(self.path, lambda f: f.write(text.encode()))
        if kept:
            self.elapsed = float(kept[-1].get("elapsed", 0.0))
            self.loss_ema = float(kept[-1].get("loss_ema", math.nan))

    def smooth(self, loss: float) -> float:
        """The exponential moving average of the per-step loss, continued across resumes."""
        ema, d = self.loss_ema, LOSS_EMA_DECAY
        self.loss_ema = loss if math.isnan(ema) else d * ema + (1 - d) * loss
        return self.loss_ema

    def append(self, record: dict) -> None:
        line = json.dumps(record) + "\n"
        try:
            with open(self.path, "a") as f:
                f.write(line)
        except OSError as exc:
            raise DDIBError(f"cannot write {self.path}: {exc.strerror or exc}") from None


def loss_chart(logs: dict[str, list[dict]], smoothed: bool = False):
    """Loss against step for each run (log scale): each interval's mean loss, or the smoothed loss."""
    from ..io.charts import line_chart

    key = "loss_ema" if smoothed else "loss"
    series = {name: [(r["step"], r[key]) for r in records if key in r] for name, records in logs.items()}
    what = "smoothed loss (EMA 0.98 per step)" if smoothed else "mean loss per log interval"
    return line_chart(series, f"training {what}", "step", "loss", size=(900, 520), xlog=False, ylog=True,
                      markers=False)  # fmt: skip
