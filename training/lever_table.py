"""Collect the colour-lever evaluations into the docs' table and figure.

    python training/lever_table.py runs/levers/eval docs/figures/colour-levers.png

Reads every `ddib evaluate --json` report in the folder, named `<lever>@<steps>-<anything>.json` (a pair of one
lever at one training length) or `floor-<lever>@<steps>-<anything>.json` (two independently trained fives models
of one lever), prints one Markdown row per report and draws hue median against training steps, one line per lever.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from ddib.io.charts import line_chart

NAME = re.compile(r"^(?P<floor>floor-)?(?P<lever>[^@]+)@(?P<steps>\d+)(?P<rest>[^-]*)-")


def main(folder: Path, figure: Path) -> None:
    rows, series = [], {}
    for path in sorted(folder.glob("*.json")):
        m = NAME.match(path.name)
        if not m:
            continue
        r = json.loads(path.read_text())
        kind = "same-domain floor (fives A → fives B)" if m["floor"] else "fives → sevens"
        lever, steps = m["lever"] + m["rest"], int(m["steps"])
        rows.append((kind, lever, steps, r))
        label = f"{lever}{' floor' if m['floor'] else ''}{'' if r['n'] <= 100 else ' (all held-out)'}"
        series.setdefault(label, []).append((steps, r["hue_error_median"]))
    print("| measurement | lever | steps | images | read as target | hue median / p90 | FD | images/s |")
    print("|---|---|---|---|---|---|---|---|")
    for kind, lever, steps, r in sorted(rows, key=lambda t: (t[0], t[1], t[2], t[3]["n"])):
        fd = "—" if r.get("frechet_distance") is None else f"{r['frechet_distance']:.1f}"
        print(
            f"| {kind} | {lever} | {steps} | {r['n']} | {100 * r['target_accuracy']:.1f}% | "
            f"{r['hue_error_median']:.1f}° / {r['hue_error_p90']:.1f}° | {fd} | {r['images_per_s']:.2f} |"
        )
    chart = line_chart(
        {k: sorted(v) for k, v in series.items()}, "Hue error vs training steps (median, degrees)", "training steps",
        "hue error median (deg)", xlog=False, ylog=False,
    )  # fmt: skip
    figure.parent.mkdir(parents=True, exist_ok=True)
    chart.save(figure)
    print(f"\nfigure: {figure}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python training/lever_table.py EVAL_DIR FIGURE.png")
    main(Path(sys.argv[1]), Path(sys.argv[2]))
