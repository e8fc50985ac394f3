import torch

from ddib.color import colorize
from ddib.evaluation.metrics import frechet_distance, hue_errors, rmse


def _digits(hues):
    grey = torch.zeros(len(hues), 32, 32)
    grey[:, 8:24, 14:18] = 1.0
    return colorize(grey, torch.tensor(hues)) * 2 - 1


def test_identical_images_have_zero_hue_error():
    x = _digits([10.0, 100.0, 250.0])
    assert torch.allclose(hue_errors(x, x), torch.zeros(3), atol=1e-3)
    assert rmse(x, x) == 0


def test_hue_shift_is_measured_circularly():
    x, y = _digits([10.0, 100.0, 350.0]), _digits([40.0, 70.0, 20.0])
    assert torch.allclose(hue_errors(x, y), torch.tensor([30.0, 30.0, 30.0]), atol=0.5)


def test_blank_output_counts_as_worst_hue():
    x = _digits([10.0])
    assert hue_errors(x, -torch.ones_like(x)).item() == 180.0


def test_frechet_distance_known_answers():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4000, 8, generator=g, dtype=torch.float64)
    assert frechet_distance(a, a) < 1e-6
    shifted = a + 3.0
    assert abs(frechet_distance(a, shifted) - 8 * 9.0) < 1e-6  # ‖Δμ‖² = 8·3², covariances equal
    scaled = a * 2.0  # Σ_b = 4Σ_a: tr(Σa + 4Σa − 2·2Σa) = tr(Σa), plus ‖μa − 2μa‖² = ‖μa‖²
    expected = torch.trace(torch.cov(a.T)).item() + a.mean(0).pow(2).sum().item()
    assert abs(frechet_distance(a, scaled) - expected) < 1e-6


def test_chart_series_past_the_palette_get_square_markers():
    from ddib.io.charts import PALETTE, line_chart

    n = len(PALETTE) + 1
    series = {f"s{i}": [(1.0, 1.0 + i), (2.0, 2.0 + i)] for i in range(n)}
    img = line_chart(series, "t", "x", "y", size=(720, 480), xlog=False, ylog=False)
    # Legend markers sit at (w − right + 4, top + 15·i + 23): a square fills its corner, a disc does not.
    corner = [img.getpixel((720 - 150 + 4, 40 + 15 * i + 23)) for i in (0, n - 1)]
    assert corner[0] == (255, 255, 255) and corner[1] == PALETTE[0]
