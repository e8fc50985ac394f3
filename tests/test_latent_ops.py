"""Latent perturbation ops: exact values on hand-made tensors, validation, composition, statistics."""

import math

import pytest
import torch

from ddib.bridge.latent import Latent
from ddib.errors import DDIBError
from ddib.perturb import latent_ops as lo
from ddib.perturb.runner import REPORT_PRESET, ks_normal_distance, latent_stats, neighbour_correlation, skew_kurtosis


def _block(a, b, c, d):
    return torch.tensor([[a, b], [c, d]], dtype=torch.float32).view(1, 1, 2, 2)


# ------------------------------------------------------------------------------------------ rotate2x2


def test_rotate2x2_turns_a_block_clockwise():
    out = lo.rotate2x2(_block(1, 2, 3, 4))
    assert torch.equal(out, _block(3, 1, 4, 2))  # [[a, b], [c, d]] -> [[c, a], [d, b]]


def test_rotate2x2_acts_per_block_and_channel():
    z = torch.arange(32.0).view(1, 2, 4, 4)
    out = lo.rotate2x2(z)
    for ch in range(2):
        for i in (0, 2):
            for j in (0, 2):
                a, b = z[0, ch, i, j], z[0, ch, i, j + 1]
                c, d = z[0, ch, i + 1, j], z[0, ch, i + 1, j + 1]
                expect = torch.tensor([[c, a], [d, b]])
                assert torch.equal(out[0, ch, i : i + 2, j : j + 2], expect)


@pytest.mark.parametrize("shape", [(2, 3, 4, 4), (1, 2, 5, 7), (3, 1, 3, 6), (1, 1, 1, 5)])
def test_rotate2x2_four_times_is_identity_and_odd_edges_are_untouched(shape):
    z = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    out = z
    for _ in range(4):
        out = lo.rotate2x2(out)
    assert torch.equal(out, z)
    once = lo.rotate2x2(z)
    h, w = shape[-2:]
    if h % 2:
        assert torch.equal(once[..., -1, :], z[..., -1, :])
    if w % 2:
        assert torch.equal(once[..., :, -1], z[..., :, -1])
    if h >= 2 and w >= 2:
        assert not torch.equal(once, z)


def test_rotate2x2_does_not_modify_its_input():
    z = _block(1, 2, 3, 4)
    lo.rotate2x2(z)
    assert torch.equal(z, _block(1, 2, 3, 4))


# ------------------------------------------------------------------------------------------ checkerboard


def test_checkerboard_mask_k1_and_k2():
    assert lo.checkerboard_mask(3, 4, 1).int().tolist() == [[1, 0, 1, 0], [0, 1, 0, 1], [1, 0, 1, 0]]
    assert lo.checkerboard_mask(4, 5, 2).int().tolist() == [
        [1, 1, 0, 0, 1],
        [1, 1, 0, 0, 1],
        [0, 0, 1, 1, 0],
        [0, 0, 1, 1, 0],
    ]
    with pytest.raises(DDIBError, match="cell size"):
        lo.checkerboard_mask(4, 4, 0)


def test_checkerboard_identity_replacement_and_partial_mix():
    z = torch.zeros(2, 1, 2, 2)
    other = torch.ones(2, 1, 2, 2)
    assert torch.equal(lo.checkerboard(z, other, 0.0), z)
    assert lo.checkerboard(z, other, 1.0)[0, 0].tolist() == [[1.0, 0.0], [0.0, 1.0]]
    assert lo.checkerboard(z, other, 0.25)[1, 0].tolist() == [[0.25, 0.0], [0.0, 0.25]]
    # other may be one tensor shared by the batch (the fixed noise)
    shared = torch.full((1, 1, 2, 2), 4.0)
    assert lo.checkerboard(z, shared, 0.5)[1, 0].tolist() == [[2.0, 0.0], [0.0, 2.0]]


def test_checkerboard_on_normalized_base_keeps_unselected_cells_normalized():
    z = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 1, 2, 2)
    out = lo.checkerboard(z, torch.zeros_like(z), 1.0, base="normalized")
    n = lo.normalize(z)
    assert out[0, 0, 0, 1] == n[0, 0, 0, 1] and out[0, 0, 1, 0] == n[0, 0, 1, 0]
    assert out[0, 0, 0, 0] == 0 and out[0, 0, 1, 1] == 0


# ------------------------------------------------------------------------------------------ normalize


def test_normalize_gives_zero_mean_unit_std_per_sample_times_scale():
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(3, 3, 8, 8, generator=gen) * torch.tensor([0.5, 2.0, 7.0]).view(3, 1, 1, 1) + 3.0
    for s in (1.0, 2.5):
        out = lo.normalize(z, s).double()
        mean = out.flatten(1).mean(1)
        std = out.flatten(1).std(1, correction=0)
        assert torch.allclose(mean, torch.zeros(3, dtype=torch.float64), atol=1e-5)
        assert torch.allclose(std, torch.full((3,), s, dtype=torch.float64), atol=1e-5)
    # exact values on a tiny sample: [1, 3] -> [-1, 1]
    assert lo.normalize(torch.tensor([1.0, 3.0]).view(1, 1, 1, 2)).flatten().tolist() == [-1.0, 1.0]


def test_normalize_of_a_constant_is_zero_not_nan():
    assert torch.equal(lo.normalize(torch.full((1, 1, 2, 2), 5.0)), torch.zeros(1, 1, 2, 2))


# ------------------------------------------------------------------------------------------ fixed noise


def test_fixed_noise_is_seeded_and_shared_by_the_batch():
    a, b = lo.fixed_noise((3, 4, 4), seed=7), lo.fixed_noise((2, 3, 4, 4), seed=7)
    assert a.shape == (1, 3, 4, 4) and torch.equal(a, b)
    assert not torch.equal(a, lo.fixed_noise((3, 4, 4), seed=8))
    z = torch.zeros(5, 3, 4, 4)
    out = lo.mix_noise(z, 0.5, seed=7)
    assert all(torch.equal(out[i], 0.5 * a[0]) for i in range(5))


def test_mix_noise_base_choice():
    gen = torch.Generator().manual_seed(2)
    z = torch.randn(2, 3, 4, 4, generator=gen) * 3 + 1
    eps = lo.fixed_noise(z.shape, 0)
    assert torch.allclose(lo.mix_noise(z, 0.1), z + 0.1 * eps)
    assert torch.allclose(lo.mix_noise(z, 0.1, base="normalized"), lo.normalize(z) + 0.1 * eps)
    assert torch.equal(lo.mix_noise(z, 0.0), z)
    with pytest.raises(DDIBError, match="unknown base"):
        lo.mix_noise(z, 0.1, base="other")


# ------------------------------------------------------------------------------------------ blend, blur


def test_blend_endpoints_and_midpoint():
    z, x = torch.full((2, 1, 2, 2), 2.0), torch.full((2, 1, 2, 2), -1.0)
    assert torch.equal(lo.blend(z, x, 0.0), z)  # p = 0 keeps the latent
    assert torch.equal(lo.blend(z, x, 1.0), x)  # p = 1 gives the image
    assert torch.allclose(lo.blend(z, x, 0.5), torch.full_like(z, 0.5))


def test_blur_of_a_constant_is_the_constant_and_sigma_zero_is_identity():
    c = torch.full((2, 3, 9, 7), 0.75)
    for sigma in (0.5, 1.0, 3.0, 10.0):  # 10: kernel capped to the image size
        assert torch.allclose(lo.blur(c, sigma), c, atol=1e-6)
        assert torch.allclose(lo.blur_image(c, sigma), c, atol=1e-6)
    z = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    assert torch.equal(lo.blur(z, 0.0), z)
    blurred = lo.blur(z, 1.0)
    assert blurred.std() < z.std() and torch.allclose(blurred.mean(), z.mean(), atol=0.1)


def test_blur_kernel_size():
    assert lo.blur_kernel_size(1.0, 32) == 7
    assert lo.blur_kernel_size(0.5, 32) == 5
    assert lo.blur_kernel_size(3.0, 8) == 7  # 19 capped to the largest odd size <= 8
    assert lo.blur_kernel_size(3.0, 1) == 1


# ------------------------------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    "call,fragment",
    [
        (lambda z, x: lo.blend(z, x, 1.5), "blend coefficient p = 1.5 is out of range; valid: [0, 1]"),
        (lambda z, x: lo.blend(z, x, -0.1), "out of range"),
        (lambda z, x: lo.checkerboard(z, x, 2.0), "checkerboard coefficient c = 2"),
        (lambda z, x: lo.blur(z, -1.0), "blur sigma = -1 is out of range; valid: >= 0"),
        (lambda z, x: lo.normalize(z, -2.0), "normalize scale = -2"),
        (lambda z, x: lo.mix_noise(z, -0.1), "noise coefficient c"),
        (lambda z, x: lo.blend(z, x, float("nan")), "finite"),
        (lambda z, x: lo.blend(z, x[:, :, :3], 0.5), "latent shape (2, 3, 4, 4) and image shape (2, 3, 3, 4) differ"),
        (lambda z, x: lo.blend(z, x[:1], 0.5), "differ"),
        (lambda z, x: lo.checkerboard(z, x[:, :1], 0.5), "does not fit latent shape"),
        (lambda z, x: lo.rotate2x2(z[0]), "shape (B, C, H, W)"),
    ],
)
def test_bad_coefficients_and_shapes_are_one_line_errors(call, fragment):
    z, x = torch.zeros(2, 3, 4, 4), torch.zeros(2, 3, 4, 4)
    with pytest.raises(DDIBError) as err:
        call(z, x)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_op_registry():
    assert set(lo.OPS) == {"normalize", "noise", "blend", "checkerboard", "rotate2x2", "blur", "blur-image"}
    assert lo.OPS["blend"].lo == 0 and lo.OPS["blend"].hi == 1 and not lo.OPS["rotate2x2"].takes_coef
    assert lo.OPS["blur-image"].space == "image" and lo.OPS["blur"].space == "latent"
    for spec in lo.OPS.values():
        for c in spec.sweep:
            spec.check(c)
    with pytest.raises(DDIBError, match="valid ops: normalize, noise, blend, checkerboard, rotate2x2"):
        lo.op_spec("swirl")


# ------------------------------------------------------------------------------------------ composition


def test_composition_order_matters():
    z = torch.randn(1, 1, 6, 6, generator=torch.Generator().manual_seed(4))
    a = lo.Perturbation.of("rotate2x2", "blur").apply(z, None, 1.0)
    b = lo.Perturbation.of("blur", "rotate2x2").apply(z, None, 1.0)
    assert torch.allclose(a, lo.blur(lo.rotate2x2(z), 1.0)) and torch.allclose(b, lo.rotate2x2(lo.blur(z, 1.0)))
    assert not torch.allclose(a, b, atol=1e-3)


def test_plan_applies_base_then_steps_and_fixed_coefficients():
    gen = torch.Generator().manual_seed(5)
    z, x = torch.randn(2, 3, 4, 4, generator=gen) * 2, torch.rand(2, 3, 4, 4, generator=gen) * 2 - 1
    plan = lo.Perturbation.of("blend=0.25", "noise", base="normalized", seed=3)
    expect = lo.mix_noise(lo.blend(lo.normalize(z), x, 0.25), 0.1, seed=3)
    assert torch.allclose(plan.apply(z, x, 0.1), expect)
    twice = lo.Perturbation.of("blur", "blur").apply(z, None, 0.7)
    assert torch.allclose(twice, lo.blur(lo.blur(z, 0.7), 0.7))
    cb = lo.Perturbation.of("checkerboard", other="noise", cell=2, seed=9).apply(z, None, 1.0)
    mask = lo.checkerboard_mask(4, 4, 2)
    assert torch.equal(cb[:, :, mask], lo.fixed_noise(z.shape, 9).expand_as(z)[:, :, mask])
    assert torch.equal(cb[:, :, ~mask], z[:, :, ~mask])


def test_plan_separates_image_and_latent_steps():
    plan = lo.Perturbation.of("blur-image", "rotate2x2")
    assert plan.acts_on_image and [s.op for s in plan.image_steps] == ["blur-image"]
    assert [s.op for s in plan.latent_steps] == ["rotate2x2"]
    x = torch.randn(1, 3, 6, 6, generator=torch.Generator().manual_seed(6))
    assert torch.allclose(plan.apply_image(x, 1.0), lo.blur(x, 1.0))
    assert torch.equal(plan.apply(x, x, 1.0), lo.rotate2x2(x))  # apply: latent steps only
    with pytest.raises(DDIBError, match="acts on the image before encoding"):
        lo.Perturbation.of("rotate2x2", "blur-image")


def test_each_image_op_applies_only_itself(monkeypatch):
    negate = lo.OpSpec("negate-image", "x' = -x", "image", apply=lambda x, _, c, plan, eps: -x)
    monkeypatch.setitem(lo.OPS, "negate-image", negate)
    x = torch.randn(1, 3, 6, 6, generator=torch.Generator().manual_seed(7))
    assert torch.allclose(lo.Perturbation.of("blur-image", "negate-image").apply_image(x, 1.0), -lo.blur(x, 1.0))
    assert torch.equal(lo.Perturbation.of("negate-image").apply_image(x), -x)


def test_a_latent_object_keeps_what_travels_beside_z():
    z, hue = torch.randn(3, 3, 4, 4, generator=torch.Generator().manual_seed(8)), torch.tensor([0.1, 2.0, 4.0])
    out = lo.Perturbation.of("rotate2x2").apply(Latent(z, hue, meta={"source": "fives"}), None)
    assert isinstance(out, Latent) and torch.equal(out.z, lo.rotate2x2(z))
    assert torch.equal(out.hue, hue) and out.meta == {"source": "fives"}


def test_plan_coefficients():
    assert lo.Perturbation.of("rotate2x2").default_coefs() == (None,)
    assert lo.Perturbation.of("rotate2x2", "blur").default_coefs() == lo.OPS["blur"].sweep
    with pytest.raises(DDIBError, match="no op of the plan takes one"):
        lo.Perturbation.of("rotate2x2").check_coef(0.5)
    with pytest.raises(DDIBError, match="checkerboard c = 1.2 is out of range"):
        lo.Perturbation.of("checkerboard").check_coef(1.2)
    with pytest.raises(DDIBError, match="takes no coefficient"):
        lo.Step.parse("rotate2x2=2")
    with pytest.raises(DDIBError, match="unknown op 'swirl'"):
        lo.Step.parse("swirl=1")
    with pytest.raises(DDIBError, match="needs an image|no image was given"):
        lo.Perturbation.of("blend").apply(torch.zeros(1, 3, 2, 2), None, 0.5)


def test_ops_run_on_float64_and_keep_dtype():
    z = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    plan = lo.Perturbation.of("rotate2x2", "blur", "noise", "checkerboard", other="noise")
    assert plan.apply(z, None, 0.5).dtype == torch.float64


# ------------------------------------------------------------------------------------------ statistics, preset


def test_normality_statistics():
    g = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    s = latent_stats(g)
    assert s.ks < 0.02 and abs(s.skew) < 0.1 and abs(s.excess_kurtosis) < 0.1 and abs(s.neighbour_corr) < 0.05
    uniform = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert ks_normal_distance(uniform) > 0.04
    assert skew_kurtosis(uniform)[1] == pytest.approx(-1.2, abs=0.05)  # uniform: excess kurtosis -6/5
    assert neighbour_correlation(lo.blur(g, 2.0)) > 0.8
    # KS of two values ±1 (standardised): the empirical CDF jumps 0 -> 0.5 -> 1 against Φ(±1)
    phi = 0.5 * (1 + math.erf(1 / math.sqrt(2)))
    assert ks_normal_distance(torch.tensor([-1.0, 1.0]).view(1, 1, 1, 2)) == pytest.approx(phi - 0.5)


def test_report_preset_is_complete_and_valid():
    keys = [s.key for s in REPORT_PRESET]
    for k in ("1", "2", "3a", "3b", "4a", "4b", "5a", "5b", "6a", "6b", "7a", "7b"):
        assert k in keys
    assert len(set(keys)) == len(keys)
    assert REPORT_PRESET[0].sweep() == ()
    by = {s.key: s for s in REPORT_PRESET}
    assert by["3a"].plan.base == "normalized" and by["3b"].plan.base == "source"
    assert by["3a"].sweep() == (0.01, 0.1, 0.3, 0.7) and by["4a"].sweep() == (0.1, 0.3, 0.5, 0.7, 0.9)
    assert by["6a"].plan.other == "noise" and by["5a"].plan.other == "image"
    ops = {tuple(s.op for s in e.plan.steps) for e in REPORT_PRESET}
    assert {("blur-image",), ("blur",), ("rotate2x2", "blur"), ("blur", "blur")} <= ops
