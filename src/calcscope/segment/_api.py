"""Public entry point: :func:`segment_liver` and its result."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import UsageError
from ..model import LiverSummary, Volume
from ._grid import _bbox
from ._classical import ClassicalParams, segment_classical
from ._lobes import split_lobes
from ._totalseg import run_totalsegmentator
from ._user import check_liver_mask, load_user_liver_mask

__all__ = ["LiverSegmentation", "segment_liver", "capsular_margin"]

_METHODS = ("auto", "classical", "totalsegmentator")


@dataclass(eq=False)
class LiverSegmentation:
    """Liver segmentation on the CT grid.

    Attributes
    ----------
    mask: (Z, Y, X) bool
        Liver with vessels, lesions and calcifications inside it.
    margin: (Z, Y, X) bool
        Shell of ``capsular_margin_mm`` outside ``mask``, inside the body and not in lung air.
    lobes: (Z, Y, X) uint8
        0 outside, 1 right lobe, 2 left lobe.
    summary: LiverSummary
    info: dict
        Measured figures of the method (liver intensity mode, window...).
    """

    mask: np.ndarray
    margin: np.ndarray
    lobes: np.ndarray
    summary: LiverSummary
    info: dict[str, Any] = field(default_factory=dict)


def capsular_margin(volume: Volume, mask: np.ndarray, margin_mm: float, *, air_threshold_hu: float = -500.0) -> np.ndarray:
    """Shell up to ``margin_mm`` outside ``mask`` (Euclidean, mm), excluding air and lung.

    Only voxels denser than ``air_threshold_hu`` qualify, so the shell stops at the lung base
    and at the skin. Computed in the mask's bounding box plus the margin.
    """
    out = np.zeros(mask.shape, bool)
    if margin_mm <= 0 or not mask.any():
        return out
    sp = volume.spacing_zyx
    idx = np.nonzero(mask)
    pad = [int(np.ceil(margin_mm / s)) + 1 for s in sp]
    lo = [max(0, int(a.min()) - q) for a, q in zip(idx, pad)]
    hi = [min(n, int(a.max()) + q + 1) for a, q, n in zip(idx, pad, mask.shape)]
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    import SimpleITK as sitk

    sub = sitk.GetImageFromArray(mask[box].astype(np.uint8))
    sub.SetSpacing(volume.spacing_xyz)
    dmap = sitk.SignedMaurerDistanceMap(sub, insideIsPositive=False, squaredDistance=True, useImageSpacing=True)
    dist = sitk.GetArrayViewFromImage(dmap)  # a view: dmap must stay alive while it is used
    shell = (dist > 0) & (dist <= margin_mm**2) & (volume.array[box] > air_threshold_hu)
    out[box] = shell
    del dist, dmap
    return out


def segment_liver(
    volume: Volume,
    *,
    method: str = "auto",
    user_mask: str | os.PathLike | np.ndarray | None = None,
    user_label: int | None = None,
    capsular_margin_mm: float = 3.0,
    params: ClassicalParams | None = None,
) -> LiverSegmentation:
    """Segment the liver (or take the user's mask) and derive margin, lobes and summary.

    Parameters
    ----------
    volume: Volume
        CT in HU.
    method: {"auto", "classical", "totalsegmentator"}
        "auto" and "classical" run the classical, weight-free recipe; "totalsegmentator" calls
        TotalSegmentator when it and its weights are installed (else DependencyError).
        Ignored when ``user_mask`` is given.
    user_mask: path or bool ndarray, optional
        A liver mask file/folder (see :func:`load_user_liver_mask`) or an array on the CT grid.
    user_label: int, optional
        Liver value in a user label map.
    capsular_margin_mm: float
        Thickness of the capsular margin shell returned as ``margin`` (0 disables it).
    params: ClassicalParams, optional
        Parameters of the classical recipe.

    Returns
    -------
    LiverSegmentation
    """
    if method not in _METHODS:
        raise UsageError(f"unknown liver segmenter {method!r}", hint=f"choose one of {', '.join(_METHODS)}")
    if capsular_margin_mm < 0:
        raise UsageError("the capsular margin must be 0 mm or more")
    notes: list[str] = []
    info: dict[str, Any] = {}
    if user_mask is not None:
        if isinstance(user_mask, np.ndarray):
            if user_mask.shape != volume.shape:
                raise UsageError(f"the liver mask array has shape {user_mask.shape}, the CT {volume.shape}")
            mask = user_mask.astype(bool) if user_label is None else (user_mask == user_label)
            check_liver_mask(mask, volume, source=None)
        else:
            mask = load_user_liver_mask(user_mask, volume, label=user_label)
        method_name = "user_mask"
        notes.append("liver mask supplied by the user")
    elif method == "totalsegmentator":
        mask = run_totalsegmentator(volume)
        method_name = "totalsegmentator"
        notes.append("liver segmented by TotalSegmentator (roi_subset liver)")
    else:
        res = segment_classical(volume, params)
        mask = res.mask
        method_name = "classical"
        notes.extend(res.notes)
        notes.append(
            f"liver intensity mode {res.liver_mode_hu:.0f} HU (spread {res.liver_sigma_hu:.0f} HU); "
            f"candidate window {res.window_hu[0]:.0f} to {res.window_hu[1]:.0f} HU"
        )
        info.update(liver_mode_hu=res.liver_mode_hu, liver_sigma_hu=res.liver_sigma_hu, window_hu=res.window_hu,
                    lungs_found=res.lungs_found)
        zs = np.nonzero(mask.any(axis=(1, 2)))[0]
        if zs.size and (zs.min() == 0 or zs.max() == mask.shape[0] - 1):
            notes.append("the liver reaches the edge of the scan: coverage is partial and its volume is a lower bound")
    margin = capsular_margin(volume, mask, capsular_margin_mm)
    if mask.any():
        lobes, lobe_notes = split_lobes(volume, mask)
        notes.extend(lobe_notes)
    else:
        lobes = np.zeros(mask.shape, np.uint8)
        notes.append("no liver found")
    vml = volume.voxel_volume_mm3 / 1000.0
    box = _bbox(mask, [0, 0, 0])
    vals = volume.array[box][mask[box]] if box is not None else np.zeros(0, np.float32)
    q25, q50, q75 = np.percentile(vals, [25, 50, 75]) if vals.size else (None, None, None)
    lobe_counts = np.bincount(lobes[box][mask[box]], minlength=3) if box is not None else np.zeros(3, int)
    summary = LiverSummary(
        method=method_name,
        volume_ml=round(float(vals.size) * vml, 1),
        hu_median=round(float(q50), 1) if vals.size else None,
        hu_iqr=(round(float(q25), 1), round(float(q75), 1)) if vals.size else None,
        right_lobe_ml=round(float(lobe_counts[1]) * vml, 1),
        left_lobe_ml=round(float(lobe_counts[2]) * vml, 1),
        capsular_margin_mm=float(capsular_margin_mm),
        notes=notes,
    )
    return LiverSegmentation(mask=mask, margin=margin, lobes=lobes, summary=summary, info=info)
