"""Scoring an analysis against the ground truth of a phantom or an insertion case."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from scipy.optimize import linear_sum_assignment

from ..errors import FindingsError, InputNotFoundError, UsageError
from ..model import Analysis, Finding
from ..synth._truth import Truth, TruthObject

__all__ = [
    "SIZE_BANDS",
    "ObjectResult",
    "FalsePositive",
    "BandResult",
    "KindResult",
    "Score",
    "score",
    "size_band",
    "load_truth",
    "load_analysis",
]

#: (name, lower mm inclusive, upper mm exclusive)
SIZE_BANDS: tuple[tuple[str, float, float], ...] = (("<2mm", 0.0, 2.0), ("2-5mm", 2.0, 5.0), ("5-10mm", 5.0, 10.0), (">=10mm", 10.0, float("inf")))

_FINDING_KINDS = {
    "calcification": ("calcification", "duct_stone"),
    "lesion": ("lesion", "cyst"),
    "duct": ("duct_dilatation",),
}
_SHAPE_SYNONYMS = {"pin": "punctate", "equal_sign": "linear"}


def size_band(size_mm: float) -> str:
    """Name of the size band (longest diameter) a size falls in."""
    for name, lo, hi in SIZE_BANDS:
        if lo <= size_mm < hi:
            return name
    return SIZE_BANDS[-1][0]


class ObjectResult(BaseModel):
    """How one truth object was found."""

    model_config = ConfigDict(extra="forbid")
    truth_id: str
    type: str
    subtype: str
    size_mm: float
    size_band: str
    match_radius_mm: float
    matched: bool
    finding_id: str | None = None
    distance_mm: float | None = None
    duplicates: list[str] = Field(default_factory=list, description="further findings within the match radius")
    volume_truth_mm3: float
    volume_found_mm3: float | None = None
    volume_error_pct: float | None = None
    dice: float | None = None
    shape_truth: str | None = None
    shape_found: str | None = None
    shape_agree: bool | None = None
    kind_truth: str
    kind_found: str | None = None
    kind_agree: bool | None = None
    lobe_truth: str | None = None
    lobe_found: str | None = None
    relation_truth: str | None = None
    relation_found: str | None = None
    parent_agree: bool | None = None


class FalsePositive(BaseModel):
    model_config = ConfigDict(extra="forbid")
    finding_id: str | None
    kind: str
    centroid_mm: tuple[float, float, float] | None
    size_mm: float | None
    nearest_truth_mm: float | None = None


class BandResult(BaseModel):
    model_config = ConfigDict(extra="forbid")
    band: str
    n_truth: int
    n_found: int
    sensitivity: float | None


class KindResult(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n_truth: int
    n_found: int
    sensitivity: float | None
    by_size: list[BandResult]
    false_positives: int
    duplicates: int
    median_volume_error_pct: float | None = None
    median_abs_volume_error_pct: float | None = None
    mean_dice: float | None = None


class Score(BaseModel):
    """Detection, measurement and classification agreement of one analysis with its truth."""

    model_config = ConfigDict(extra="forbid")
    preset: str | None
    seed: int | None
    phase_truth: str | None
    phase_found: str | None
    calcifications: KindResult
    lesions: KindResult
    ducts: KindResult
    false_positives_per_scan: int
    shape_agreement: float | None = Field(default=None, description="fraction of matched calcifications whose shape word agrees")
    cyst_solid_agreement: float | None = Field(default=None, description="fraction of matched lesions with the right cyst/solid kind")
    lobe_agreement: float | None = None
    parent_agreement: float | None = Field(default=None, description="fraction of matched child calcifications attached to the matched parent")
    distribution_truth: str | None = None
    distribution_found: str | None = None
    distribution_agree: bool | None = None
    duct_dilatation_truth: bool = False
    duct_dilatation_found: bool = False
    objects: list[ObjectResult] = Field(default_factory=list)
    false_positives: list[FalsePositive] = Field(default_factory=list)
    summary: str = ""


def load_truth(truth: "Truth | str | os.PathLike") -> Truth:
    """A Truth from an object, a truth JSON file or a folder holding ``truth.json``."""
    if isinstance(truth, Truth):
        return truth
    p = Path(truth)
    if p.is_dir():
        p = p / "truth.json"
    if not p.exists():
        raise InputNotFoundError("the truth file does not exist", path=str(p), hint="write one with `calcscope synth --truth truth.json`")
    try:
        return Truth.model_validate_json(p.read_text(encoding="utf-8"))
    except (ValidationError, ValueError) as exc:
        raise UsageError(f"the truth file is not a calcscope truth document ({str(exc).splitlines()[0]})", path=str(p)) from exc


def load_analysis(analysis: "Analysis | str | os.PathLike") -> Analysis:
    """An Analysis from an object, an ``analysis.json`` file or a result folder holding one."""
    if isinstance(analysis, Analysis):
        return analysis
    p = Path(analysis)
    if p.is_dir():
        p = p / "analysis.json"
    if not p.exists():
        raise InputNotFoundError("the analysis file does not exist", path=str(p), hint="run `calcscope analyze` first")
    try:
        return Analysis.model_validate(json.loads(p.read_text(encoding="utf-8")))
    except (ValidationError, ValueError) as exc:
        raise FindingsError(f"the analysis file is not a calcscope analysis ({str(exc).splitlines()[0]})", path=str(p)) from exc


def _load_labels(x: Any, what: str) -> np.ndarray | None:
    if x is None:
        return None
    if isinstance(x, np.ndarray):
        return x
    import SimpleITK as sitk

    p = Path(x)
    if not p.exists():
        raise InputNotFoundError(f"the {what} label map does not exist", path=str(p))
    return sitk.GetArrayFromImage(sitk.ReadImage(str(p)))


def _finding_size(f: Finding) -> float | None:
    return f.longest_diameter_mm or f.size_mm


def _centroid(f: Finding) -> np.ndarray | None:
    return None if f.centroid_mm is None else np.asarray(f.centroid_mm, float)


def _norm_shape(s: str | None) -> str | None:
    return None if s is None else _SHAPE_SYNONYMS.get(s, s)


def score(
    truth: "Truth | str | os.PathLike",
    analysis: "Analysis | str | os.PathLike",
    *,
    truth_labels: "np.ndarray | str | os.PathLike | None" = None,
    result_labels: "np.ndarray | str | os.PathLike | None" = None,
    min_match_radius_mm: float = 3.0,
) -> Score:
    """Match the findings of an analysis to the truth objects and measure agreement.

    A finding matches a truth object of the same type (calcification <-> calcification or
    duct_stone; lesion <-> lesion or cyst; duct <-> duct_dilatation) when its centroid lies
    within ``max(min_match_radius_mm, size_mm / 2)`` of the object's centre; pairs are
    chosen by minimum total distance (Hungarian assignment).  Further findings within an
    already matched object's radius (fragments of a grit cluster, a ring or a septal
    network) count as duplicates, not false positives.

    Parameters
    ----------
    truth: Truth or path
        The truth (object, ``truth.json`` or a folder with one).
    analysis: Analysis or path
        The analysis (object, ``analysis.json`` or a result folder with one).
    truth_labels, result_labels: array or path, optional
        The truth objects map (values = ``TruthObject.label``) and the result segmentation
        (values = ``Finding.label``) on the same grid; when both are given, each matched
        object gets a Dice coefficient.
    min_match_radius_mm: float
        Smallest match radius.

    Returns
    -------
    Score
    """
    t = load_truth(truth)
    a = load_analysis(analysis)
    tl = _load_labels(truth_labels, "truth")
    rl = _load_labels(result_labels, "result")
    if tl is not None and rl is not None and tl.shape != rl.shape:
        raise UsageError(f"the truth and result label maps have different shapes ({tl.shape} and {rl.shape})", hint="give label maps on the same grid")
    by_id = {o.id: o for o in t.objects}

    results: dict[str, ObjectResult] = {}
    matched_finding: dict[str, Finding] = {}  # truth id -> finding
    fps: list[FalsePositive] = []
    kind_results: dict[str, KindResult] = {}
    for typ in ("calcification", "lesion", "duct"):
        objs = [o for o in t.objects if o.type == typ]
        finds = [f for f in a.findings if f.kind in _FINDING_KINDS[typ]]
        res, fp, dup = _match_kind(objs, finds, min_match_radius_mm)
        for r in res:
            results[r.truth_id] = r
            if r.finding_id is not None:
                matched_finding[r.truth_id] = next(f for f in finds if _fid(f) == r.finding_id)
        fps.extend(fp)
        kind_results[typ] = _kind_summary(res, len(fp), dup)

    # measurements and classification on matched pairs
    for tid, r in results.items():
        o = by_id[tid]
        f = matched_finding.get(tid)
        if f is None:
            continue
        if f.volume_mm3 is not None and o.volume_mm3 > 0:
            r.volume_found_mm3 = float(f.volume_mm3)
            r.volume_error_pct = round(100.0 * (f.volume_mm3 - o.volume_mm3) / o.volume_mm3, 2)
        if o.type == "calcification":
            r.shape_found = f.shape
            if o.shape is not None and f.shape is not None:
                r.shape_agree = _norm_shape(f.shape) == _norm_shape(o.shape)
        r.kind_found = f.kind
        if o.type == "lesion":
            found_cyst = f.kind == "cyst" or f.density == "cystic"
            r.kind_agree = found_cyst == (o.expected_kind == "cyst")
        else:
            r.kind_agree = True
        r.lobe_found = f.lobe
        r.relation_found = f.relation
        if o.parent is not None:
            pf = matched_finding.get(o.parent)
            r.parent_agree = pf is not None and f.parent_id is not None and f.parent_id == pf.id
        if tl is not None and rl is not None and f.label is not None:
            r.dice = _dice(tl, rl, o, t, f)
    for typ, key in (("calcification", "calcifications"), ("lesion", "lesions"), ("duct", "ducts")):
        kr = kind_results[typ]
        rs = [r for r in results.values() if r.type == typ]
        errs = [r.volume_error_pct for r in rs if r.volume_error_pct is not None]
        if errs:
            kr.median_volume_error_pct = round(float(np.median(errs)), 2)
            kr.median_abs_volume_error_pct = round(float(np.median(np.abs(errs))), 2)
        dices = [r.dice for r in rs if r.dice is not None]
        if dices:
            kr.mean_dice = round(float(np.mean(dices)), 4)

    def frac(vals: list[bool | None]) -> float | None:
        v = [x for x in vals if x is not None]
        return round(sum(v) / len(v), 4) if v else None

    rs = list(results.values())
    dist_found = a.calcification_pattern.distribution if a.calcification_pattern else None
    duct_found = any(f.kind == "duct_dilatation" for f in a.findings)
    sc = Score(
        preset=t.preset,
        seed=t.seed,
        phase_truth=t.phase,
        phase_found=a.phase.phase.value if a.phase else None,
        calcifications=kind_results["calcification"],
        lesions=kind_results["lesion"],
        ducts=kind_results["duct"],
        false_positives_per_scan=len(fps),
        shape_agreement=frac([r.shape_agree for r in rs if r.type == "calcification"]),
        cyst_solid_agreement=frac([r.kind_agree for r in rs if r.type == "lesion"]),
        lobe_agreement=frac([None if r.lobe_found is None else (r.lobe_found == r.lobe_truth or (r.lobe_found == "caudate" and r.lobe_truth == "right")) for r in rs]),
        parent_agreement=frac([r.parent_agree for r in rs]),
        distribution_truth=t.calcification_distribution,
        distribution_found=dist_found,
        distribution_agree=None if (t.calcification_distribution is None and dist_found is None) else dist_found == t.calcification_distribution,
        duct_dilatation_truth=t.has_duct_dilatation,
        duct_dilatation_found=duct_found,
        objects=sorted(rs, key=lambda r: [o.id for o in t.objects].index(r.truth_id)),
        false_positives=fps,
    )
    sc.summary = _summary(sc)
    return sc


def _fid(f: Finding) -> str:
    return f.id if f.id is not None else f"finding@{id(f)}"


def _match_kind(objs: list[TruthObject], finds: list[Finding], min_r: float) -> tuple[list[ObjectResult], list[FalsePositive], int]:
    res = []
    for o in objs:
        res.append(
            ObjectResult(
                truth_id=o.id, type=o.type, subtype=o.subtype, size_mm=o.size_mm, size_band=size_band(o.size_mm),
                match_radius_mm=max(min_r, o.size_mm / 2), matched=False, volume_truth_mm3=o.volume_mm3,
                shape_truth=o.shape, kind_truth=o.expected_kind, lobe_truth=o.lobe, relation_truth=o.relation,
            )
        )
    cents = [_centroid(f) for f in finds]
    usable = [i for i, c in enumerate(cents) if c is not None]
    fps: list[FalsePositive] = []
    if not objs:
        for i, f in enumerate(finds):
            fps.append(FalsePositive(finding_id=f.id, kind=f.kind, centroid_mm=f.centroid_mm, size_mm=_finding_size(f)))
        return res, fps, 0
    T = np.array([o.centre_mm for o in objs], float)
    radii = np.array([r.match_radius_mm for r in res])
    if usable:
        F_ = np.array([cents[i] for i in usable])
        d = np.linalg.norm(F_[:, None, :] - T[None, :, :], axis=-1)  # (nf, nt)
        allowed = d <= radii[None, :]
        big = 1e6
        cost = np.where(allowed, d, big)
        rows, cols = linear_sum_assignment(cost)
        used = set()
        for r_, c_ in zip(rows, cols):
            if allowed[r_, c_]:
                fi = usable[r_]
                res[c_].matched = True
                res[c_].finding_id = _fid(finds[fi])
                res[c_].distance_mm = round(float(d[r_, c_]), 3)
                used.add(fi)
    else:
        d = np.zeros((0, len(objs)))
        allowed = d.astype(bool)
    dup = 0
    for k, fi in enumerate(usable):
        if fi in used:
            continue
        inside = np.nonzero(allowed[k])[0]
        if inside.size:
            j = int(inside[np.argmin(d[k, inside])])
            res[j].duplicates.append(_fid(finds[fi]))
            dup += 1
        else:
            f = finds[fi]
            fps.append(FalsePositive(finding_id=f.id, kind=f.kind, centroid_mm=f.centroid_mm, size_mm=_finding_size(f), nearest_truth_mm=round(float(d[k].min()), 2)))
    for i, f in enumerate(finds):
        if cents[i] is None:  # a finding without position cannot be matched
            fps.append(FalsePositive(finding_id=f.id, kind=f.kind, centroid_mm=None, size_mm=_finding_size(f)))
    return res, fps, dup


def _kind_summary(res: list[ObjectResult], n_fp: int, n_dup: int) -> KindResult:
    bands = []
    for name, _, _ in SIZE_BANDS:
        rs = [r for r in res if r.size_band == name]
        n_found = sum(r.matched for r in rs)
        bands.append(BandResult(band=name, n_truth=len(rs), n_found=n_found, sensitivity=round(n_found / len(rs), 4) if rs else None))
    n = len(res)
    found = sum(r.matched for r in res)
    return KindResult(n_truth=n, n_found=found, sensitivity=round(found / n, 4) if n else None, by_size=bands, false_positives=n_fp, duplicates=n_dup)


def _dice(tl: np.ndarray, rl: np.ndarray, o: TruthObject, t: Truth, f: Finding) -> float:
    labels = [o.label]
    if o.type in ("lesion", "duct"):
        labels += [t.by_id(c).label for c in o.children]
    tm = np.isin(tl, labels)
    fm = rl == f.label
    if f.kind in ("lesion", "cyst", "duct_dilatation"):
        # the result map draws calcifications over lesions and ducts; count child calcifications in
        kids = [g for g in f.children]
        if kids:
            fm = fm | np.isin(rl, [1000 + int(k.split("-")[-1]) for k in kids if k.startswith("calc-") and k.split("-")[-1].isdigit()])
    inter = float(np.logical_and(tm, fm).sum())
    tot = float(tm.sum() + fm.sum())
    return round(2.0 * inter / tot, 4) if tot > 0 else 0.0


def _summary(sc: Score) -> str:
    def part(name: str, k: KindResult) -> str:
        if k.n_truth == 0 and k.false_positives == 0:
            return f"{name}: none expected, none found"
        sens = "n/a" if k.sensitivity is None else f"{100 * k.sensitivity:.0f}%"
        return f"{name}: {k.n_found}/{k.n_truth} found ({sens}), {k.false_positives} false positive(s)"

    bits = [part("calcifications", sc.calcifications), part("lesions", sc.lesions), part("ducts", sc.ducts)]
    if sc.distribution_truth or sc.distribution_found:
        bits.append(f"distribution {sc.distribution_found or 'none'} (truth {sc.distribution_truth or 'none'})")
    return "; ".join(bits)

