"""What `ddib perturb` writes: a figure per experiment (inputs, latents, outputs by coefficient) and the summary
tables (Markdown, CSV, JSON) of a preset."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from ..io.atomic import atomic_write
from ..io.images import labelled_grid, save_png
from .runner import LATENT_CLIP, REFERENCE_LABEL, ExperimentResult, latent_to_image


def _text_size(text: str) -> tuple[int, int]:
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    left, top, right, bottom = draw.multiline_textbbox((0, 0), text)
    return right - left, bottom - top


def figure(
    result: ExperimentResult,
    inputs: torch.Tensor,
    latent: torch.Tensor,
    reference: torch.Tensor,
    input_label: str = "inputs",
    title: str | None = None,
) -> Image.Image:
    """Rows: inputs, the latent (clamp ±2.5, scaled to [-1, 1]), the reference translation, then one per coef.

    Image-space experiments add, above each decoded row, the perturbed input that was encoded.
    """
    rows: list[tuple[str, torch.Tensor]] = [
        (input_label, inputs),
        (f"latent z\nclamp +-{LATENT_CLIP:g}", latent_to_image(latent)),
        (REFERENCE_LABEL, reference),
    ]
    for i, (row, images) in enumerate(zip(result.rows, result.outputs, strict=True)):
        label = result.spec.plan.label(row.coef)
        if result.perturbed_inputs is not None:
            head, *rest = label.split("\n")
            rows.append(("\n".join([f"{head} input", *rest[:1]]), result.perturbed_inputs[i]))
        rows.append((label, images))
    width = max(110, 8 + max(_text_size(label)[0] for label, _ in rows))
    sheet = labelled_grid([(label, t.cpu()) for label, t in rows], label_width=width)
    return titled(sheet, title) if title else sheet


def titled(sheet: Image.Image, title: str) -> Image.Image:
    """The sheet below a one-line title bar."""
    tw, th = _text_size(title)
    bar = th + 10
    out = Image.new("RGB", (max(sheet.width, tw + 8), sheet.height + bar), (255, 255, 255))
    ImageDraw.Draw(out).text((4, 4), title, fill=(0, 0, 0))
    out.paste(sheet, (0, bar))
    return out


# -------------------------------------------------------------------------------------------- summary

SUMMARY_FIELDS = (
    "experiment",
    "label",
    "ops",
    "base",
    "other",
    "coef",
    "latent_mean",
    "latent_std",
    "ks",
    "skew",
    "excess_kurtosis",
    "neighbour_corr",
    "target_share",
    "hue_error_median",
)


def summary_records(results: Sequence[ExperimentResult]) -> list[dict]:
    """One record per row of every experiment; the reference appears once, as the first record."""
    records: list[dict] = []
    if results:
        records.append(results[0].reference.to_dict())
    for r in results:
        records += [row.to_dict() for row in r.rows]
    return records


def _fmt(v, digits: int = 3) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.{digits}f}"
    return str(v)


def summary_csv(records: Sequence[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=SUMMARY_FIELDS, lineterminator="\n")
    writer.writeheader()
    for rec in records:
        writer.writerow({k: ("" if rec.get(k) is None else rec.get(k)) for k in SUMMARY_FIELDS})
    return buf.getvalue()


def summary_markdown(records: Sequence[dict], titles: dict[str, str] | None = None, header: str = "") -> str:
    """A Markdown table: experiment, row, latent mean/std, KS, skew, kurtosis, neighbour corr, target %, hue."""
    cols = (
        "exp",
        "row",
        "coef",
        "mean",
        "std",
        "KS vs N(0,1)",
        "skew",
        "ex. kurt",
        "nbr corr",
        "read as target",
        "hue err median (deg)",
    )
    lines = [header] if header else []
    lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in records:
        share = "" if r["target_share"] is None else f"{100 * r['target_share']:.0f}%"
        hue = "" if r["hue_error_median"] is None else f"{r['hue_error_median']:.1f}"
        cells = (
            r["experiment"],
            r["label"],
            "" if r["coef"] is None else f"{r['coef']:g}",
            _fmt(r["latent_mean"]),
            _fmt(r["latent_std"]),
            _fmt(r["ks"]),
            _fmt(r["skew"], 2),
            _fmt(r["excess_kurtosis"], 2),
            _fmt(r["neighbour_corr"]),
            share,
            hue,
        )
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    if titles:
        lines += ["", *[f"- {k}: {t}" for k, t in titles.items()]]
    return "\n".join(lines) + "\n"


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


def write_preset(out_dir: Path, preset_name: str, results: Sequence[ExperimentResult], inputs: torch.Tensor,
                 latent: torch.Tensor, reference: torch.Tensor, input_label: str, about: dict) -> None:  # fmt: skip
    """A preset's figures (one per experiment) and summary.md/.csv/.json in out_dir; `about` describes the run
    (source, target, inputs, n, solver, device)."""
    for r in results:
        sheet = figure(r, inputs, latent, reference, input_label, title=r.spec.title)
        save_png(sheet, out_dir / f"{r.spec.slug()}.png")
    records = summary_records(results)
    header = (f"# ddib perturb --preset {preset_name}: {about['source']} → {about['target']}, {about['inputs']}, "
              f"{about['solver']}\n")  # fmt: skip
    titles = {r.spec.key: f"{r.spec.title} ({r.spec.slug()}.png)" for r in results}
    write_text(out_dir / "summary.md", summary_markdown(records, titles, header))
    write_text(out_dir / "summary.csv", summary_csv(records))
    payload = {"preset": preset_name, **about, "experiments": [r.to_dict() for r in results], "records": records}
    write_text(out_dir / "summary.json", json.dumps(payload, indent=2) + "\n")


def write_experiment(out: Path, json_out: Path | None, result: ExperimentResult, inputs: torch.Tensor,
                     latent: torch.Tensor, reference: torch.Tensor, input_label: str, about: dict) -> None:  # fmt: skip
    """One experiment's figure, and its numbers as JSON when asked for."""
    save_png(figure(result, inputs, latent, reference, input_label), out)
    if json_out is not None:
        write_text(json_out, json.dumps({**about, **result.to_dict()}, indent=2) + "\n")
