"""Matching findings across studies, per-finding change, doubling time and the growth rule."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest

from calcscope.model import Finding
from calcscope.track import match_findings
from calcscope.track._growth import (
    GrowthThresholds,
    assess_growth,
    doubling_time_days,
    finding_change,
    interval_days,
    is_calcified,
    volume_change_percent,
    volume_change_sd_percent,
)
from calcscope.track._match import gate_mm


def F(fid: str, kind: str, xyz: tuple[float, float, float], d_mm: float, v_mm3: float | None = None, **kw) -> Finding:
    return Finding(id=fid, kind=kind, centroid_mm=xyz, longest_diameter_mm=d_mm, size_mm=d_mm,
                   volume_mm3=v_mm3 if v_mm3 is not None else math.pi / 6 * d_mm**3, **kw)


# ---- matching -----------------------------------------------------------------------------


def test_hungarian_prefers_the_globally_best_assignment() -> None:
    # greedy nearest-first would pair c0 with p1 (1 mm) and leave p0 and c1 apart (13 mm > 10 mm gate)
    prior = [F("p0", "calcification", (0.0, 0.0, 0.0), 3.0), F("p1", "calcification", (5.0, 0.0, 0.0), 3.0)]
    current = [F("c0", "calcification", (4.0, 0.0, 0.0), 3.0), F("c1", "calcification", (13.0, 0.0, 0.0), 3.0)]
    m = match_findings(prior, current)
    assert [(p.prior_index, p.current_index) for p in m.pairs] == [(0, 0), (1, 1)]
    assert m.pairs[0].distance_mm == pytest.approx(4.0)
    assert m.pairs[1].distance_mm == pytest.approx(8.0)
    assert m.new == [] and m.resolved == []


def test_gate_scales_with_size_and_has_a_floor() -> None:
    small = F("a", "lesion", (0, 0, 0), 4.0)
    big = F("b", "lesion", (0, 0, 0), 40.0)
    assert gate_mm(small, small) == 10.0
    assert gate_mm(small, big) == 20.0
    prior = [F("p", "lesion", (0.0, 0.0, 0.0), 40.0)]
    assert len(match_findings(prior, [F("c", "lesion", (19.0, 0.0, 0.0), 40.0)]).pairs) == 1
    m = match_findings(prior, [F("c", "lesion", (21.0, 0.0, 0.0), 40.0)])
    assert m.pairs == [] and m.new == [0] and m.resolved == [0]


def test_kinds_must_be_compatible() -> None:
    prior = [F("p0", "calcification", (0, 0, 0), 3.0), F("p1", "cyst", (50, 0, 0), 20.0)]
    current = [F("c0", "lesion", (0, 0, 0), 3.0), F("c1", "lesion", (50, 1, 0), 22.0)]
    m = match_findings(prior, current)
    assert [(p.prior_index, p.current_index) for p in m.pairs] == [(1, 1)]  # cyst <-> lesion allowed
    assert m.new == [0] and m.resolved == [0]


def test_registration_mapping_is_applied_to_current_points() -> None:
    prior = [F("p0", "calcification", (10.0, 20.0, 30.0), 3.0)]
    current = [F("c0", "calcification", (40.0, 20.0, 30.0), 3.0)]
    assert match_findings(prior, current).pairs == []
    m = match_findings(prior, current, current_to_prior=lambda q: np.asarray(q) - [30.0, 0.0, 0.0])
    assert len(m.pairs) == 1 and m.pairs[0].distance_mm == pytest.approx(0.0)
    assert np.allclose(m.current_in_prior_mm[0], (10.0, 20.0, 30.0))


def test_empty_sides_and_missing_centroids() -> None:
    m = match_findings([], [F("c", "lesion", (0, 0, 0), 10.0)])
    assert m.new == [0] and m.resolved == []
    no_pos = Finding(id="x", kind="lesion", size_mm=10.0)
    m = match_findings([no_pos], [F("c", "lesion", (0, 0, 0), 10.0)])
    assert m.pairs == [] and m.resolved == [0] and m.new == [0]


# ---- change and doubling time -------------------------------------------------------------------


def test_doubling_time_formula() -> None:
    assert doubling_time_days(100.0, 200.0, 90.0) == pytest.approx(90.0)
    assert doubling_time_days(100.0, 400.0, 90.0) == pytest.approx(45.0)
    # Td = t ln2 / ln(V2/V1): 100 -> 150 mm3 in 120 days
    assert doubling_time_days(100.0, 150.0, 120.0) == pytest.approx(120.0 * math.log(2) / math.log(1.5), rel=1e-12)
    assert doubling_time_days(100.0, 80.0, 90.0) is None  # shrinking: no doubling time
    assert doubling_time_days(100.0, 100.0, 90.0) is None
    assert doubling_time_days(100.0, 200.0, None) is None


def test_interval_and_volume_change() -> None:
    assert interval_days(dt.date(2024, 1, 1), dt.date(2024, 7, 1)) == 182.0
    assert interval_days(dt.date(2024, 7, 1), dt.date(2024, 1, 1)) is None
    assert interval_days(None, dt.date(2024, 1, 1)) is None
    assert volume_change_percent(200.0, 150.0) == pytest.approx(-25.0)
    assert volume_change_percent(0.0, 150.0) is None


def test_finding_change_fills_model_change() -> None:
    a = F("p", "calcification", (0, 0, 0), 4.0, 30.0)
    b = F("c", "calcification", (0, 0, 0), 6.5, 60.0)
    ch = finding_change(a, b, prior_date=dt.date(2024, 1, 1), current_date=dt.date(2024, 4, 10))
    assert ch.growth_percent == pytest.approx(100.0)
    assert ch.diameter_change_mm == pytest.approx(2.5)
    assert ch.interval_days == 100.0
    assert ch.doubling_time_days == pytest.approx(100.0)
    assert ch.prior_date == dt.date(2024, 1, 1)


def test_volume_change_sd_propagates_both_volumes() -> None:
    """1000 -> 2000 mm3 with SDs 30 and 40 mm3: 100 x 2 x hypot(0.03, 0.02) percentage points."""
    assert volume_change_sd_percent(1000.0, 30.0, 2000.0, 40.0) == pytest.approx(200.0 * math.hypot(0.03, 0.02), abs=0.01)
    assert volume_change_sd_percent(1000.0, None, 2000.0, 40.0) is None
    assert volume_change_sd_percent(0.0, 1.0, 2000.0, 40.0) is None
    a = F("p", "lesion", (0, 0, 0), 12.0, 1000.0).model_copy(update={"measurements": {"volume_sd_mm3": 30.0}})
    b = F("c", "lesion", (0, 0, 0), 15.0, 2000.0).model_copy(update={"measurements": {"volume_sd_mm3": 40.0}})
    ch = finding_change(a, b)
    assert ch.growth_percent == pytest.approx(100.0)
    assert ch.growth_sd_percent == pytest.approx(7.21, abs=0.01)
    # findings without a volume SD (hand-written, or older outputs) give none
    assert finding_change(F("p", "lesion", (0, 0, 0), 12.0, 1000.0), b).growth_sd_percent is None


# ---- growth rule ------------------------------------------------------------------------------


def _alert(v1, v2, d1, d2, days=None, kind="calcification", calcified=True):
    a = F("p", kind, (0, 0, 0), d1, v1)
    b = F("c", kind, (0, 0, 0), d2, v2)
    p_date = dt.date(2024, 1, 1)
    c_date = None if days is None else p_date + dt.timedelta(days=days)
    ch = finding_change(a, b, prior_date=p_date, current_date=c_date)
    return assess_growth(a, b, ch, calcified=calcified)


def test_growth_volume_criterion_needs_percent_and_absolute() -> None:
    assert _alert(50.0, 60.0, 5.0, 5.5, days=120) is not None  # +20 %, +10 mm3 exactly
    assert _alert(50.0, 59.9, 5.0, 5.5, days=120) is None  # +19.8 %
    assert _alert(2.0, 8.0, 1.6, 2.5, days=120) is None  # +300 % but only +6 mm3 (partial-volume noise)


def test_growth_diameter_decides_only_without_volumes() -> None:
    # +2 mm in diameter with a small volume change is partial-volume noise: no alert
    assert _alert(100.0, 105.0, 6.0, 8.0, days=90) is None
    a = Finding(id="p", kind="calcification", centroid_mm=(0, 0, 0), size_mm=6.0)
    b = Finding(id="c", kind="calcification", centroid_mm=(0, 0, 0), size_mm=8.0)
    ch = finding_change(a, b)
    alert = assess_growth(a, b, ch, calcified=True)
    assert alert is not None
    assert alert.criteria_met == ["longest diameter +2.0 mm >= 2 mm"]
    assert "seeds/003_f4e56972f096d8df.txt" in alert.citations
    assert "suggests" in alert.statement
    both = _alert(50.0, 100.0, 5.0, 8.0, days=90)
    assert both is not None and len(both.criteria_met) == 2


def test_growth_over_a_long_interval_is_judged_as_a_yearly_rate() -> None:
    """Over more than 12 months the increase is scaled to a yearly rate, by the alert and by
    the reasoning's growth feature alike (one definition of growing)."""
    from calcscope.reason._features import is_growing

    assert _alert(50.0, 100.0, 5.0, 8.0, days=365) is not None
    fast = _alert(50.0, 100.0, 5.0, 8.0, days=400)  # +100 % in 400 days: +91 % per 365 days
    assert fast is not None
    assert "+91 % per 365 days" in fast.criteria_met[0] and len(fast.criteria_met) == 1  # no diameter
    assert "rate" in fast.statement
    slow = (50.0, 75.0, 5.0, 8.0)  # +50 % in 1000 days: +18 % per 365 days
    assert _alert(*slow, days=1000) is None
    assert _alert(*slow, days=300) is not None
    for days, expected in ((1000, False), (400, True), (300, True)):
        a = F("p", "calcification", (0, 0, 0), 5.0, 50.0)
        b = F("c", "calcification", (0, 0, 0), 8.0, 75.0 if days != 400 else 100.0)
        ch = finding_change(a, b, prior_date=dt.date(2024, 1, 1), current_date=dt.date(2024, 1, 1) + dt.timedelta(days=days))
        assert is_growing(b.model_copy(update={"change": ch})) is expected
        assert (assess_growth(a, b, ch, calcified=True) is not None) is expected
    unknown = _alert(50.0, 100.0, 5.0, 8.0, days=None)
    assert unknown is not None and unknown.interval_days is None and "unknown" in unknown.statement


def test_growth_only_for_calcified_findings() -> None:
    assert _alert(500.0, 1000.0, 10.0, 13.0, days=90, kind="lesion", calcified=False) is None
    lesion = F("lesion-001", "lesion", (0, 0, 0), 20.0, children=["calc-001"])
    plain = F("lesion-002", "lesion", (0, 0, 0), 20.0)
    calc = F("calc-002", "calcification", (0, 0, 0), 3.0, parent_id="lesion-002")
    assert is_calcified(lesion, [lesion])
    assert is_calcified(plain, [plain, calc])
    assert not is_calcified(F("lesion-003", "lesion", (0, 0, 0), 20.0), [plain, calc])
    assert is_calcified(calc, [])


def test_custom_thresholds() -> None:
    a = F("p", "calcification", (0, 0, 0), 5.0, 50.0)
    b = F("c", "calcification", (0, 0, 0), 6.0, 65.0)
    ch = finding_change(a, b)
    assert assess_growth(a, b, ch, calcified=True) is not None  # +30 % and +15 mm3
    strict = GrowthThresholds(min_volume_percent=50.0, min_volume_mm3=10.0, min_diameter_mm=2.0)
    assert assess_growth(a, b, ch, calcified=True, thresholds=strict) is None  # +30 % < 50 %, +1 mm < 2 mm


# ---- growth against its own noise -------------------------------------------------------------


def _with_sd(f: Finding, sd_mm3: float) -> Finding:
    return f.model_copy(update={"measurements": {"volume_sd_mm3": sd_mm3}})


def test_growth_within_its_noise_is_not_alerted_and_real_growth_is() -> None:
    """+30 % and +15 mm3 passes the volume rule, but with 6 mm3 noise per study (a focus of a
    few voxels on thick slices) the change's SD is about 20 percentage points: within two SD
    of no change, no alert; the same change measured with 1.5 mm3 noise is one."""
    from calcscope.reason._features import is_growing

    p_date, c_date = dt.date(2024, 1, 1), dt.date(2024, 5, 1)
    a, b = F("p", "calcification", (0, 0, 0), 5.0, 50.0), F("c", "calcification", (0, 0, 0), 6.0, 65.0)
    noisy = finding_change(_with_sd(a, 6.0), _with_sd(b, 6.0), prior_date=p_date, current_date=c_date)
    assert noisy.growth_percent == pytest.approx(30.0)
    assert noisy.growth_sd_percent == pytest.approx(130.0 * math.hypot(6 / 50, 6 / 65), abs=0.01)  # 19.7
    assert assess_growth(a, b, noisy, calcified=True) is None
    assert is_growing(b.model_copy(update={"change": noisy})) is False  # the reasoning agrees

    sharp = finding_change(_with_sd(a, 1.5), _with_sd(b, 1.5), prior_date=p_date, current_date=c_date)
    alert = assess_growth(a, b, sharp, calcified=True)
    assert alert is not None
    assert alert.volume_change_sd_percent == sharp.growth_sd_percent == pytest.approx(4.93, abs=0.01)
    assert alert.criteria_met == [
        "volume +30 % (+15.0 mm³) >= 20 % and 10 mm³, and > 2 x its noise SD of 5 percentage points"
    ]
    assert is_growing(b.model_copy(update={"change": sharp})) is True

    # without an SD the rule is the volume rule alone, as before
    plain = finding_change(a, b, prior_date=p_date, current_date=c_date)
    assert plain.growth_sd_percent is None
    old = assess_growth(a, b, plain, calcified=True)
    assert old is not None and old.volume_change_sd_percent is None
    assert old.criteria_met == ["volume +30 % (+15.0 mm³) >= 20 % and 10 mm³"]


def test_noise_criterion_threshold_and_custom_multiple() -> None:
    a, b = F("p", "calcification", (0, 0, 0), 5.0, 50.0), F("c", "calcification", (0, 0, 0), 6.0, 65.0)
    ch = finding_change(a, b).model_copy(update={"growth_sd_percent": 14.9})
    assert assess_growth(a, b, ch, calcified=True) is not None  # 30 > 2 x 14.9
    ch = ch.model_copy(update={"growth_sd_percent": 15.0})
    assert assess_growth(a, b, ch, calcified=True) is None  # 30 is not > 2 x 15
    assert assess_growth(a, b, ch, calcified=True, thresholds=GrowthThresholds(min_sd_multiple=1.0)) is not None
    # a small SD is written with a decimal, not as 0
    tiny = ch.model_copy(update={"growth_sd_percent": 0.4})
    assert "noise SD of 0.4 percentage points" in assess_growth(a, b, tiny, calcified=True).criteria_met[0]


def _with_content(f: Finding, content_hu_ml: float, sd_hu_ml: float | None = None) -> Finding:
    m = {"calcium_content_hu_ml": content_hu_ml}
    if sd_hu_ml is not None:
        m["calcium_content_sd_hu_ml"] = sd_hu_ml
    return f.model_copy(update={"measurements": m})


def test_volume_growth_without_content_growth_is_the_grid_not_the_calcification() -> None:
    """A 4-6 mm focus on thick slices reads 20-30 % larger or smaller from where it lies on the
    grid; its calcium content (summed HU excess) hardly moves. +30 % and +15 mm3 of volume with
    +3 % of content raises no alert; the same volume change with +35 % content does, and the
    criterion says so. The reasoning's growth feature follows the same rule."""
    from calcscope.reason._features import is_growing

    p_date, c_date = dt.date(2024, 1, 1), dt.date(2024, 5, 1)
    a = F("p", "calcification", (0, 0, 0), 5.0, 50.0)
    b = F("c", "calcification", (0, 0, 0), 5.5, 65.0)
    grid = finding_change(_with_content(a, 20.0, 0.5), _with_content(b, 20.6, 0.5),
                          prior_date=p_date, current_date=c_date)
    assert grid.content_change_percent == pytest.approx(3.0)
    assert grid.content_change_sd_percent == pytest.approx(100 * 1.03 * math.hypot(0.5 / 20, 0.5 / 20.6), abs=0.01)
    assert assess_growth(a, b, grid, calcified=True) is None
    assert is_growing(b.model_copy(update={"change": grid})) is False
    real = finding_change(_with_content(a, 20.0, 0.5), _with_content(b, 27.0, 0.5), prior_date=p_date,
                          current_date=c_date)
    alert = assess_growth(a, b, real, calcified=True)
    assert alert is not None and alert.content_change_percent == pytest.approx(35.0)
    assert any(c.startswith("calcium content +35 %") for c in alert.criteria_met)
    assert is_growing(b.model_copy(update={"change": real})) is True
    # content growth within twice its noise does not confirm (SD here ~ 11 pp)
    noisy = finding_change(_with_content(a, 20.0, 1.6), _with_content(b, 24.4, 1.6), prior_date=p_date,
                           current_date=c_date)
    assert noisy.content_change_percent == pytest.approx(22.0)
    assert assess_growth(a, b, noisy, calcified=True) is None
    # without a content on both studies the volume rule alone decides, as before
    half = finding_change(_with_content(a, 20.0, 0.5), b, prior_date=p_date, current_date=c_date)
    assert half.content_change_percent is None and assess_growth(a, b, half, calcified=True) is not None


def test_content_criterion_follows_custom_thresholds() -> None:
    """The content must reach the alert's own percentage, not the default 20 %."""
    p_date, c_date = dt.date(2024, 1, 1), dt.date(2024, 5, 1)
    a = _with_content(F("p", "calcification", (0, 0, 0), 5.0, 50.0), 20.0, 0.2)
    b = _with_content(F("c", "calcification", (0, 0, 0), 6.0, 90.0), 26.0, 0.2)  # volume +80 %, content +30 %
    ch = finding_change(a, b, prior_date=p_date, current_date=c_date)
    assert assess_growth(a, b, ch, calcified=True) is not None
    assert assess_growth(a, b, ch, calcified=True, thresholds=GrowthThresholds(min_volume_percent=50.0)) is None
