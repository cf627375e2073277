"""RECIST 1.1 response assessment as small pure functions.

Conventions (RECIST 1.1, Eisenhauer et al., Eur J Cancer 2009):

* **Target lesions**: measurable lesions with a longest diameter of at least
  10 mm, at most five in total and at most two per organ. calcscope chooses the
  largest ones (longest diameter, ties broken by identifier so the choice is
  deterministic); RECIST asks for the largest that are reproducibly measurable,
  which for an automatic tool means the largest.
* **Sum of diameters** (SoD): the sum of the target lesions' longest diameters.
  A target lesion that has disappeared counts 0 mm.
* **Categories** of the target-lesion response, tested in this order:

  1. **PD** (progressive disease): any unequivocal new lesion, unequivocal
     progression of non-target disease, or a SoD that increased by at least
     20 % over the smallest SoD on study (the *nadir*, which includes the
     baseline) **and** by at least 5 mm in absolute terms;
  2. **CR** (complete response): every target lesion has disappeared (SoD 0);
  3. **PR** (partial response): SoD at least 30 % below the baseline SoD;
  4. **SD** (stable disease): none of the above.

  **NE** (not evaluable) is returned when there is no target lesion at
  baseline, or when a target lesion could not be measured at follow-up, and PD is
  not established otherwise (an unmeasured target counts 0 mm, so a PD found
  without it stands).

Thresholds are compared exactly: every millimetre figure is turned into a
:class:`fractions.Fraction` from its shortest decimal representation (``repr``),
so 49.2 mm against a 41 mm nadir is exactly +20 % and counts as progression,
whereas binary floating point would make it 19.999999999999996 %.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

__all__ = [
    "RecistCategory",
    "RecistLesion",
    "RecistResult",
    "MIN_TARGET_DIAMETER_MM",
    "MAX_TARGETS_TOTAL",
    "MAX_TARGETS_PER_ORGAN",
    "PD_INCREASE_FRACTION",
    "PD_MIN_ABSOLUTE_MM",
    "PR_DECREASE_FRACTION",
    "exact",
    "select_targets",
    "sum_of_diameters",
    "nadir",
    "percent_change",
    "classify_response",
]

RecistCategory = Literal["CR", "PR", "SD", "PD", "NE"]

MIN_TARGET_DIAMETER_MM = 10.0  #: smallest longest diameter of a measurable (target) lesion
MAX_TARGETS_TOTAL = 5  #: at most five target lesions in all
MAX_TARGETS_PER_ORGAN = 2  #: at most two target lesions per organ
PD_INCREASE_FRACTION = Fraction(1, 5)  #: +20 % over the nadir
PD_MIN_ABSOLUTE_MM = Fraction(5)  #: and at least +5 mm over the nadir
PR_DECREASE_FRACTION = Fraction(3, 10)  #: -30 % from baseline


@dataclass(frozen=True)
class RecistLesion:
    """A lesion as RECIST sees it: an identifier, its organ and its longest diameter (mm)."""

    id: str
    diameter_mm: float
    organ: str = "liver"


@dataclass(frozen=True)
class RecistResult:
    """Outcome of :func:`classify_response`.

    Attributes
    ----------
    category: {"CR", "PR", "SD", "PD", "NE"}
    rule: str
        The rule that decided the category, in words, with the figures.
    baseline_sum_mm, current_sum_mm, nadir_sum_mm: float
    change_from_baseline_percent, change_from_nadir_percent: float or None
        None when the reference sum is 0.
    absolute_change_from_nadir_mm: float
    """

    category: RecistCategory
    rule: str
    baseline_sum_mm: float
    current_sum_mm: float
    nadir_sum_mm: float
    change_from_baseline_percent: float | None
    change_from_nadir_percent: float | None
    absolute_change_from_nadir_mm: float


def exact(value_mm: float | int | Fraction) -> Fraction:
    """An exact rational from a measurement, read from its shortest decimal form.

    Parameters
    ----------
    value_mm: float, int or Fraction

    Returns
    -------
    Fraction
        ``Fraction(repr(value))`` for floats, so ``exact(49.2) == Fraction(246, 5)``.
    """
    if isinstance(value_mm, Fraction):
        return value_mm
    if isinstance(value_mm, bool):
        raise TypeError("a measurement cannot be a bool")
    if isinstance(value_mm, int):
        return Fraction(value_mm)
    v = float(value_mm)
    if v != v or v in (float("inf"), float("-inf")):
        raise ValueError(f"measurement must be finite, got {value_mm!r}")
    return Fraction(repr(v))


def select_targets(
    lesions: Iterable[RecistLesion],
    *,
    min_diameter_mm: float = MIN_TARGET_DIAMETER_MM,
    max_total: int = MAX_TARGETS_TOTAL,
    max_per_organ: int = MAX_TARGETS_PER_ORGAN,
) -> list[RecistLesion]:
    """Choose the target lesions at baseline.

    Measurable lesions (longest diameter >= ``min_diameter_mm``) are taken
    largest first (ties: by id), skipping a lesion whose organ already has
    ``max_per_organ`` targets, until ``max_total`` are chosen.

    Parameters
    ----------
    lesions: iterable of RecistLesion
    min_diameter_mm: float
        10 mm in RECIST 1.1 (CT with slices <= 5 mm).
    max_total, max_per_organ: int
        5 and 2 in RECIST 1.1.

    Returns
    -------
    list of RecistLesion
        In the order chosen (largest first).
    """
    threshold = exact(min_diameter_mm)
    measurable = [les for les in lesions if exact(les.diameter_mm) >= threshold]
    measurable.sort(key=lambda les: (-exact(les.diameter_mm), les.id))
    chosen: list[RecistLesion] = []
    per_organ: dict[str, int] = {}
    for les in measurable:
        if len(chosen) >= max_total:
            break
        if per_organ.get(les.organ, 0) >= max_per_organ:
            continue
        chosen.append(les)
        per_organ[les.organ] = per_organ.get(les.organ, 0) + 1
    return chosen


def sum_of_diameters(diameters_mm: Iterable[float | Fraction]) -> Fraction:
    """Exact sum of longest diameters (mm); a disappeared target counts 0."""
    total = Fraction(0)
    for d in diameters_mm:
        fd = exact(d)
        if fd < 0:
            raise ValueError(f"a diameter cannot be negative, got {d!r}")
        total += fd
    return total


def nadir(sums_mm: Sequence[float | Fraction]) -> Fraction:
    """Smallest sum of diameters on study (baseline included)."""
    if not sums_mm:
        raise ValueError("nadir needs at least the baseline sum")
    return min(exact(s) for s in sums_mm)


def percent_change(reference_mm: float | Fraction, value_mm: float | Fraction) -> Fraction | None:
    """Exact change of ``value_mm`` relative to ``reference_mm`` in percent; None when the reference is 0."""
    ref = exact(reference_mm)
    if ref == 0:
        return None
    return (exact(value_mm) - ref) / ref * 100


def _mm(x: Fraction) -> str:
    return f"{float(x):.1f} mm"


def _pct(x: Fraction | None) -> str:
    return "n/a" if x is None else f"{float(x):+.1f} %"


def classify_response(
    baseline_sum_mm: float | Fraction,
    current_sum_mm: float | Fraction,
    *,
    previous_sums_mm: Sequence[float | Fraction] = (),
    new_lesions: int = 0,
    non_target_progression: bool = False,
    unevaluable_targets: int = 0,
) -> RecistResult:
    """RECIST 1.1 category of one follow-up timepoint.

    Parameters
    ----------
    baseline_sum_mm: float
        Sum of the target lesions' diameters at baseline.
    current_sum_mm: float
        Sum of the same target lesions at this follow-up (disappeared = 0).
    previous_sums_mm: sequence of float
        Sums of earlier follow-ups (between baseline and now), for the nadir.
    new_lesions: int
        Number of unequivocal new lesions at this follow-up.
    non_target_progression: bool
        Unequivocal progression of non-target disease.
    unevaluable_targets: int
        Target lesions that could not be measured at this follow-up (counted 0 mm
        in ``current_sum_mm``); unless PD, the category is then NE.

    Returns
    -------
    RecistResult
    """
    base = exact(baseline_sum_mm)
    cur = exact(current_sum_mm)
    if base < 0 or cur < 0:
        raise ValueError("sums of diameters cannot be negative")
    nad = nadir([base, *previous_sums_mm])
    d_base = percent_change(base, cur)
    d_nadir = percent_change(nad, cur)
    abs_nadir = cur - nad

    def result(category: RecistCategory, rule: str) -> RecistResult:
        return RecistResult(
            category=category,
            rule=rule,
            baseline_sum_mm=float(base),
            current_sum_mm=float(cur),
            nadir_sum_mm=float(nad),
            change_from_baseline_percent=None if d_base is None else float(d_base),
            change_from_nadir_percent=None if d_nadir is None else float(d_nadir),
            absolute_change_from_nadir_mm=float(abs_nadir),
        )

    figures = (
        f"sum of diameters {_mm(cur)} vs baseline {_mm(base)} ({_pct(d_base)}) "
        f"and nadir {_mm(nad)} ({_pct(d_nadir)}, {float(abs_nadir):+.1f} mm)"
    )
    if new_lesions > 0:
        return result("PD", f"PD: {new_lesions} unequivocal new lesion(s) appeared; {figures}")
    if non_target_progression:
        return result("PD", f"PD: unequivocal progression of non-target disease; {figures}")
    if nad > 0 and cur >= nad * (1 + PD_INCREASE_FRACTION) and abs_nadir >= PD_MIN_ABSOLUTE_MM:
        return result(
            "PD",
            f"PD: sum increased by >= 20 % over the nadir and by >= 5 mm in absolute terms; {figures}",
        )
    if base == 0:
        return result("NE", f"NE: no measurable target lesion at baseline and no new lesion; {figures}")
    if unevaluable_targets > 0:
        return result(
            "NE", f"NE: {unevaluable_targets} target lesion(s) could not be measured at follow-up and PD is not met; {figures}"
        )
    if cur == 0:
        return result("CR", f"CR: every target lesion has disappeared; {figures}")
    if cur <= base * (1 - PR_DECREASE_FRACTION):
        return result("PR", f"PR: sum decreased by >= 30 % from baseline; {figures}")
    why = ""
    if nad > 0 and cur >= nad * (1 + PD_INCREASE_FRACTION):
        why = " (increase >= 20 % over the nadir but < 5 mm in absolute terms, so not PD)"
    return result("SD", f"SD: neither >= 30 % decrease from baseline nor PD criteria met{why}; {figures}")
