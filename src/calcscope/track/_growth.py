"""Change of a matched finding between two studies and the "growing calcification" rule.

Follow-up of a liver calcification is imaging every 3-6 months for 2-3 years
(``seeds/001_fc47ebb88f3c1e60.txt``); a calcification that becomes clearly larger
over a short interval should raise the suspicion of malignant transformation and
prompt a surgical opinion (``seeds/003_f4e56972f096d8df.txt``). The seeds give no
number, so calcscope documents its own operational threshold
(:class:`GrowthThresholds`): a calcification, or a lesion holding a calcification,
is flagged as *growing* when its volume rose by at least 20 % per 12 months (over a longer
interval the increase is scaled linearly to 12 months, a yearly rate; over a shorter or an
unknown one it is taken as it is) **and** by at least 10 mm³, **and**, when
both volumes carry a noise SD (``measurements["volume_sd_mm3"]``, which the image
pipeline gives calcifications and lesions), the increase exceeds twice its own noise SD
(``Change.growth_sd_percent``, percentage points). 20 % mirrors the RECIST progression
margin; the absolute floor keeps partial-volume noise of tiny calcifications (a 1 mm³
speck measured as 1.3 mm³) from raising alerts; the noise criterion asks what seed 003
asks, an increase that is *significant*: a focus of a few voxels on thick slices can
move by 20 % and 10 mm³ from noise alone (a 2 mm calcification on 2.5 mm slices at
16 HU noise reads about 16 ± 4 mm³), and an increase beyond two noise SDs arises from
noise about one time in forty. Without an SD (findings written by hand, or a volume
with no noise model) the rule is the volume rule alone, as before. The SD covers
measurement noise only, not the dependence on the grid position of a calcification
thinner than about two slices (20-30 % on 2.5 mm slices, docs/performance.md); against
that, when both studies give the calcium content (``measurements["calcium_content_hu_ml"]``,
the summed HU excess, which hardly moves with the grid position), the content must have
grown by the same 20 % and beyond twice its own noise SD
(:func:`calcscope.reason._features.content_confirms_growth`), and the 10 mm³ floor
remains. The noise criterion
is :func:`calcscope.reason._features.growth_beyond_noise`, the same definition the
reasoning's ``calc_growing`` / ``lesion_growing`` features use. The longest
diameter (+2 mm or more) decides only when a volume is missing (findings written by
hand): on CT with 1-3 mm voxels the diameter of a calcification of a few millimetres
moves by a voxel diagonal (2-3 mm) from partial volume alone, so it is reported
beside the volume criterion but does not raise an alert by itself.
"""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from ..model import Change, Finding
from ..reason._features import (
    GROWTH_MIN_SD_MULTIPLE,
    GROWTH_MIN_VOLUME_MM3,
    GROWTH_THRESHOLD_PERCENT,
    GROWTH_WINDOW_DAYS,
    content_confirms_growth,
    format_sd,
    growth_beyond_noise,
    growth_rate_percent,
)

__all__ = [
    "GROWTH_CITATIONS",
    "GrowthThresholds",
    "GrowthAlert",
    "interval_days",
    "volume_change_percent",
    "doubling_time_days",
    "finding_change",
    "is_calcified",
    "assess_growth",
]

GROWTH_CITATIONS = ("seeds/003_f4e56972f096d8df.txt", "seeds/001_fc47ebb88f3c1e60.txt")


@dataclass(frozen=True)
class GrowthThresholds:
    """Operational definition of a *growing* calcification (see the module docstring).

    Attributes
    ----------
    min_volume_percent: float
        Relative volume increase (%), together with ``min_volume_mm3``.
    min_volume_mm3: float
        Absolute volume increase (mm³).
    min_diameter_mm: float
        Increase of the longest diameter (mm); decides only when a volume is missing.
    max_interval_days: float
        Interval (days) that ``min_volume_percent`` refers to, 12 months: growth over a longer
        interval is scaled linearly to it (a yearly rate, :func:`growth_rate_percent`), as the
        reasoning's growth features do. Until the seventh session a longer interval raised no
        alert at all, while the reasoning called the same change growing.
    min_sd_multiple: float
        When the change carries a noise SD (``Change.growth_sd_percent``), the volume
        increase (%) must exceed this many times it (2: beyond what noise makes about
        one time in forty); ignored when no SD is known.
    """

    # one definition of "growing" for follow-up alerts and the reasoning stage's feature
    min_volume_percent: float = GROWTH_THRESHOLD_PERCENT
    min_volume_mm3: float = GROWTH_MIN_VOLUME_MM3
    min_diameter_mm: float = 2.0
    max_interval_days: float = GROWTH_WINDOW_DAYS
    min_sd_multiple: float = GROWTH_MIN_SD_MULTIPLE


class GrowthAlert(BaseModel):
    """A calcification or calcified lesion that grew beyond :class:`GrowthThresholds`."""

    model_config = ConfigDict(extra="forbid")
    finding_id: str | None = Field(description="id in the current study")
    prior_id: str | None = Field(description="id in the prior study")
    kind: str
    volume_change_percent: float | None = None
    volume_change_sd_percent: float | None = Field(
        default=None, description="noise SD of the volume change, percentage points (when both volumes carry one)"
    )
    volume_change_mm3: float | None = None
    content_change_percent: float | None = Field(
        default=None, description="change of the calcium content (summed HU excess), %, when both studies give it"
    )
    diameter_change_mm: float | None = None
    interval_days: float | None = None
    criteria_met: list[str] = Field(default_factory=list)
    statement: str
    citations: list[str] = Field(default_factory=lambda: list(GROWTH_CITATIONS))


def interval_days(prior_date: _dt.date | None, current_date: _dt.date | None) -> float | None:
    """Days from the prior to the current study; None unless both dates are known and ordered."""
    if prior_date is None or current_date is None:
        return None
    days = float((current_date - prior_date).days)
    return days if days > 0 else None


def volume_change_percent(prior_mm3: float | None, current_mm3: float | None) -> float | None:
    """Volume change in percent of the prior volume; None when either is unknown or the prior is 0."""
    if prior_mm3 is None or current_mm3 is None or prior_mm3 <= 0:
        return None
    return (current_mm3 - prior_mm3) / prior_mm3 * 100.0


def doubling_time_days(prior_mm3: float | None, current_mm3: float | None, days: float | None) -> float | None:
    """Volume doubling time ``Td = interval * ln 2 / ln(V2 / V1)`` in days.

    Returns None unless the interval is known and the volume grew (V2 > V1 > 0):
    a shrinking or stable finding has no doubling time.
    """
    if days is None or prior_mm3 is None or current_mm3 is None:
        return None
    if prior_mm3 <= 0 or current_mm3 <= prior_mm3:
        return None
    return days * math.log(2.0) / math.log(current_mm3 / prior_mm3)


def volume_change_sd_percent(
    prior_mm3: float | None, prior_sd_mm3: float | None, current_mm3: float | None, current_sd_mm3: float | None
) -> float | None:
    """Noise SD (percentage points) of the volume change, from each volume's own SD.

    First-order propagation through the ratio ``V2 / V1``: ``100 (V2 / V1) sqrt((s1 / V1)² + (s2 / V2)²)``.
    None unless both volumes and both SDs are known and the prior volume is positive.
    """
    if None in (prior_mm3, prior_sd_mm3, current_mm3, current_sd_mm3) or not prior_mm3 or prior_mm3 <= 0:
        return None
    ratio = current_mm3 / prior_mm3  # type: ignore[operator]
    rel = math.hypot(prior_sd_mm3 / prior_mm3, (current_sd_mm3 / current_mm3) if current_mm3 else 0.0)  # type: ignore[operator]
    return round(100.0 * ratio * rel, 2)


def _measured(f: Finding, key: str) -> float | None:
    value = f.measurements.get(key)
    return None if value is None else float(value)


def finding_change(
    prior: Finding,
    current: Finding,
    *,
    prior_date: _dt.date | None = None,
    current_date: _dt.date | None = None,
) -> Change:
    """The :class:`model.Change` of ``current`` since ``prior`` (volume %, diameter mm, doubling time)."""
    days = interval_days(prior_date, current_date)
    dv = volume_change_percent(prior.volume_mm3, current.volume_mm3)
    pd = prior.longest_diameter_mm if prior.longest_diameter_mm is not None else prior.size_mm
    cd = current.longest_diameter_mm if current.longest_diameter_mm is not None else current.size_mm
    dv_mm3 = (
        None if prior.volume_mm3 is None or current.volume_mm3 is None else current.volume_mm3 - prior.volume_mm3
    )
    c1, c2 = _measured(prior, "calcium_content_hu_ml"), _measured(current, "calcium_content_hu_ml")
    dc = volume_change_percent(c1, c2)
    return Change(
        growth_percent=None if dv is None else max(-100.0, dv),
        growth_sd_percent=volume_change_sd_percent(
            prior.volume_mm3, _measured(prior, "volume_sd_mm3"), current.volume_mm3, _measured(current, "volume_sd_mm3")
        ),
        content_change_percent=None if dc is None else max(-100.0, dc),
        content_change_sd_percent=volume_change_sd_percent(
            c1, _measured(prior, "calcium_content_sd_hu_ml"), c2, _measured(current, "calcium_content_sd_hu_ml")
        ),
        volume_change_mm3=dv_mm3,
        diameter_change_mm=None if pd is None or cd is None else cd - pd,
        interval_days=days,
        prior_date=prior_date,
        doubling_time_days=doubling_time_days(prior.volume_mm3, current.volume_mm3, days),
    )


def is_calcified(finding: Finding, all_findings: list[Finding]) -> bool:
    """True for a calcification (or duct stone) or a lesion that holds a calcification."""
    if finding.kind in ("calcification", "duct_stone"):
        return True
    if finding.kind in ("lesion", "cyst"):
        if finding.children and any(c.startswith("calc") for c in finding.children):
            return True
        return any(f.kind == "calcification" and f.parent_id == finding.id for f in all_findings if finding.id)
    return False


def _volume_criterion(
    growth_percent: float, dv_mm3: float, sd_percent: float | None, thresholds: GrowthThresholds,
    *, rate: float | None = None,
) -> str:
    """The volume criterion in words, with the rate over a long interval and the noise SD when known."""
    if rate is None:
        text = (
            f"volume +{growth_percent:.0f} % (+{dv_mm3:.1f} mm³) >= "
            f"{thresholds.min_volume_percent:g} % and {thresholds.min_volume_mm3:g} mm³"
        )
    else:
        text = (
            f"volume +{growth_percent:.0f} % (+{dv_mm3:.1f} mm³), +{rate:.0f} % per "
            f"{thresholds.max_interval_days:.0f} days >= {thresholds.min_volume_percent:g} % and "
            f"{thresholds.min_volume_mm3:g} mm³"
        )
    if sd_percent is not None:
        text += (
            f", and > {thresholds.min_sd_multiple:g} x its noise SD of {format_sd(sd_percent)} percentage points"
        )
    return text


def _content_criterion(change: Change) -> str:
    """The calcium-content confirmation in words."""
    text = f"calcium content +{change.content_change_percent:.0f} %"
    if change.content_change_sd_percent is not None:
        text += f" (noise SD {format_sd(change.content_change_sd_percent)} percentage points)"
    return text + " confirms it (not an effect of where the focus lies on the voxel grid)"


def assess_growth(
    prior: Finding,
    current: Finding,
    change: Change,
    *,
    calcified: bool,
    thresholds: GrowthThresholds = GrowthThresholds(),
) -> GrowthAlert | None:
    """A :class:`GrowthAlert` when a calcified finding grew beyond ``thresholds``, else None.

    Parameters
    ----------
    prior, current: Finding
        The matched pair.
    change: Change
        From :func:`finding_change`.
    calcified: bool
        Whether the current finding is a calcification or a calcified lesion
        (:func:`is_calcified`); other findings never raise this alert.
    thresholds: GrowthThresholds
    """
    if not calcified:
        return None
    long_interval = change.interval_days is not None and change.interval_days > thresholds.max_interval_days
    rate = growth_rate_percent(change, thresholds.max_interval_days)
    criteria: list[str] = []
    dv_mm3 = None
    if prior.volume_mm3 is not None and current.volume_mm3 is not None:
        dv_mm3 = current.volume_mm3 - prior.volume_mm3
    if (
        rate is not None
        and dv_mm3 is not None
        and rate >= thresholds.min_volume_percent
        and dv_mm3 >= thresholds.min_volume_mm3
        and growth_beyond_noise(change, thresholds.min_sd_multiple)
        and content_confirms_growth(change, thresholds.min_sd_multiple, thresholds.max_interval_days,
                                    thresholds.min_volume_percent)
    ):
        criteria.append(_volume_criterion(change.growth_percent, dv_mm3, change.growth_sd_percent, thresholds,
                                          rate=rate if long_interval else None))
        if change.content_change_percent is not None:
            criteria.append(_content_criterion(change))
    volume_met = bool(criteria)
    # the diameter (which decides only without volumes) has no rate: over a long interval it does not
    diameter_met = (
        not long_interval
        and change.diameter_change_mm is not None
        and change.diameter_change_mm >= thresholds.min_diameter_mm
    )
    if diameter_met:
        criteria.append(f"longest diameter +{change.diameter_change_mm:.1f} mm >= {thresholds.min_diameter_mm:g} mm")
    if not (volume_met or (diameter_met and dv_mm3 is None)):
        return None
    if change.interval_days is None:
        when = "over an interval of unknown length (give the study dates to judge how fast)"
    elif long_interval:
        when = (
            f"over {change.interval_days:.0f} days (longer than {thresholds.max_interval_days:.0f} days: "
            "judged as a rate per that interval)"
        )
    else:
        when = f"over {change.interval_days:.0f} days (<= {thresholds.max_interval_days:.0f} days)"
    what = "calcification" if current.kind in ("calcification", "duct_stone") else "calcified lesion"
    statement = (
        f"The {what} {current.id or ''} grew {when}: " + "; ".join(criteria) + ". "
        "Marked growth of a calcification over a short interval suggests possible malignant "
        "transformation; surgical evaluation may be considered."
    ).replace("  ", " ")
    return GrowthAlert(
        finding_id=current.id,
        prior_id=prior.id,
        kind=current.kind,
        volume_change_percent=change.growth_percent,
        volume_change_sd_percent=change.growth_sd_percent,
        volume_change_mm3=dv_mm3,
        content_change_percent=change.content_change_percent,
        diameter_change_mm=change.diameter_change_mm,
        interval_days=change.interval_days,
        criteria_met=criteria,
        statement=statement,
    )
