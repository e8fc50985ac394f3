"""`ddib evaluate`: translation quality on held-out colored-MNIST digits, measured with the bundled classifier."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from ..bridge import ode, pipeline
from ..bridge.batching import batch_count
from ..data.colored_mnist import DIGIT_DOMAINS
from ..model.diffusion import Diffusion
from ..train import distributed
from .classifier import DigitClassifier, extract_features, predict
from .metrics import frechet_distance, hue_errors, quantile, rmse


@dataclass
class EvalReport:
    """Every number `ddib evaluate` reports for one source → target pair."""

    source: str
    target: str
    n: int
    solver: str
    device: str
    target_accuracy: float | None
    source_share: float | None
    hue_error_median: float
    hue_error_p90: float
    cycle_rmse: float | None
    cycle_source_accuracy: float | None
    frechet_distance: float | None
    nfe_per_image: float
    images_per_s: float
    seconds: float
    classifier_test_accuracy: float | None
    source_model: str = ""  # where each model came from: bundled, local, or its directory
    target_model: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def digit_of(domain: str | None) -> int | None:
    return DIGIT_DOMAINS.index(domain) if domain in DIGIT_DOMAINS else None


def translate_batched(src: Diffusion, tgt: Diffusion, x: torch.Tensor, opts: ode.ODEOptions, batch_size: int,
                      stats: ode.SolveStats, on_batch: Callable[[int], None] | None = None,
                      ) -> torch.Tensor:  # fmt: skip
    """decode(tgt, encode(src, x)) in batches on the models' device, back on the CPU; on_batch(k) after each."""
    batches = pipeline.translate_batches(src, tgt, x, opts, batch_size, pipeline.per_batch(on_batch), stats)
    return pipeline.collect(batches)[1]


def evaluate_pair(
    source: str,
    target: str,
    src_model: Diffusion,
    tgt_model: Diffusion,
    sources: torch.Tensor,
    opts: ode.ODEOptions,
    classifier: DigitClassifier | None,
    target_reals: torch.Tensor | None,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    cycle: bool = True,
    on_batch: Callable[[int], None] | None = None,
    guidance: float = 0.0,
    digits: tuple[str | None, str | None] | None = None,
    info: distributed.DistInfo = distributed.DistInfo(),
) -> tuple[EvalReport, torch.Tensor] | None:
    """Translate `sources` and score the outputs; returns (report, translations).

    `guidance` w applies where a label of a conditional model decodes (the target, and the source on the way
    back); encoding always solves the plain probability-flow ODE. `digits`: the digit domains of source and
    target where their names are not ones (`fives` for the model fives-rgb). Under torchrun (`info`) each process
    translates its share of `sources`; rank 0 gathers them, scores all and returns the report, the others None."""
    device = torch.device(device)
    stats = ode.SolveStats()
    mine = distributed.shard(list(range(len(sources))), info)
    tgt_decoder, src_decoder = (guided(m, guidance) for m in (tgt_model, src_model))
    distributed.barrier(info)
    t0 = time.perf_counter()
    outputs = sources[:0]  # a process with no share (more processes than images) translates nothing
    if mine:
        outputs = translate_batched(src_model, tgt_decoder, sources[mine], opts, batch_size, stats, on_batch)
    distributed.barrier(info)  # the slowest process sets the time
    seconds = time.perf_counter() - t0
    nfe = stats.nfe / batch_count(len(mine), batch_size) if mine else 0.0
    back = None
    if cycle:
        back = outputs
        if mine:
            back = translate_batched(tgt_model, src_decoder, outputs, opts, batch_size, ode.SolveStats(), on_batch)
    if info.enabled:
        outputs, back = (None if t is None else distributed.gather_in_order(list(t), info) for t in (outputs, back))
        if not info.is_main:
            return None
        outputs, back = (None if t is None else torch.stack(t) for t in (outputs, back))
    real_feats = None
    if classifier is not None and target_reals is not None:
        real_feats = extract_features(classifier, target_reals)
    scores = score_translations(sources, outputs, back, source, target, classifier, real_feats, digits)
    report = EvalReport(
        source=source,
        target=target,
        n=len(sources),
        solver=ode.describe_solve(opts, src_model, tgt_model),
        device=str(device) + (f" × {info.world_size} processes" if info.enabled else ""),
        **scores,
        nfe_per_image=nfe,
        images_per_s=len(sources) / seconds,
        seconds=seconds,
        classifier_test_accuracy=None if classifier is None else classifier.metadata.get("test_accuracy"),
    )
    return report, outputs


def guided(model: Diffusion, guidance: float) -> Diffusion:
    """The decoder of a label with classifier-free guidance w (models without a label decode unguided)."""
    return model.with_label(model.label, guidance) if guidance and model.label is not None else model


def score_translations(
    sources: torch.Tensor,
    outputs: torch.Tensor,
    cycled: torch.Tensor | None,
    source: str,
    target: str,
    classifier: DigitClassifier | None,
    target_features: torch.Tensor | None,
    digits: tuple[str | None, str | None] | None = None,
) -> dict:
    """The quality metrics of `EvalReport` for translations (and their translations back, `cycled`, if any).

    `target_features`: the classifier's features of real target images, for FD (computed once by the caller).
    Metrics that need what is missing (a classifier, a digit domain, real targets, the cycle) are None.
    """
    sources, outputs = sources.cpu(), outputs.cpu()
    hue = hue_errors(sources, outputs)
    src_name, tgt_name = digits or (source, target)
    tgt_digit, src_digit = digit_of(tgt_name), digit_of(src_name)
    scores = dict(target_accuracy=None, source_share=None, hue_error_median=quantile(hue, 0.5),
                  hue_error_p90=quantile(hue, 0.9), cycle_rmse=None, cycle_source_accuracy=None,
                  frechet_distance=None)  # fmt: skip
    if classifier is not None and tgt_digit is not None:
        labels, _ = predict(classifier, outputs)
        scores["target_accuracy"] = (labels == tgt_digit).float().mean().item()
        if src_digit is not None:
            scores["source_share"] = (labels == src_digit).float().mean().item()
        if target_features is not None and len(target_features) > 1 and len(outputs) > 1:
            scores["frechet_distance"] = frechet_distance(extract_features(classifier, outputs), target_features)
    if cycled is not None:
        scores["cycle_rmse"] = rmse(cycled.cpu(), sources)
        if classifier is not None and src_digit is not None:
            labels, _ = predict(classifier, cycled)
            scores["cycle_source_accuracy"] = (labels == src_digit).float().mean().item()
    return scores
