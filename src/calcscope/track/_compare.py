"""Comparison of a prior and a current study: registration, matching, change, RECIST, growth.

:func:`compare_studies` is the Python API behind ``calcscope compare``; it returns a
:class:`ComparisonRun` whose :class:`Comparison` (a versioned pydantic model) is
written as ``comparison.json`` by :func:`write_comparison`, together with a
self-contained ``comparison.html`` showing, for every matched finding, the prior and
the current key image side by side (same crop size and display window).

Detection differences
---------------------
A finding found on one study only is checked on the other study's image: its voxels
and a 2-5 mm shell of liver around it are mapped through the registration and the
other CT is sampled there. When the other study shows at least half of the finding's
own contrast (finding minus shell, HU) at that position, the finding is flagged
``visible_on_other_study``: a "new" lesion that was already visible on the prior is
then an *equivocal* new lesion (it does not make RECIST PD), and a target lesion not
re-detected on the current study although still visible is *not measured* (RECIST NE
unless PD is established otherwise). Without both CTs the check is skipped.

RECIST new lesions: unmatched current findings of kind ``lesion`` at least
``new_lesion_min_diameter_mm`` (5 mm) long and not visible on the prior image;
smaller ones are listed as equivocal.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ..model import (
    CALC_LABEL_BASE,
    DISCLAIMER,
    LABEL_DUCT,
    LESION_LABEL_BASE,
    CalcificationPattern,
    Context,
    Differential,
    Finding,
    FindingsDocument,
    Masks,
    Volume,
)
from ._growth import GrowthAlert, GrowthThresholds, assess_growth, finding_change, interval_days, is_calcified
from ._match import match_findings
from ._recist import RecistLesion, classify_response, select_targets, sum_of_diameters
from ._register import Registration, register_liver
from ._study import Study, load_study

__all__ = [
    "COMPARISON_SCHEMA_VERSION",
    "COMPARISON_FILES",
    "StudyRef",
    "RegistrationReport",
    "FindingChangeRecord",
    "UnpairedFinding",
    "RecistTarget",
    "RecistBlock",
    "Comparison",
    "ComparisonRun",
    "compare_studies",
    "write_comparison",
    "comparison_json_bytes",
    "render_comparison_html",
]

COMPARISON_SCHEMA_VERSION = "1.3.0"
COMPARISON_FILES = ("comparison.json", "comparison.html")

_Model = ConfigDict(extra="forbid")


class StudyRef(BaseModel):
    """Identity of one side of the comparison."""

    model_config = _Model
    path: str
    kind: Literal["ct", "analysis_folder", "arrays"]
    date: _dt.date | None = None
    input_path: str | None = None
    input_sha256: str | None = None
    shape_zyx: tuple[int, int, int]
    spacing_zyx_mm: tuple[float, float, float]
    ct_available: bool
    findings: int
    notes: list[str] = Field(default_factory=list)


class LandmarkError(BaseModel):
    model_config = _Model
    n: int
    median_mm: float
    mean_mm: float
    max_mm: float


class RegistrationReport(BaseModel):
    """How the current study was brought onto the prior, and how well."""

    model_config = _Model
    image_kind: Literal["ct", "liver_distance_map"]
    metric: str
    final_metric: float
    liver_dice_before: float
    liver_dice_after: float
    deformable: bool
    working_spacing_mm: float
    seed: int
    stages: list[dict[str, Any]] = Field(default_factory=list)
    affine_prior_to_current: list[list[float]] = Field(description="4x4, prior LPS mm -> current LPS mm")
    landmark_error: LandmarkError | None = None
    elapsed_s: float


class FindingChangeRecord(BaseModel):
    """A finding seen on both studies and how it changed."""

    model_config = _Model
    prior_id: str | None
    current_id: str | None
    kind: str
    prior_kind: str
    distance_mm: float = Field(description="registered distance between the centroids")
    gate_mm: float
    prior_centroid_mm: tuple[float, float, float] | None = None
    current_centroid_mm: tuple[float, float, float] | None = None
    current_centroid_in_prior_mm: tuple[float, float, float] | None = None
    prior_volume_mm3: float | None = None
    current_volume_mm3: float | None = None
    volume_change_percent: float | None = None
    volume_change_sd_percent: float | None = Field(
        default=None, description="noise SD of the volume change, percentage points (lesions and calcifications)"
    )
    content_change_percent: float | None = Field(
        default=None,
        description="change of the calcium content (summed HU excess), %, calcifications; unlike the volume of a "
                    "focus of a few voxels it does not depend on the focus's position on the voxel grid",
    )
    content_change_sd_percent: float | None = Field(
        default=None, description="noise SD of the content change, percentage points"
    )
    prior_diameter_mm: float | None = None
    current_diameter_mm: float | None = None
    diameter_change_mm: float | None = None
    interval_days: float | None = None
    doubling_time_days: float | None = None
    growing_calcification: bool = False


class UnpairedFinding(BaseModel):
    """A finding present on one study only (new on the current, or resolved since the prior)."""

    model_config = _Model
    id: str | None
    kind: str
    size_mm: float | None = None
    volume_mm3: float | None = None
    centroid_mm: tuple[float, float, float] | None = None
    centroid_in_prior_mm: tuple[float, float, float] | None = None
    contrast_hu: float | None = Field(default=None, description="mean HU of the finding minus its 2-5 mm shell, own study")
    contrast_hu_other_study: float | None = Field(
        default=None, description="the same at the registered position on the other study"
    )
    visible_on_other_study: bool | None = Field(
        default=None,
        description="the other study shows at least half the contrast at the registered position: the finding "
        "was probably there (new) or is still there (resolved) but not detected",
    )


class RecistTarget(BaseModel):
    model_config = _Model
    prior_id: str
    current_id: str | None
    organ: str
    baseline_diameter_mm: float
    followup_diameter_mm: float
    status: Literal["measured", "disappeared", "not_measured"]


class RecistBlock(BaseModel):
    """RECIST 1.1 target-lesion response of the current study against the prior (baseline)."""

    model_config = _Model
    criteria: str = "RECIST 1.1"
    selection: str
    targets: list[RecistTarget] = Field(default_factory=list)
    baseline_sum_mm: float
    followup_sum_mm: float
    nadir_sum_mm: float
    change_from_baseline_percent: float | None = None
    change_from_nadir_percent: float | None = None
    absolute_change_from_nadir_mm: float
    new_lesions: list[str] = Field(default_factory=list)
    equivocal_new_lesions: list[str] = Field(default_factory=list)
    category: Literal["CR", "PR", "SD", "PD", "NE"]
    rule: str
    notes: list[str] = Field(default_factory=list)


class Comparison(BaseModel):
    """Everything calcscope concluded about a prior/current pair (``comparison.json``)."""

    model_config = _Model
    schema_version: str = COMPARISON_SCHEMA_VERSION
    document: Literal["calcscope.comparison"] = "calcscope.comparison"
    software: dict[str, str] = Field(default_factory=dict)
    created: str | None = None
    prior: StudyRef
    current: StudyRef
    interval_days: float | None = None
    registration: RegistrationReport
    matching: dict[str, float] = Field(default_factory=dict, description="gate parameters")
    matches: list[FindingChangeRecord] = Field(default_factory=list)
    new: list[UnpairedFinding] = Field(default_factory=list)
    resolved: list[UnpairedFinding] = Field(default_factory=list)
    recist: RecistBlock
    growth_thresholds: dict[str, float] = Field(default_factory=dict)
    growth_alerts: list[GrowthAlert] = Field(default_factory=list)
    current_findings: list[Finding] = Field(default_factory=list, description="current findings with their change")
    differential: Differential | None = None
    timings_s: dict[str, float] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)
    disclaimer: str = DISCLAIMER


@dataclass(eq=False)
class ComparisonRun:
    """Result of :func:`compare_studies`: the JSON-able comparison plus what it was made from."""

    comparison: Comparison
    prior: Study
    current: Study
    registration: Registration


# ---- helpers ---------------------------------------------------------------------------


def _diameter(f: Finding) -> float | None:
    return f.longest_diameter_mm if f.longest_diameter_mm is not None else f.size_mm


def _tuple3(v: Any) -> tuple[float, float, float] | None:
    if v is None:
        return None
    a = np.asarray(v, dtype=float).reshape(3)
    if not np.all(np.isfinite(a)):
        return None
    return (float(a[0]), float(a[1]), float(a[2]))


def _study_ref(study: Study) -> StudyRef:
    inp = study.analysis.input
    return StudyRef(
        path=study.path,
        kind=study.kind,
        date=study.date,
        input_path=inp.path if inp else None,
        input_sha256=inp.sha256 if inp else None,
        shape_zyx=study.labels.shape,
        spacing_zyx_mm=study.labels.spacing_zyx,
        ct_available=study.ct is not None,
        findings=len(study.analysis.findings),
        notes=list(study.notes),
    )


def _registration_report(reg: Registration, *, seed: int) -> RegistrationReport:
    lm = None
    if reg.landmark_errors_mm is not None and reg.landmark_errors_mm.size:
        e = reg.landmark_errors_mm
        lm = LandmarkError(n=int(e.size), median_mm=float(np.median(e)), mean_mm=float(e.mean()), max_mm=float(e.max()))
    return RegistrationReport(
        image_kind=reg.image_kind,  # type: ignore[arg-type]
        metric=reg.metric,
        final_metric=reg.final_metric,
        liver_dice_before=round(reg.liver_dice_before, 4),
        liver_dice_after=round(reg.liver_dice_after, 4),
        deformable=reg.deformable,
        working_spacing_mm=reg.working_spacing_mm,
        seed=seed,
        stages=reg.stages,
        affine_prior_to_current=[[float(v) for v in row] for row in reg.affine_matrix()],
        landmark_error=lm,
        elapsed_s=reg.elapsed_s,
    )


_VISIBLE_FRACTION = 0.5  #: other-study contrast / own contrast at or above which a finding counts as visible
_MIN_CONTRAST_HU = 15.0  #: own contrast needed to judge visibility at all
_MAX_POINTS = 400


def _spread(points: np.ndarray, n: int) -> np.ndarray:
    if len(points) <= n:
        return points
    return points[np.linspace(0, len(points) - 1, n).round().astype(int)]


def _contrast_and_mapped(
    own: Study, finding: Finding, other: Study, mapper: Any
) -> tuple[float | None, float | None]:
    """(contrast on the own study, contrast at the mapped position on the other study), HU.

    Contrast = mean HU inside the finding's label minus mean HU of a 2-5 mm shell of
    liver around it. The finding's voxels and the shell are mapped with ``mapper``
    (LPS points of ``own`` -> LPS points of ``other``) and ``other``'s CT is sampled
    there (trilinear). None when a CT or the label is missing.
    """
    from scipy import ndimage

    if own.ct is None or other.ct is None or finding.label is None or finding.centroid_voxel is None:
        return None, None
    lab = own.labels
    size = float(_diameter(finding) or 10.0)
    c = np.asarray(finding.centroid_voxel, dtype=float)
    sl = []
    for a in range(3):
        h = int(np.ceil((size + 8.0) / lab.spacing_zyx[a]))
        ci = int(round(float(np.clip(c[a], 0, lab.shape[a] - 1))))
        sl.append(slice(max(0, ci - h), min(lab.shape[a], ci + h + 1)))
    block = np.asarray(lab.array[sl[0], sl[1], sl[2]])
    inside = block == finding.label
    if not inside.any():
        return None, None
    dist = ndimage.distance_transform_edt(~inside, sampling=lab.spacing_zyx)
    shell = (dist >= 2.0) & (dist <= 5.0) & (block == 1)
    if not shell.any():
        return None, None
    start = np.array([s.start for s in sl], dtype=float)
    ct_block = np.asarray(own.ct.array[sl[0], sl[1], sl[2]], dtype=np.float32)
    own_contrast = float(ct_block[inside].mean() - ct_block[shell].mean())
    pts_in = lab.voxel_to_mm(_spread(np.argwhere(inside), _MAX_POINTS) + start)
    pts_sh = lab.voxel_to_mm(_spread(np.argwhere(shell), _MAX_POINTS) + start)
    other_ct = other.ct
    values = []
    for pts in (pts_in, pts_sh):
        idx = other_ct.mm_to_voxel(mapper(pts))
        values.append(ndimage.map_coordinates(other_ct.array, idx.T, order=1, mode="nearest", output=np.float32))
    return own_contrast, float(values[0].mean() - values[1].mean())


def _visibility(own: Study, finding: Finding, other: Study, mapper: Any) -> tuple[float | None, float | None, bool | None]:
    own_c, other_c = _contrast_and_mapped(own, finding, other, mapper)
    if own_c is None or other_c is None or abs(own_c) < _MIN_CONTRAST_HU:
        return own_c, other_c, None
    return own_c, other_c, bool(other_c / own_c >= _VISIBLE_FRACTION)


def _unpaired(
    indices: Any,
    findings: list[Finding],
    own: Study,
    other: Study,
    mapper: Any,
    *,
    in_other: Any = None,
) -> tuple[list[UnpairedFinding], set[int]]:
    """Records of the findings seen on one study only, and the indices still visible on the other.

    ``in_other`` (optional) holds each finding's centroid mapped into the prior frame.
    """
    out: list[UnpairedFinding] = []
    visible: set[int] = set()
    for k in indices:
        f = findings[k]
        own_c, other_c, vis = _visibility(own, f, other, mapper)
        if vis:
            visible.add(k)
        out.append(UnpairedFinding(
            id=f.id, kind=f.kind, size_mm=_diameter(f), volume_mm3=f.volume_mm3,
            centroid_mm=_tuple3(f.centroid_mm),
            centroid_in_prior_mm=_tuple3(in_other[k]) if in_other is not None else None,
            contrast_hu=own_c, contrast_hu_other_study=other_c, visible_on_other_study=vis,
        ))
    return out, visible


def _recist_block(
    prior: list[Finding],
    current: list[Finding],
    pair_of_prior: dict[int, int],
    new_idx: list[int],
    *,
    new_lesion_min_diameter_mm: float,
    new_seen_on_prior: set[int] = frozenset(),  # type: ignore[assignment]
    resolved_still_visible: set[int] = frozenset(),  # type: ignore[assignment]
) -> RecistBlock:
    lesions = [
        RecistLesion(id=f.id or f"prior-{i}", diameter_mm=float(_diameter(f) or 0.0), organ="liver")
        for i, f in enumerate(prior)
        if f.kind == "lesion"
    ]
    index_of = {f.id or f"prior-{i}": i for i, f in enumerate(prior)}
    targets = select_targets(lesions)
    records: list[RecistTarget] = []
    follow: list[float] = []
    unmeasured = 0
    for t in targets:
        j = pair_of_prior.get(index_of[t.id])
        if j is None:
            visible = index_of[t.id] in resolved_still_visible
            unmeasured += int(visible)
            records.append(RecistTarget(prior_id=t.id, current_id=None, organ=t.organ, baseline_diameter_mm=t.diameter_mm,
                                        followup_diameter_mm=0.0, status="not_measured" if visible else "disappeared"))
            follow.append(0.0)
        else:
            d = float(_diameter(current[j]) or 0.0)
            records.append(RecistTarget(prior_id=t.id, current_id=current[j].id, organ=t.organ,
                                        baseline_diameter_mm=t.diameter_mm, followup_diameter_mm=d, status="measured"))
            follow.append(d)
    new_lesion_idx = [j for j in new_idx if current[j].kind == "lesion"]
    new_unequivocal = [
        current[j].id or f"current-{j}"
        for j in new_lesion_idx
        if float(_diameter(current[j]) or 0.0) >= new_lesion_min_diameter_mm and j not in new_seen_on_prior
    ]
    new_equivocal = [current[j].id or f"current-{j}" for j in new_lesion_idx if (current[j].id or f"current-{j}") not in new_unequivocal]
    res = classify_response(
        sum_of_diameters(t.diameter_mm for t in targets),
        sum_of_diameters(follow),
        new_lesions=len(new_unequivocal),
        unevaluable_targets=unmeasured,
    )
    notes = [
        "Only findings of kind 'lesion' are RECIST lesions: simple cysts, calcifications and ducts are not.",
        "Non-target lesions and lymph nodes are not assessed; the category reflects target lesions and new lesions only.",
    ]
    if new_equivocal:
        notes.append(
            f"Equivocal new lesion(s) {', '.join(new_equivocal)}: smaller than {new_lesion_min_diameter_mm:g} mm, or "
            "the prior image shows a similar density at the registered position (probably present but not "
            "detected before). They do not by themselves make PD; check them on the images and the next study."
        )
    if unmeasured:
        notes.append(
            f"{unmeasured} target lesion(s) were not re-detected although the current image still shows them at "
            "the registered position; measure them by hand."
        )
    return RecistBlock(
        selection=(
            "Target lesions: liver lesions with a longest diameter >= 10 mm on the prior (baseline) study, the "
            "largest first, at most 2 per organ and 5 in total."
        ),
        targets=records,
        baseline_sum_mm=res.baseline_sum_mm,
        followup_sum_mm=res.current_sum_mm,
        nadir_sum_mm=res.nadir_sum_mm,
        change_from_baseline_percent=res.change_from_baseline_percent,
        change_from_nadir_percent=res.change_from_nadir_percent,
        absolute_change_from_nadir_mm=res.absolute_change_from_nadir_mm,
        new_lesions=new_unequivocal,
        equivocal_new_lesions=new_equivocal,
        category=res.category,
        rule=res.rule,
        notes=notes,
    )


def _run_reasoning(
    findings: list[Finding], current: Study, context: Context | None
) -> tuple[Differential | None, str | None]:
    try:
        from ..reason import reason
    except ImportError as exc:
        return None, f"the reasoning stage is not available ({exc}); no differential with growth was computed"
    doc = FindingsDocument(
        modality="CT", phase=current.analysis.phase.phase if current.analysis.phase else None, findings=findings
    )
    pattern: CalcificationPattern | None = current.analysis.calcification_pattern
    return reason(doc, context, pattern=pattern), None


# ---- API -------------------------------------------------------------------------------


def compare_studies(
    prior: Study | str | os.PathLike,
    current: Study | str | os.PathLike,
    *,
    prior_date: _dt.date | None = None,
    current_date: _dt.date | None = None,
    deformable: bool = False,
    seed: int = 0,
    working_spacing_mm: float = 2.0,
    landmarks_prior_mm: np.ndarray | None = None,
    landmarks_current_mm: np.ndarray | None = None,
    min_gate_mm: float = 10.0,
    size_factor: float = 0.5,
    new_lesion_min_diameter_mm: float = 5.0,
    growth_thresholds: GrowthThresholds = GrowthThresholds(),
    context: Context | None = None,
    run_reasoning: bool = True,
    timestamp: bool = True,
    analyze_options: dict[str, Any] | None = None,
) -> ComparisonRun:
    """Compare a current study with a prior one.

    Parameters
    ----------
    prior, current: Study or path
        A loaded :class:`Study`, an analysed-study folder or a CT (see :func:`load_study`).
    prior_date, current_date: datetime.date, optional
        Study dates; with both, intervals and doubling times are reported. They override
        the dates of given :class:`Study` objects.
    deformable: bool
        Add a B-spline stage to the rigid + affine registration.
    seed: int
        Seed of the registration's metric sampling (results are reproducible).
    working_spacing_mm: float
        Isotropic grid spacing of the registration.
    landmarks_prior_mm, landmarks_current_mm: (N, 3) ndarray, optional
        Corresponding LPS points for the landmark registration error.
    min_gate_mm, size_factor: float
        Matching gate ``max(min_gate_mm, size_factor * longest diameter)``.
    new_lesion_min_diameter_mm: float
        New lesions at least this large are unequivocal for RECIST (PD).
    growth_thresholds: GrowthThresholds
        Definition of a growing calcification (see :mod:`calcscope.track._growth`).
    context: Context, optional
        Clinical context for the reasoning; defaults to the current analysis' context.
    run_reasoning: bool
        Re-rank the differential with the changes (``calcscope.reason.reason``).
    timestamp: bool
        Record the creation time.
    analyze_options: dict, optional
        Options for :func:`calcscope.pipeline.analyze` when a side is a CT.

    Returns
    -------
    ComparisonRun
    """
    from .. import __version__

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    p_study = prior if isinstance(prior, Study) else load_study(prior, date=prior_date, analyze_options=analyze_options)
    c_study = current if isinstance(current, Study) else load_study(current, date=current_date, analyze_options=analyze_options)
    if prior_date is not None:
        p_study.date = prior_date
    if current_date is not None:
        c_study.date = current_date
    timings["load"] = round(time.perf_counter() - t0, 3)
    warnings: list[str] = []
    days = interval_days(p_study.date, c_study.date)
    if p_study.date and c_study.date and days is None:
        warnings.append("the current date is not after the prior date; intervals and doubling times are left out")

    t1 = time.perf_counter()
    use_ct = p_study.ct is not None and c_study.ct is not None
    if not use_ct:
        warnings.append("registration used the liver masks only (a CT is missing on at least one side)")
    reg = register_liver(
        p_study.labels,
        p_study.liver_mask,
        c_study.labels,
        c_study.liver_mask,
        prior_ct=p_study.ct.array if use_ct else None,
        current_ct=c_study.ct.array if use_ct else None,
        deformable=deformable,
        working_spacing_mm=working_spacing_mm,
        seed=seed,
        landmarks_prior_mm=landmarks_prior_mm,
        landmarks_current_mm=landmarks_current_mm,
    )
    timings["register"] = round(time.perf_counter() - t1, 3)
    if reg.liver_dice_after < 0.8:
        warnings.append(
            f"liver masks overlap poorly after registration (Dice {reg.liver_dice_after:.2f}); matches may be wrong"
        )

    t2 = time.perf_counter()
    pf, cf = p_study.findings, c_study.findings
    m = match_findings(pf, cf, current_to_prior=reg.current_to_prior, min_gate_mm=min_gate_mm, size_factor=size_factor)
    in_prior = m.current_in_prior_mm
    updated = list(cf)
    records: list[FindingChangeRecord] = []
    alerts: list[GrowthAlert] = []
    for pair in m.pairs:
        a, b = pf[pair.prior_index], cf[pair.current_index]
        ch = finding_change(a, b, prior_date=p_study.date, current_date=c_study.date)
        updated[pair.current_index] = b.model_copy(update={"change": ch})
        alert = assess_growth(a, b, ch, calcified=is_calcified(b, cf), thresholds=growth_thresholds)
        if alert is not None:
            alerts.append(alert)
        records.append(
            FindingChangeRecord(
                prior_id=a.id,
                current_id=b.id,
                kind=b.kind,
                prior_kind=a.kind,
                distance_mm=round(pair.distance_mm, 3),
                gate_mm=round(pair.gate_mm, 3),
                prior_centroid_mm=_tuple3(a.centroid_mm),
                current_centroid_mm=_tuple3(b.centroid_mm),
                current_centroid_in_prior_mm=_tuple3(in_prior[pair.current_index]) if in_prior is not None else None,
                prior_volume_mm3=a.volume_mm3,
                current_volume_mm3=b.volume_mm3,
                volume_change_percent=ch.growth_percent,
                volume_change_sd_percent=ch.growth_sd_percent,
                content_change_percent=ch.content_change_percent,
                content_change_sd_percent=ch.content_change_sd_percent,
                prior_diameter_mm=_diameter(a),
                current_diameter_mm=_diameter(b),
                diameter_change_mm=ch.diameter_change_mm,
                interval_days=ch.interval_days,
                doubling_time_days=ch.doubling_time_days,
                growing_calcification=alert is not None,
            )
        )
    new, seen_on_prior = _unpaired(
        m.new, cf, c_study, p_study, reg.current_to_prior, in_other=in_prior
    )
    resolved, still_visible = _unpaired(m.resolved, pf, p_study, c_study, reg.prior_to_current)
    if seen_on_prior:
        warnings.append(
            f"{len(seen_on_prior)} new finding(s) show a similar density on the prior image at the registered "
            "position: probably present before but not detected"
        )
    if still_visible:
        warnings.append(
            f"{len(still_visible)} resolved finding(s) still show a similar density on the current image at the "
            "registered position: probably still present but not detected"
        )
    recist = _recist_block(
        pf, cf, {p.prior_index: p.current_index for p in m.pairs}, m.new,
        new_lesion_min_diameter_mm=new_lesion_min_diameter_mm,
        new_seen_on_prior=seen_on_prior,
        resolved_still_visible=still_visible,
    )
    timings["match"] = round(time.perf_counter() - t2, 3)

    differential = None
    if run_reasoning:
        t3 = time.perf_counter()
        ctx = context if context is not None else (c_study.analysis.context or p_study.analysis.context)
        differential, why_not = _run_reasoning(updated, c_study, ctx)
        if why_not:
            warnings.append(why_not)
        timings["reason"] = round(time.perf_counter() - t3, 3)

    comparison = Comparison(
        software={"name": "calcscope", "version": __version__},
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds") if timestamp else None,
        prior=_study_ref(p_study),
        current=_study_ref(c_study),
        interval_days=days,
        registration=_registration_report(reg, seed=seed),
        matching={"min_gate_mm": min_gate_mm, "size_factor": size_factor},
        matches=records,
        new=new,
        resolved=resolved,
        recist=recist,
        growth_thresholds={
            "min_volume_percent": growth_thresholds.min_volume_percent,
            "min_volume_mm3": growth_thresholds.min_volume_mm3,
            "min_diameter_mm": growth_thresholds.min_diameter_mm,
            "max_interval_days": growth_thresholds.max_interval_days,
            "min_sd_multiple": growth_thresholds.min_sd_multiple,
        },
        growth_alerts=alerts,
        current_findings=updated,
        differential=differential,
        timings_s=timings,
        warnings=warnings,
    )
    return ComparisonRun(comparison=comparison, prior=p_study, current=c_study, registration=reg)


# ---- outputs ---------------------------------------------------------------------------


def comparison_json_bytes(comparison: Comparison) -> bytes:
    """``comparison.json`` content (UTF-8, indented, trailing newline)."""
    return (comparison.model_dump_json(indent=2) + "\n").encode("utf-8")


_PSEUDO_HU = {"background": -100.0, "liver": 60.0, "duct": 0.0, "lesion": 10.0, "calcification": 600.0}


def _block(study: Study, finding: Finding, half_mm: float) -> tuple[Volume, Masks, Finding, bool] | None:
    """A small sub-volume around ``finding`` with its masks, and the finding moved into it."""
    if finding.centroid_voxel is None:
        return None
    lab_vol = study.labels
    c = np.asarray(finding.centroid_voxel, dtype=float)
    sl = []
    for a in range(3):
        h = int(np.ceil(half_mm / lab_vol.spacing_zyx[a])) + 2
        ci = int(round(float(np.clip(c[a], 0, lab_vol.shape[a] - 1))))
        sl.append(slice(max(0, ci - h), min(lab_vol.shape[a], ci + h + 1)))
    start = np.array([s.start for s in sl], dtype=float)
    lab = np.asarray(lab_vol.array[sl[0], sl[1], sl[2]]).astype(np.int32)
    has_ct = study.ct is not None
    if has_ct:
        arr = np.asarray(study.ct.array[sl[0], sl[1], sl[2]])  # type: ignore[union-attr]
    else:
        arr = np.full(lab.shape, _PSEUDO_HU["background"], dtype=np.float32)
        arr[lab == 1] = _PSEUDO_HU["liver"]
        arr[lab == LABEL_DUCT] = _PSEUDO_HU["duct"]
        arr[(lab > LESION_LABEL_BASE) & (lab < CALC_LABEL_BASE)] = _PSEUDO_HU["lesion"]
        arr[lab > CALC_LABEL_BASE] = _PSEUDO_HU["calcification"]
    origin = lab_vol.voxel_to_mm(start)
    sub = Volume(array=np.ascontiguousarray(arr), spacing_zyx=lab_vol.spacing_zyx, origin_lps=tuple(origin),
                 direction=lab_vol.direction)
    masks = Masks(
        liver=lab > 0,
        lesions=np.where((lab > LESION_LABEL_BASE) & (lab < CALC_LABEL_BASE), lab - LESION_LABEL_BASE, 0).astype(np.int32),
        calcifications=np.where(lab > CALC_LABEL_BASE, lab - CALC_LABEL_BASE, 0).astype(np.int32),
        ducts=lab == LABEL_DUCT,
    )
    moved = finding.model_copy(update={"centroid_voxel": tuple(float(v) for v in c - start)})
    return sub, masks, moved, has_ct


def _key_image(study: Study, finding: Finding, *, window_kind: str, extent_mm: float) -> tuple[bytes | None, bool]:
    """PNG of an axial crop through ``finding`` drawn by calcscope.report's key-image helper.

    ``window_kind`` and ``extent_mm`` are the same for both sides of a pair, so the two
    crops have the same size in mm and the same display window.
    """
    from ..report._images import finding_image

    half = max(20.0, 0.75 * extent_mm + 10.0)
    blk = _block(study, finding, half)
    if blk is None:
        return None, False
    sub, masks, moved, has_ct = blk
    moved = moved.model_copy(update={"kind": window_kind, "longest_diameter_mm": extent_mm, "size_mm": extent_mm})
    return finding_image(sub, masks, moved), has_ct


def _img_tag(png: bytes | None, alt: str) -> str:
    if png is None:
        return f'<div class="noimg">{html.escape(alt)}: no image</div>'
    b64 = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">'


def _fmt(v: float | None, spec: str = ".1f", unit: str = "") -> str:
    return "–" if v is None else f"{v:{spec}}{unit}"


def _sd_text(sd: float | None) -> str:
    """'± SD' after a change, when the change carries a noise SD (a small SD keeps a decimal)."""
    from ..reason._features import format_sd

    return "" if sd is None else f" ± {format_sd(sd)}"


def render_comparison_html(run: ComparisonRun, *, max_image_pairs: int = 24) -> str:
    """Self-contained HTML report of a comparison (images embedded as PNG data URIs)."""
    c = run.comparison
    e = html.escape
    pf = {f.id: f for f in run.prior.findings}
    cf = {f.id: f for f in run.current.findings}
    parts: list[str] = []
    parts.append(
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>calcscope comparison</title>"
        "<style>body{font-family:sans-serif;margin:1.5em;max-width:1100px}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 6px;font-size:90%}.disclaimer{background:#fff3cd;padding:.6em}"
        ".pair{display:flex;gap:12px;align-items:flex-start;margin:.6em 0}.pair figure{margin:0}"
        ".pair img{width:260px}.alert{color:#a00;font-weight:bold}.noimg{width:260px;height:60px;background:#eee}"
        "</style></head><body>"
    )
    parts.append("<h1>calcscope follow-up comparison</h1>")
    parts.append(f"<p class='disclaimer'>{e(c.disclaimer)}</p>")
    parts.append("<h2>Studies</h2><table><tr><th></th><th>prior (baseline)</th><th>current</th></tr>")
    for label, fn in (
        ("source", lambda s: s.input_path or s.path),
        ("date", lambda s: str(s.date) if s.date else "not given"),
        ("CT available", lambda s: "yes" if s.ct_available else "no (label maps shown)"),
        ("findings", lambda s: str(s.findings)),
    ):
        parts.append(f"<tr><th>{e(label)}</th><td>{e(fn(c.prior))}</td><td>{e(fn(c.current))}</td></tr>")
    parts.append(f"</table><p>Interval: {_fmt(c.interval_days, '.0f', ' days') if c.interval_days else 'unknown'}</p>")
    r = c.registration
    lm = (
        f"; landmark error median {r.landmark_error.median_mm:.2f} mm (max {r.landmark_error.max_mm:.2f} mm, n={r.landmark_error.n})"
        if r.landmark_error
        else ""
    )
    parts.append(
        "<h2>Registration quality</h2>"
        f"<p>{e(' + '.join(s['name'] for s in r.stages))} on {e(r.image_kind.replace('_', ' '))} "
        f"({e(r.metric)}, final value {r.final_metric:.4f}); liver Dice {r.liver_dice_before:.3f} before, "
        f"{r.liver_dice_after:.3f} after{e(lm)}.</p>"
    )
    rb = c.recist
    parts.append(f"<h2>RECIST 1.1: {e(rb.category)}</h2><p><b>Rule applied:</b> {e(rb.rule)}</p><p>{e(rb.selection)}</p>")
    if rb.targets:
        parts.append("<table><tr><th>target</th><th>baseline mm</th><th>follow-up mm</th><th>status</th></tr>")
        for t in rb.targets:
            parts.append(
                f"<tr><td>{e(t.prior_id)} → {e(t.current_id or '–')}</td><td>{t.baseline_diameter_mm:.1f}</td>"
                f"<td>{t.followup_diameter_mm:.1f}</td><td>{e(t.status)}</td></tr>"
            )
        parts.append("</table>")
    parts.append("<ul>" + "".join(f"<li>{e(n)}</li>" for n in rb.notes) + "</ul>")
    if c.growth_alerts:
        parts.append("<h2>Growing calcifications</h2><ul>")
        for a in c.growth_alerts:
            parts.append(f"<li class='alert'>{e(a.statement)} <small>({e(', '.join(a.citations))})</small></li>")
        parts.append("</ul>")
    if c.differential is not None:
        parts.append(f"<h2>Differential with the changes</h2><p>{e(c.differential.impression)}</p><ol>")
        for rc in c.differential.ranked[:5]:
            parts.append(f"<li>{e(rc.name)}: {rc.probability:.2f}</li>")
        parts.append("</ol>")
    parts.append("<h2>Matched findings</h2>")
    if c.matches:
        parts.append(
            "<table><tr><th>prior</th><th>current</th><th>kind</th><th>distance mm</th><th>volume mm³</th>"
            "<th>Δ volume</th><th>Δ calcium content</th><th>diameter mm</th><th>Δ diameter</th><th>doubling time</th></tr>"
        )
        for mrec in c.matches:
            parts.append(
                f"<tr><td>{e(str(mrec.prior_id))}</td><td>{e(str(mrec.current_id))}</td><td>{e(mrec.kind)}</td>"
                f"<td>{mrec.distance_mm:.1f}</td>"
                f"<td>{_fmt(mrec.prior_volume_mm3)} → {_fmt(mrec.current_volume_mm3)}</td>"
                f"<td>{_fmt(mrec.volume_change_percent, '+.0f', ' %')}{_sd_text(mrec.volume_change_sd_percent)}</td>"
                f"<td>{_fmt(mrec.content_change_percent, '+.0f', ' %')}{_sd_text(mrec.content_change_sd_percent)}</td>"
                f"<td>{_fmt(mrec.prior_diameter_mm)} → {_fmt(mrec.current_diameter_mm)}</td>"
                f"<td>{_fmt(mrec.diameter_change_mm, '+.1f', ' mm')}</td>"
                f"<td>{_fmt(mrec.doubling_time_days, '.0f', ' d')}</td></tr>"
            )
        parts.append("</table>")
        order = sorted(c.matches, key=lambda m: -(m.current_diameter_mm or 0.0))
        shown = order[:max_image_pairs]
        for mrec in shown:
            a, b = pf.get(mrec.prior_id), cf.get(mrec.current_id)
            if a is None or b is None:
                continue
            wk = b.kind
            ext = max(float(_diameter(a) or 0.0), float(_diameter(b) or 0.0), 1.0)
            png_a, _ = _key_image(run.prior, a, window_kind=wk, extent_mm=ext)
            png_b, _ = _key_image(run.current, b, window_kind=wk, extent_mm=ext)
            parts.append(
                "<div class='pair'>"
                f"<figure>{_img_tag(png_a, f'prior {a.id}')}<figcaption>prior {e(str(a.id))}</figcaption></figure>"
                f"<figure>{_img_tag(png_b, f'current {b.id}')}<figcaption>current {e(str(b.id))}"
                f"{' — growing' if mrec.growing_calcification else ''}</figcaption></figure></div>"
            )
        if len(order) > len(shown):
            parts.append(f"<p>Images shown for the {len(shown)} largest of {len(order)} matched findings.</p>")
    else:
        parts.append("<p>No finding was seen on both studies.</p>")
    for title, items in (("New findings", c.new), ("Resolved findings", c.resolved)):
        parts.append(f"<h2>{title}</h2>")
        if not items:
            parts.append("<p>None.</p>")
            continue
        other = "prior" if title.startswith("New") else "current"
        parts.append("<ul>" + "".join(
            f"<li>{e(str(u.id))} ({e(u.kind)}, {_fmt(u.size_mm, '.1f', ' mm')})"
            + (f" — similar density on the {other} image at the registered position (contrast "
               f"{_fmt(u.contrast_hu_other_study, '+.0f', ' HU')} vs {_fmt(u.contrast_hu, '+.0f', ' HU')}): "
               "probably a detection difference" if u.visible_on_other_study else "")
            + "</li>" for u in items
        ) + "</ul>")
    if c.warnings:
        parts.append("<h2>Warnings</h2><ul>" + "".join(f"<li>{e(w)}</li>" for w in c.warnings) + "</ul>")
    if not (run.prior.ct is not None and run.current.ct is not None):
        parts.append("<p><small>Where a CT was not available the images are drawn from the label map "
                     "(schematic grey levels), not from the CT.</small></p>")
    parts.append(f"<p><small>{e(c.disclaimer)}</small></p></body></html>")
    return "\n".join(parts)


def write_comparison(
    out_dir: str | os.PathLike, run: ComparisonRun, *, force: bool = False, max_image_pairs: int = 24
) -> list[Path]:
    """Write ``comparison.json`` and ``comparison.html`` atomically into ``out_dir``.

    The files are written into a temporary folder beside ``out_dir`` that takes its
    name only when complete; an existing ``out_dir`` is refused unless ``force``.

    Raises
    ------
    OutputError
        ``out_dir`` exists (without ``force``) or cannot be written.
    """
    from ..report import atomic_output_dir

    t0 = time.perf_counter()
    page = render_comparison_html(run, max_image_pairs=max_image_pairs)
    run.comparison.timings_s["report"] = round(time.perf_counter() - t0, 3)
    out = Path(out_dir)
    with atomic_output_dir(out, force=force) as tmp:
        (tmp / "comparison.json").write_bytes(comparison_json_bytes(run.comparison))
        (tmp / "comparison.html").write_text(page, encoding="utf-8")
    return [out / name for name in COMPARISON_FILES]
