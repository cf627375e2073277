"""One side of a comparison: a CT analysed on the fly or an existing calcscope output folder.

:func:`load_study` accepts either

* **an analysed-study folder**, written by ``calcscope analyze --out DIR``: it must
  hold ``analysis.json`` and ``segmentation.nii.gz``. Findings come from
  ``analysis.json``; the liver and finding masks from the label map (every
  non-zero label lies in the liver: 1 liver, 2 ducts, 100+n lesions, 1000+n
  calcifications). The CT itself is looked up at ``analysis.input.path`` (as
  written, then relative to the folder, to the folder's parent and to the working
  directory) and used only if it is found and lies on the segmentation's grid.
  When it is absent, registration works on the liver masks (distance maps) and the
  HTML report shows label-map crops instead of CT crops;
* **a CT** (file, DICOM folder or zip): it is analysed with
  :func:`calcscope.pipeline.analyze` and both the CT and the masks are kept.
"""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..errors import CorruptInputError, InputNotFoundError, UnsupportedFormatError
from ..model import Analysis, Finding, Volume

__all__ = ["Study", "load_study", "study_from_arrays", "ANALYSIS_FILE", "SEGMENTATION_FILE"]

ANALYSIS_FILE = "analysis.json"
SEGMENTATION_FILE = "segmentation.nii.gz"


@dataclass(eq=False)
class Study:
    """A study ready to be compared.

    Attributes
    ----------
    path: str
        What the user gave (file or folder), as given.
    kind: {"ct", "analysis_folder", "arrays"}
    analysis: Analysis
        Findings and provenance of the study.
    labels: Volume
        The label map (uint16, conventions of ``segmentation.nii.gz``) with its grid.
    ct: Volume or None
        The CT in HU on the same grid, when available.
    date: datetime.date or None
    notes: list of str
        What happened while loading (e.g. CT not found).
    """

    path: str
    kind: Literal["ct", "analysis_folder", "arrays"]
    analysis: Analysis
    labels: Volume
    ct: Volume | None = None
    date: _dt.date | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def findings(self) -> list[Finding]:
        return list(self.analysis.findings)

    @property
    def liver_mask(self) -> np.ndarray:
        """Liver mask (bool): every labelled voxel lies in the liver or its capsular margin."""
        return self.labels.array > 0


def study_from_arrays(
    analysis: Analysis,
    labels: np.ndarray,
    geometry: Volume,
    *,
    ct: Volume | None = None,
    date: _dt.date | None = None,
    path: str = "<memory>",
) -> Study:
    """Build a :class:`Study` from in-memory results (e.g. an ``AnalysisRun``)."""
    lab = geometry.with_array(np.asarray(labels).astype(np.uint16, copy=False))
    return Study(path=path, kind="arrays", analysis=analysis, labels=lab, ct=ct, date=date)


def _is_analysis_folder(p: Path) -> bool:
    return p.is_dir() and (p / ANALYSIS_FILE).is_file()


def _ct_candidates(folder: Path, recorded: str) -> list[Path]:
    rp = Path(recorded)
    if rp.is_absolute():
        return [rp]
    return [folder / rp, folder.parent / rp, Path(os.getcwd()) / rp]


def _same_grid(a: Volume, b: Volume, *, tol_mm: float = 1e-3) -> bool:
    return (
        a.shape == b.shape
        and np.allclose(a.spacing_zyx, b.spacing_zyx, atol=tol_mm)
        and np.allclose(a.origin_lps, b.origin_lps, atol=max(tol_mm, 0.01 * min(a.spacing_zyx)))
        and np.allclose(a.direction, b.direction, atol=1e-4)
    )


def _load_folder(folder: Path, *, date: _dt.date | None, load_ct: bool) -> Study:
    import SimpleITK as sitk
    from pydantic import ValidationError

    try:
        analysis = Analysis.model_validate_json((folder / ANALYSIS_FILE).read_text(encoding="utf-8"))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise CorruptInputError(
            f"analysis.json is not a calcscope analysis (field '{where}': {first['msg']})",
            path=str(folder / ANALYSIS_FILE),
            hint="give a folder written by 'calcscope analyze --out', or the CT itself",
        ) from exc
    seg_path = folder / SEGMENTATION_FILE
    if not seg_path.is_file():
        raise UnsupportedFormatError(
            "the analysis folder has no segmentation.nii.gz, which the comparison needs for registration",
            path=str(folder),
            hint="re-run 'calcscope analyze' on the CT, or give the CT itself",
        )
    try:
        seg_img = sitk.ReadImage(str(seg_path))
    except RuntimeError as exc:
        raise CorruptInputError("segmentation.nii.gz cannot be read", path=str(seg_path)) from exc
    labels = Volume.from_sitk(seg_img, source=SEGMENTATION_FILE)
    labels = labels.with_array(labels.array.astype(np.uint16, copy=False))
    study = Study(path=str(folder), kind="analysis_folder", analysis=analysis, labels=labels, date=date)
    if not load_ct:
        study.notes.append("CT not loaded (not requested); registration on liver masks")
        return study
    recorded = analysis.input.path if analysis.input else None
    if not recorded:
        study.notes.append("analysis.json records no input CT; registration on liver masks")
        return study
    from ..io import load_ct as _load_ct

    for cand in _ct_candidates(folder, recorded):
        if not cand.exists():
            continue
        try:
            ct = _load_ct(cand)
        except Exception as exc:  # unreadable CT: fall back to the masks, say so
            study.notes.append(f"CT '{recorded}' found but not readable ({type(exc).__name__}); registration on liver masks")
            return study
        if _same_grid(ct, labels):
            study.ct = ct
            return study
        study.notes.append(f"CT '{recorded}' found but not on the segmentation's grid; registration on liver masks")
        return study
    study.notes.append(f"CT '{recorded}' not found; registration on liver masks")
    return study


def load_study(
    path: str | os.PathLike,
    *,
    date: _dt.date | None = None,
    load_ct: bool = True,
    analyze_options: dict[str, Any] | None = None,
) -> Study:
    """Load one side of a comparison.

    Parameters
    ----------
    path: str or PathLike
        An analysed-study folder (``analysis.json`` + ``segmentation.nii.gz``) or a CT
        that :func:`calcscope.pipeline.analyze` can read.
    date: datetime.date, optional
        Acquisition date, for intervals and doubling times.
    load_ct: bool
        For a folder: look for and load the CT it was made from.
    analyze_options: dict, optional
        Keyword options passed to :func:`calcscope.pipeline.analyze` for a CT.

    Returns
    -------
    Study

    Raises
    ------
    InputNotFoundError
        The path does not exist.
    UnsupportedFormatError, CorruptInputError
        A folder with analysis.json but no readable segmentation / a damaged analysis.json.
    """
    p = Path(path)
    if not p.exists():
        raise InputNotFoundError(
            "the study path does not exist", path=str(p), hint="give a CT or a folder written by 'calcscope analyze --out'"
        )
    if _is_analysis_folder(p):
        return _load_folder(p, date=date, load_ct=load_ct)
    from ..pipeline import analyze

    run = analyze(p, **(analyze_options or {}))
    labels = run.masks.label_map()
    study = study_from_arrays(run.analysis, labels, run.volume, ct=run.volume, date=date, path=str(p))
    study.kind = "ct"
    return study
