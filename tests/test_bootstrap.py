"""Bootstrap intervals and the quality figures built on them: known answers."""

import math

import torch

from ddib.evaluation import bootstrap
from ddib.evaluation.evaluate import score_translations
from ddib.evaluation.figures import figures, per_image
from ddib.evaluation.metrics import LEVELS, frechet_distance

from .conftest import mnist_dir, needs_mnist


def test_a_constant_has_a_degenerate_interval():
    indices = bootstrap.resamples(50, 200)
    for estimate in (bootstrap.mean(torch.full((50,), 0.25), indices),
                     bootstrap.quantile(torch.full((50,), 3.0), 0.9, indices),
                     bootstrap.root_mean(torch.full((50,), 4.0), indices)):  # fmt: skip
        assert estimate.low == estimate.value == estimate.high
    assert bootstrap.root_mean(torch.full((50,), 4.0), indices).value == 2.0


def test_a_bernoulli_share_is_covered_about_as_often_as_the_level_says():
    p, n, trials = 0.3, 200, 100
    g = torch.Generator().manual_seed(1)
    covered, widths = 0, []
    for trial in range(trials):
        draws = (torch.rand(n, generator=g) < p).double()
        est = bootstrap.mean(draws, bootstrap.resamples(n, 200, seed=trial))
        assert est.low <= est.value <= est.high and est.value == draws.mean().item()
        covered += est.contains(p)
        widths.append(est.high - est.low)
    assert 85 <= covered <= 100  # 95% nominal; 100 trials
    normal = 2 * 1.96 * math.sqrt(p * (1 - p) / n)  # the normal approximation's width
    assert abs(sum(widths) / trials - normal) < 0.15 * normal


def test_resamples_are_seeded_and_paired():
    assert torch.equal(bootstrap.resamples(10, 5, seed=3), bootstrap.resamples(10, 5, seed=3))
    assert not torch.equal(bootstrap.resamples(10, 5, seed=3), bootstrap.resamples(10, 5, seed=4))


def test_the_fd_interval_holds_the_value_where_the_plain_percentile_does_not():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(300, 8, generator=g), torch.randn(3000, 8, generator=g)
    indices = bootstrap.resamples(300, 200)
    est = bootstrap.frechet(a, b, indices)
    assert est.value == frechet_distance(a, b) and est.low < est.value < est.high
    # Resamples repeat images, so their FD sits above the value: the uncorrected interval misses it.
    plain = torch.tensor([frechet_distance(a[i], b) for i in indices])
    assert plain.quantile(0.025).item() > est.value


def test_overlap_and_containment():
    one, two, three = bootstrap.Estimate(1, 0, 2), bootstrap.Estimate(2.5, 1.5, 3), bootstrap.Estimate(5, 4, 6)
    assert one.overlaps(two) and two.overlaps(one) and not one.overlaps(three)
    assert one.contains(2) and not one.contains(2.5)


def _digits(values: list[float]) -> torch.Tensor:
    """Grey images (N, 3, 8, 8) at the given levels in [-1, 1] (hue-less: every hue error is 180°)."""
    return torch.tensor(values).reshape(-1, 1, 1, 1).expand(-1, 3, 8, 8).clone()


def test_the_figures_values_are_evaluates_own():
    sources, outputs = _digits([-1.0, 0.0, 0.5, 1.0]), _digits([0.0, 0.0, 0.0, 0.0])
    cycled = sources + torch.tensor([0.0, 0.1, 0.2, 0.3]).reshape(-1, 1, 1, 1)
    found = figures(per_image(sources, outputs, cycled, "reds", "blues", None), None, 50)
    plain = score_translations(sources, outputs, cycled, "reds", "blues", None, None)
    assert math.isclose(found["hue_error_median"].value, plain["hue_error_median"])
    assert math.isclose(found["cycle_rms"].value, plain["cycle_rmse"] * LEVELS, rel_tol=1e-6)
    assert found["read_as_target"] is None and found["frechet_distance"] is None  # no classifier
    assert found["cycle_rms"].low < found["cycle_rms"].value < found["cycle_rms"].high


@needs_mnist
def test_the_digit_figures_are_evaluates_own():
    from ddib.data.inputs import held_out_digits
    from ddib.evaluation.classifier import extract_features, load_classifier

    classifier = load_classifier()
    fives, sevens = (held_out_digits(mnist_dir(), d, 40) for d in ("fives", "sevens"))
    reals = extract_features(classifier, held_out_digits(mnist_dir(), "sevens", 300, seed=1))
    sources, outputs, cycled = fives[:20], sevens[:20], torch.cat([fives[:15], sevens[20:25]])
    found = figures(per_image(sources, outputs, cycled, "fives", "sevens", classifier), reals, 100)
    plain = score_translations(sources, outputs, cycled, "fives", "sevens", classifier, reals)
    assert math.isclose(found["read_as_target"].value, plain["target_accuracy"])
    assert math.isclose(found["cycle_read_as_source"].value, plain["cycle_source_accuracy"])
    assert found["cycle_read_as_source"].value <= 0.8  # five of the twenty cycles are sevens
    assert math.isclose(found["frechet_distance"].value, plain["frechet_distance"])
    assert found["frechet_distance"].contains(plain["frechet_distance"])
