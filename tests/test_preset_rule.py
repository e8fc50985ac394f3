"""Choosing the fast, default and exact presets from a quality table: hand-made rows, known answers."""

from ddib.bench.preset_rule import choose, outside
from ddib.bench.quality import LEARNED, REFERENCE, UNTUNED, QualityRow
from ddib.bridge.presets import Preset
from ddib.evaluation.bootstrap import Estimate

# The converged translation's figures: value with its 95% interval.
CONVERGED = {"read_as_target": (0.99, 0.98, 1.0), "hue_error_median": (0.0, 0.0, 0.0), "hue_error_p90": (0.1, 0.0, 0.2),
             "cycle_read_as_source": (0.99, 0.98, 1.0), "cycle_rms": (0.01, 0.0, 0.02),
             "frechet_distance": (9.0, 8.0, 10.0)}  # fmt: skip


def _row(steps, grid=UNTUNED, median=1.0, nfe=None, **changed):
    """A row at the converged figures but for those `changed` (their intervals ±0.005 around the value)."""
    found = {}
    for name, (value, low, high) in CONVERGED.items():
        value = changed.get(name, value)
        width = (high - low) / 2 if name not in changed else 0.005
        found[name] = Estimate(value, value - width, value + width)
    found["cycle_rms"] = Estimate(5.0, 4.0, 6.0)  # far from the converged map's: never counts
    return QualityRow(f"{grid} {steps}", "unipc", steps, grid, nfe or steps, 100, found, median)


REF = QualityRow("converged", "unipc", 200, REFERENCE, 200, 100,
                 {k: Estimate(*v) for k, v in CONVERGED.items()}, 0.0)  # fmt: skip


def test_fast_is_the_fewest_nfe_inside_every_interval_and_ignores_the_cycle_rms():
    rows = [_row(6, read_as_target=0.90), _row(8, frechet_distance=11.0), _row(10), _row(12)]
    assert outside(rows[0], REF) == ["read_as_target"] and outside(rows[1], REF) == ["frechet_distance"]
    assert choose(rows, REF, rows[-1]).fast is rows[2]


def test_fast_breaks_a_tie_in_nfe_by_the_distance_to_the_converged_translation():
    rows = [_row(10, median=2.0), _row(10, LEARNED, median=1.0), _row(12)]
    choice = choose(rows, REF, rows[-1])
    assert choice.fast is rows[1] and choice.presets()["fast"] == Preset(10, True)


def test_exact_is_the_fewest_nfe_within_a_tenth_of_a_level_else_the_reference():
    rows = [_row(10, median=0.5), _row(32, median=0.1), _row(40, median=0.05)]
    assert choose(rows, REF, rows[0]).exact is rows[1]
    far = [_row(10, median=0.5), _row(20, median=0.2)]
    choice = choose(far, REF, far[0])
    assert choice.exact is REF and choice.presets()["exact"] == Preset(200, False)


def test_the_default_is_the_fast_one_where_quality_cannot_tell_them_apart():
    fast, today = _row(10), _row(18, LEARNED, median=0.3)
    choice = choose([fast, today], REF, today)
    assert choice.default is fast and "cannot tell" in choice.why


def test_todays_default_earns_its_place_where_its_intervals_lie_apart_and_better():
    # The fast row sits inside the converged interval but at its edge; today's is apart from it and better.
    fast, today = _row(10, read_as_target=0.981), _row(18, LEARNED, read_as_target=0.999)
    choice = choose([fast, today], REF, today)
    assert choice.fast is fast and choice.default is today and "earns its place" in choice.why


def test_todays_default_gives_way_where_it_is_worse():
    fast, today = _row(10, frechet_distance=8.1), _row(18, LEARNED, frechet_distance=11.0)
    choice = choose([fast, today], REF, today)
    assert choice.default is fast and "worse" in choice.why


def test_without_a_fast_solve_the_default_stays():
    rows = [_row(10, read_as_target=0.5), _row(18, LEARNED, read_as_target=0.6)]
    choice = choose(rows, REF, rows[1])
    assert choice.fast is None and choice.default is rows[1] and choice.presets()["fast"] is None


def test_missing_rows_are_never_chosen():
    missing = QualityRow("learned 8", "unipc", 8, LEARNED, missing="no learned encode")
    rows = [missing, _row(10), _row(18)]
    assert choose(rows, REF, rows[-1]).fast is rows[1]
