"""The quality figures of `ddib evaluate`, each with a 95% bootstrap interval over the images: what `ddib bench
quality` compares solves by. The values are `score_translations`' own; here they come from per-image scores."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .bootstrap import RESAMPLES, Estimate, frechet, mean, quantile, resamples, root_mean
from .classifier import DigitClassifier, extract_features, predict
from .evaluate import digit_of
from .metrics import LEVELS, hue_errors

# Every figure, in table order; the digit figures need a classifier and digit domains, the cycle ones a cycle.
FIGURES = ("read_as_target", "hue_error_median", "hue_error_p90", "cycle_read_as_source", "cycle_rms",
           "frechet_distance")  # fmt: skip
HIGHER_IS_BETTER = frozenset({"read_as_target", "cycle_read_as_source"})
TITLES = {
    "read_as_target": "read as target",
    "hue_error_median": "hue error median (°)",
    "hue_error_p90": "hue error p90 (°)",
    "cycle_read_as_source": "cycle read as source",
    "cycle_rms": "cycle RMS (levels)",
    "frechet_distance": "FD to real targets",
}


@dataclass(frozen=True)
class PerImage:
    """Each translated image's scores: read as the target digit (0/1), hue error (°), its translation back read as
    the source digit (0/1) and that cycle's mean squared error (8-bit levels²), with the classifier's features."""

    hue_error: torch.Tensor
    read_as_target: torch.Tensor | None = None
    cycle_read_as_source: torch.Tensor | None = None
    cycle_squares: torch.Tensor | None = None
    features: torch.Tensor | None = None


def per_image(sources: torch.Tensor, outputs: torch.Tensor, cycled: torch.Tensor | None, source: str, target: str,
              classifier: DigitClassifier | None) -> PerImage:  # fmt: skip
    """The per-image scores of translations (and of their translations back, `cycled`); those that need what is
    missing (a classifier, a digit domain, the cycle) are None."""
    sources, outputs = sources.cpu(), outputs.cpu()
    tgt_digit, src_digit = digit_of(target), digit_of(source)
    read = features = cycle_read = squares = None
    if classifier is not None and tgt_digit is not None:
        read = (predict(classifier, outputs)[0] == tgt_digit).double()
        features = extract_features(classifier, outputs)
    if cycled is not None:
        squares = ((cycled.cpu().double() - sources.double()) * LEVELS).pow(2).flatten(1).mean(1)
        if classifier is not None and src_digit is not None:
            cycle_read = (predict(classifier, cycled.cpu())[0] == src_digit).double()
    return PerImage(hue_errors(sources, outputs), read, cycle_read, squares, features)


def figures(scores: PerImage, target_features: torch.Tensor | None, count: int = RESAMPLES,
            seed: int = 0) -> dict[str, Estimate | None]:  # fmt: skip
    """Every figure of FIGURES with its interval over `count` seeded resamples of the images (None where the scores
    lack it); FD is to the fixed `target_features` of real target images."""
    n = len(scores.hue_error)
    indices = resamples(n, count, seed)
    fd = None
    if scores.features is not None and target_features is not None and n > 1 and len(target_features) > 1:
        fd = frechet(scores.features, target_features, indices)
    optional = lambda values, fn: None if values is None else fn(values, indices)  # noqa: E731
    return {
        "read_as_target": optional(scores.read_as_target, mean),
        "hue_error_median": quantile(scores.hue_error, 0.5, indices),
        "hue_error_p90": quantile(scores.hue_error, 0.9, indices),
        "cycle_read_as_source": optional(scores.cycle_read_as_source, mean),
        "cycle_rms": optional(scores.cycle_squares, root_mean),
        "frechet_distance": fd,
    }
