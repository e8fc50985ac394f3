"""The diffusion ELBO: a bound that is tight for an exact score, and cheap to compare models with."""

import math

import pytest
import torch

from ddib.errors import DDIBError
from ddib.likelihood.elbo import draw, elbo

from .problems import gaussian_model


def _gaussian_log_density(x, mean, std):
    d = x[0].numel()
    return (-0.5 * ((x - mean) / std).pow(2).reshape(len(x), -1).sum(1) - d * math.log(std)
            - 0.5 * d * math.log(2 * math.pi))  # fmt: skip


def test_elbo_of_an_exact_score_matches_the_log_density_within_its_error():
    mean, std = torch.tensor([0.3, -0.2, 0.1, 0.5]), 0.6
    model = gaussian_model(mean, std)
    x = mean + std * torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
    res = elbo(model, x, levels=64, generator=torch.Generator().manual_seed(1))
    exact = _gaussian_log_density(x, mean, std)
    gap = (exact - res.log_p.double()).mean().item()
    stderr = (res.stderr.double().pow(2).mean() / len(x)).sqrt().item()
    assert abs(gap) < 4 * stderr + 0.02, (gap, stderr)  # tight bound: no systematic gap for the true score
    assert res.nfe == 64 and res.stderr.gt(0).all()


def test_elbo_ranks_the_right_gaussian_with_shared_noise():
    near, far = gaussian_model(torch.zeros(4), 0.5), gaussian_model(torch.full((4,), 1.5), 0.5)
    x = 0.5 * torch.randn(32, 4, generator=torch.Generator().manual_seed(2))
    sample = draw(x, 16, torch.Generator().manual_seed(3))  # the same λ and ε for both models
    right = (elbo(near, x, 16, sample).log_p > elbo(far, x, 16, sample).log_p).float().mean()
    assert right >= 0.9


def test_a_worse_model_gets_a_lower_bound_on_average():
    mean, std = torch.zeros(4), 0.5
    x = std * torch.randn(128, 4, generator=torch.Generator().manual_seed(4))
    sample = draw(x, 16, torch.Generator().manual_seed(5))
    good = elbo(gaussian_model(mean, std), x, 16, sample).log_p.mean()
    wrong_scale = elbo(gaussian_model(mean, 1.0), x, 16, sample).log_p.mean()
    assert good > wrong_scale


def test_a_band_over_the_whole_range_is_the_elbo_without_its_constants():
    model = gaussian_model(torch.zeros(4), 0.5)
    x = 0.5 * torch.randn(8, 4, generator=torch.Generator().manual_seed(6))
    sample = draw(x, 8, torch.Generator().manual_seed(7))
    sched = model.schedule
    whole = (-2 * math.log(sched.sigma_max), -2 * math.log(sched.sigma_min))
    full, band = elbo(model, x, 8, sample), elbo(model, x, 8, sample, band=whole)
    diff = full.per_draw - band.per_draw  # the prior and reconstruction terms: the same at every level
    assert torch.allclose(diff, diff[:, :1].expand_as(diff), atol=1e-4) and diff.abs().min() > 1
    assert torch.allclose(full.stderr, band.stderr)
    narrow = elbo(model, x, 8, sample, band=(-2.0, 2.0))
    assert (narrow.log_p.abs() < band.log_p.abs()).all()  # a part of the integral: each term is non-negative
    with pytest.raises(DDIBError, match="log-SNR range"):
        elbo(model, x, 8, sample, band=(-50.0, 0.0))


def test_the_band_ranks_the_right_gaussian_with_shared_noise():
    near, far = gaussian_model(torch.zeros(4), 0.5), gaussian_model(torch.full((4,), 1.5), 0.5)
    x = 0.5 * torch.randn(32, 4, generator=torch.Generator().manual_seed(2))
    sample = draw(x, 16, torch.Generator().manual_seed(3))
    right = elbo(near, x, 16, sample, band=(-2.0, 2.0)).log_p > elbo(far, x, 16, sample, band=(-2.0, 2.0)).log_p
    assert right.float().mean() >= 0.9


def test_one_random_draw_is_never_decisive_but_an_exact_one_is():
    from ddib.likelihood.source_inference import DomainScore, rank

    a, b = torch.tensor([[1.0], [1.0]]), torch.tensor([[2.0], [2.0]])
    assert not rank([DomainScore("a", a, 1), DomainScore("b", b, 1)]).decisive  # one probe: error unknown
    exact = rank([DomainScore("a", a, 1, estimated=False), DomainScore("b", b, 1, estimated=False)])
    assert exact.decisive and exact.best == "a" and exact.margin == 1.0
    many = rank([DomainScore("a", a.repeat(1, 4) + torch.tensor([0.0, 0.1, -0.1, 0.0]), 4),
                 DomainScore("b", b.repeat(1, 4), 4)])  # fmt: skip
    assert many.decisive and many.margin_stderr > 0


def test_bench_identify_confusion_and_bits_matrices(tiny_models, tmp_path):
    from ddib.bench.identify import bench_identify, matrix_markdown
    from ddib.io.images import expand_inputs, load_image
    from ddib.model.registry import load_domain_model

    from .conftest import make_blob_images

    models = {d: load_domain_model(d, str(tiny_models), "cpu").diffusion for d in ("reds", "blues")}
    images = {}
    for d, rgb in (("reds", (230, 30, 30)), ("blues", (30, 30, 230))):
        folder = make_blob_images(tmp_path / d, 6, rgb, seed=9)
        images[d] = torch.stack([load_image(f, 16, 3) for f in expand_inputs([folder])])
    rows, details = bench_identify(models, images, [("elbo", {"levels": 8})], batch_size=4)
    (row,), (detail,) = rows, details
    confusion = detail.confusion
    assert sum(confusion["reds"].values()) == sum(confusion["blues"].values()) == 6 == row.n_per_domain
    right = confusion["reds"]["reds"] + confusion["blues"]["blues"]
    assert row.accuracy == right / 12 and row.accuracy > 0.9  # red and blue blobs are told apart by colour
    bits = detail.bits_per_dim
    assert bits["reds"]["reds"] < bits["reds"]["blues"] and bits["blues"]["blues"] < bits["blues"]["reds"]
    assert f"reds {bits['reds']['reds']:.3f}" in row.bits_per_dim
    md = matrix_markdown(confusion, "images", "d")
    assert md.splitlines()[0] == "| images | reds | blues |" and md.splitlines()[2].startswith("| reds | ")


def test_bench_identify_settings_parse_bands_and_refuse_bad_ones():
    from ddib.bench.identify import parse_setting
    from ddib.likelihood.source_inference import BAND

    assert parse_setting("band:16", 1e-3) == ("band", {"levels": 16, "band": BAND})
    assert parse_setting("band:4:-4:4.5", 1e-3) == ("band", {"levels": 4, "band": (-4.0, 4.5)})
    assert parse_setting("elbo:8", 1e-3) == ("elbo", {"levels": 8})
    assert parse_setting("ode:2", 1e-2) == ("ode", {"probes": 2, "rtol": 1e-2, "atol": 1e-2})
    for bad in ("band:0", "band:4:2:-2", "band:4:1", "elbo:4:-1:1", "ode", "guess:4", "band:x"):
        with pytest.raises(DDIBError, match="bad setting"):
            parse_setting(bad, 1e-3)
