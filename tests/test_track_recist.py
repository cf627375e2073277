"""RECIST 1.1 pure functions: target selection, sums, nadir, category edges in exact arithmetic."""

from __future__ import annotations

from fractions import Fraction


import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calcscope.track._recist import (
    RecistLesion,
    classify_response,
    exact,
    nadir,
    percent_change,
    select_targets,
    sum_of_diameters,
)


# ---- exact conversion -----------------------------------------------------------------


def test_exact_reads_the_decimal_form() -> None:
    assert exact(49.2) == Fraction(246, 5)
    assert exact(12) == Fraction(12)
    assert exact(Fraction(1, 3)) == Fraction(1, 3)
    with pytest.raises(ValueError):
        exact(float("nan"))
    with pytest.raises(ValueError):
        exact(float("inf"))
    with pytest.raises(TypeError):
        exact(True)


# ---- target selection -----------------------------------------------------------------


def test_at_most_two_liver_targets_largest_first() -> None:
    lesions = [RecistLesion("a", 25.0), RecistLesion("b", 9.9), RecistLesion("c", 10.0), RecistLesion("d", 30.0),
               RecistLesion("e", 15.0)]
    chosen = select_targets(lesions)
    assert [t.id for t in chosen] == ["d", "a"]


def test_ten_mm_is_measurable_and_just_below_is_not() -> None:
    chosen = select_targets([RecistLesion("x", 10.0), RecistLesion("y", 9.99)])
    assert [t.id for t in chosen] == ["x"]


def test_five_in_total_and_two_per_organ() -> None:
    lesions = [
        RecistLesion("liver1", 50.0, "liver"), RecistLesion("liver2", 45.0, "liver"), RecistLesion("liver3", 44.0, "liver"),
        RecistLesion("lung1", 40.0, "lung"), RecistLesion("lung2", 35.0, "lung"), RecistLesion("lung3", 34.0, "lung"),
        RecistLesion("bone1", 20.0, "bone"), RecistLesion("adrenal1", 12.0, "adrenal"),
    ]
    chosen = select_targets(lesions)
    assert [t.id for t in chosen] == ["liver1", "liver2", "lung1", "lung2", "bone1"]
    assert sum(1 for t in chosen if t.organ == "liver") == 2


def test_ties_are_broken_by_id_deterministically() -> None:
    lesions = [RecistLesion("b", 20.0), RecistLesion("c", 20.0), RecistLesion("a", 20.0)]
    assert [t.id for t in select_targets(lesions)] == ["a", "b"]
    assert [t.id for t in select_targets(list(reversed(lesions)))] == ["a", "b"]


def test_no_measurable_lesion_gives_no_target() -> None:
    assert select_targets([RecistLesion("a", 8.0)]) == []


# ---- sums, nadir, percentages ------------------------------------------------------------


def test_sum_and_nadir_are_exact() -> None:
    assert sum_of_diameters([0.1, 0.2]) == Fraction(3, 10)  # float: 0.30000000000000004
    assert sum_of_diameters([]) == 0
    assert nadir([50.0, 40.5, 42.0]) == Fraction(81, 2)
    with pytest.raises(ValueError):
        sum_of_diameters([-1.0])
    with pytest.raises(ValueError):
        nadir([])
    assert percent_change(40.0, 50.0) == 25
    assert percent_change(0.0, 5.0) is None


# ---- categories ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("baseline", "current", "category"),
    [
        (41.0, 49.2, "PD"),  # exactly +20 % and +8.2 mm
        (41.0, 49.19, "SD"),  # just below +20 %
        (25.3, 30.36, "PD"),  # exactly +20 %, +5.06 mm; binary floats give 19.999...%
        (27.0, 32.4, "PD"),  # same pitfall
        (20.0, 25.0, "PD"),  # exactly +25 % and exactly +5 mm
        (20.0, 24.9, "SD"),  # +24.5 % but only +4.9 mm
        (10.0, 14.99, "SD"),  # +49.9 % but < 5 mm absolute
        (50.0, 35.0, "PR"),  # exactly -30 %
        (50.0, 35.01, "SD"),  # just short of -30 %
        (10.1, 7.07, "PR"),  # exactly -30 %; binary floats give -29.999...%
        (33.3, 23.31, "PR"),  # exactly -30 %; float 33.3 * 0.7 = 23.309999...
        (40.0, 0.0, "CR"),
        (40.0, 40.0, "SD"),
    ],
)
def test_category_edges(baseline: float, current: float, category: str) -> None:
    res = classify_response(baseline, current)
    assert res.category == category
    assert res.rule.startswith(category + ":")


def test_float_pitfall_is_real() -> None:
    # Documents why exact arithmetic is needed: plain floats misjudge these edges.
    assert (30.36 - 25.3) / 25.3 * 100 < 20
    assert 23.31 > 33.3 * 0.7


def test_progression_is_measured_from_the_nadir_not_the_baseline() -> None:
    res = classify_response(100.0, 60.0, previous_sums_mm=[50.0])
    assert res.category == "PD"  # -40 % from baseline but +20 % / +10 mm over the 50 mm nadir
    assert res.nadir_sum_mm == 50.0
    assert res.change_from_nadir_percent == pytest.approx(20.0, abs=1e-12)
    assert res.change_from_baseline_percent == pytest.approx(-40.0, abs=1e-12)
    assert res.absolute_change_from_nadir_mm == pytest.approx(10.0, abs=1e-12)


def test_nadir_ignored_when_above_baseline() -> None:
    res = classify_response(50.0, 58.0, previous_sums_mm=[55.0])
    assert res.nadir_sum_mm == 50.0
    assert res.category == "SD"  # +16 % over the nadir (the baseline)


def test_new_lesion_makes_pd_even_with_complete_response() -> None:
    res = classify_response(40.0, 0.0, new_lesions=1)
    assert res.category == "PD"
    assert "new lesion" in res.rule


def test_non_target_progression_makes_pd() -> None:
    res = classify_response(40.0, 30.0, non_target_progression=True)
    assert res.category == "PD"
    assert "non-target" in res.rule


def test_no_baseline_target_is_not_evaluable_unless_new_lesion() -> None:
    assert classify_response(0.0, 0.0).category == "NE"
    assert classify_response(0.0, 0.0, new_lesions=2).category == "PD"


def test_sd_rule_explains_a_missed_5mm_criterion() -> None:
    res = classify_response(20.0, 24.9)
    assert "< 5 mm" in res.rule
    assert res.change_from_baseline_percent == pytest.approx(24.5, abs=1e-9)


def test_negative_sums_refused() -> None:
    with pytest.raises(ValueError):
        classify_response(-1.0, 2.0)


# ---- property: agrees with an integer-arithmetic oracle on 0.1 mm measurements ------------


def _oracle(b10: int, c10: int, n10: int) -> str:
    """Category from sums given in tenths of a millimetre, integers only."""
    if n10 > 0 and c10 * 5 >= n10 * 6 and c10 - n10 >= 50:
        return "PD"
    if b10 == 0:
        return "NE"
    if c10 == 0:
        return "CR"
    if c10 * 10 <= b10 * 7:
        return "PR"
    return "SD"


@settings(max_examples=400, deadline=None)
@given(
    b10=st.integers(min_value=0, max_value=3000),
    c10=st.integers(min_value=0, max_value=3000),
    mid10=st.one_of(st.none(), st.integers(min_value=0, max_value=3000)),
)
def test_matches_integer_oracle(b10: int, c10: int, mid10: int | None) -> None:
    prev = [] if mid10 is None else [mid10 / 10]
    n10 = min([b10] + ([] if mid10 is None else [mid10]))
    res = classify_response(b10 / 10, c10 / 10, previous_sums_mm=prev)
    assert res.category == _oracle(b10, c10, n10)


def test_unmeasured_target_gives_ne_unless_pd() -> None:
    res = classify_response(40.0, 20.0, unevaluable_targets=1)
    assert res.category == "NE" and "could not be measured" in res.rule
    assert classify_response(20.0, 30.0, unevaluable_targets=1).category == "PD"  # PD stands without it
    assert classify_response(40.0, 20.0, unevaluable_targets=1, new_lesions=1).category == "PD"
