"""User-supplied liver masks: binary masks, label maps, TotalSegmentator outputs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import InputNotFoundError, MaskError
from ..model import Volume

__all__ = ["load_user_liver_mask", "check_liver_mask", "TOTALSEG_LIVER_LABEL"]

#: liver label in TotalSegmentator's multilabel output (class maps "total" and "total_v1")
TOTALSEG_LIVER_LABEL = 5
_MIN_LABELS_FOR_TOTALSEG = 4
_MAX_LIVER_ML = 6000.0
_MIN_LIVER_ML = 5.0
_MIN_FULL_LIVER_ML = 200.0


def _mask_file(path: Path) -> tuple[Path, str]:
    """The file to read and how it was found (a TotalSegmentator per-class folder is accepted)."""
    if path.is_dir():
        for name in ("liver.nii.gz", "liver.nii", "liver.nrrd"):
            if (path / name).is_file():
                return path / name, f"TotalSegmentator per-class folder ({name})"
        raise MaskError(
            "the mask folder holds no liver.nii.gz",
            path=str(path),
            hint="give a mask file, or the folder TotalSegmentator wrote its per-class masks to",
        )
    return path, "mask file"


def load_user_liver_mask(path: str | os.PathLike, volume: Volume, *, label: int | None = None) -> np.ndarray:
    """Load a liver mask given by the user and put it on the CT's grid.

    Parameters
    ----------
    path: str or PathLike
        A binary mask or label map (NIfTI/NRRD/MHA), TotalSegmentator's multilabel file (liver = 5,
        recognised by its many labels including 5), or TotalSegmentator's per-class folder
        (``liver.nii.gz`` inside).
    volume: Volume
        The CT; the mask is resampled onto its grid by physical (LPS) position (nearest neighbour).
    label: int, optional
        Value of the liver in a label map.

    Returns
    -------
    ndarray of bool, (Z, Y, X)

    Raises
    ------
    InputNotFoundError
        The path does not exist.
    MaskError
        Empty mask, label absent or ambiguous, no overlap with the CT, implausible liver volume.
    """
    import SimpleITK as sitk

    from ..io import load_mask_like

    p = Path(path)
    if not p.exists():
        raise InputNotFoundError("the liver mask path does not exist", path=str(p), hint="check the --liver-mask argument")
    f, how = _mask_file(p)
    try:
        raw_img = sitk.ReadImage(str(f))
    except RuntimeError as exc:
        raise MaskError(f"the liver mask could not be read ({str(exc).strip().splitlines()[-1]})", path=str(f)) from exc
    raw = sitk.GetArrayViewFromImage(raw_img)
    values = np.unique(raw)
    nonzero = values[values != 0]
    if nonzero.size == 0:
        raise MaskError("the liver mask is empty (all voxels are 0)", path=str(f), hint="check that the right file was given")
    if label is not None:
        if label not in set(int(v) for v in nonzero):
            raise MaskError(
                f"label {label} does not occur in the mask (labels present: {_fmt(nonzero)})",
                path=str(f),
                hint="choose one of the labels present with --liver-label",
            )
        liver_value: int | None = int(label)
    elif nonzero.size == 1:
        liver_value = None  # binary mask (any non-zero value)
    elif nonzero.size >= _MIN_LABELS_FOR_TOTALSEG and TOTALSEG_LIVER_LABEL in set(int(v) for v in nonzero):
        liver_value = TOTALSEG_LIVER_LABEL
        how = "TotalSegmentator multilabel file (liver = 5)"
    else:
        raise MaskError(
            f"the mask is a label map with {nonzero.size} labels ({_fmt(nonzero)}) and it is not clear which is the liver",
            path=str(f),
            hint="give the liver's value with --liver-label N",
        )
    raw_sel = (raw != 0) if liver_value is None else (raw == liver_value)
    raw_ml = float(raw_sel.sum()) * float(np.prod(raw_img.GetSpacing())) / 1000.0
    resampled = load_mask_like(f, volume)
    mask = (resampled != 0) if liver_value is None else (resampled == liver_value)
    if not mask.any():
        raise MaskError(
            f"the liver mask ({raw_ml:.0f} mL) does not overlap the CT's field of view",
            path=str(f),
            hint="the mask must belong to this CT (same patient position, frame of reference)",
        )
    check_liver_mask(mask, volume, source=str(f))
    return mask


def check_liver_mask(mask: np.ndarray, volume: Volume, *, source: str | None = None) -> float:
    """Refuse a liver mask whose volume is implausible; returns its volume in mL.

    Refused: below 5 mL or above 6 L in any case, and below 200 mL when the mask lies wholly
    inside the scan (it touches neither the first nor the last slice), i.e. the liver is
    fully covered. Partial coverage (a few slices) is accepted down to 5 mL.
    """
    ml = float(mask.sum()) * volume.voxel_volume_mm3 / 1000.0
    if ml > _MAX_LIVER_ML:
        raise MaskError(f"the liver mask measures {ml:.0f} mL, more than any plausible liver (6 L)", path=source,
                        hint="check that the mask is a liver mask and that --liver-label is right")
    if ml < _MIN_LIVER_ML:
        raise MaskError(f"the liver mask measures {ml:.1f} mL on this CT, too small to be a liver", path=source,
                        hint="check that the mask belongs to this CT")
    zs = np.nonzero(mask.any(axis=(1, 2)))[0]
    fully_covered = zs.min() > 0 and zs.max() < mask.shape[0] - 1
    if fully_covered and ml < _MIN_FULL_LIVER_ML:
        raise MaskError(
            f"the liver mask measures {ml:.0f} mL although it lies wholly inside the scan; a whole liver is rarely under 200 mL",
            path=source,
            hint="check that the mask is a whole-liver mask (not a lesion or a segment)",
        )
    return ml


def _fmt(vals: np.ndarray, n: int = 12) -> str:
    s = ", ".join(str(int(v)) for v in vals[:n])
    return s + (", ..." if vals.size > n else "")
