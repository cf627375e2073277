"""Measurements of dilated intrahepatic bile ducts (one finding per connected duct tree)."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage as ndi

from ..detect._duct import duct_components, measure_duct_tree
from ..detect._lesion import bbox_slices
from ..model import LABEL_DUCT, Finding, Volume
from ._geometry import LOBE_NAMES, lobe_of

__all__ = ["describe_ducts"]


def describe_ducts(volume: Volume, mask: np.ndarray, *, liver: Any, lobes: np.ndarray | None) -> list[Finding]:
    """Describe each connected tree of a dilated-duct mask.

    Parameters
    ----------
    volume: Volume
        CT in HU.
    mask: (Z, Y, X) bool ndarray
        Dilated intrahepatic ducts (from :func:`calcscope.detect.find_ducts`).
    liver: bool ndarray or object with ``mask``
        Liver mask (kept for the stage contract; the lobe map carries the location).
    lobes: uint8 ndarray or None
        Lobe map (1 right, 2 left, 3 caudate).

    Returns
    -------
    list of Finding
        Kind ``"duct_dilatation"``, ``id`` "duct-%03d" numbered as
        :func:`calcscope.detect.duct_components` numbers the trees, ``label`` 2.
        ``size_mm`` is the tree's largest calibre (95th percentile of the diameter along
        the centre line), ``measurements`` hold ``diameter_mm`` (mean calibre),
        ``max_diameter_mm``, ``length_mm``, ``branch_points`` and ``hu_mean``. A duct
        holding a calcification (a stone) gains the sign ``duct_dilatation_upstream`` in
        :func:`calcscope.describe.associate`.
    """
    del liver
    mask = np.asarray(mask, bool)
    if not mask.any():
        return []
    labels = duct_components(mask)
    sp = volume.spacing_zyx
    crop = bbox_slices(labels > 0)
    off = [c.start for c in crop]
    out = []
    for k, box in enumerate(ndi.find_objects(labels[crop]), start=1):
        if box is None:
            continue
        box = tuple(slice(b.start + o, b.stop + o) for b, o in zip(box, off))
        m = labels[box] == k
        tree = measure_duct_tree(m, sp)
        coords = np.argwhere(m) + np.asarray([b.start for b in box])
        centroid = coords.mean(axis=0)
        lobe = LOBE_NAMES.get(lobe_of(lobes, coords, sp))
        if lobes is not None:
            vals = lobes[tuple(coords.T)]
            both = (vals == 1).mean() >= 0.2 and (vals == 2).mean() >= 0.2
        else:
            both = False
        location = ["both_lobes"] if both else ([f"{lobe}_lobe"] if lobe in ("right", "left") else [])
        hu = volume.array[box][m].astype(np.float32)
        out.append(
            Finding(
                id=f"duct-{k:03d}",
                kind="duct_dilatation",
                count=1,
                size_mm=round(max(tree["max_diameter_mm"], tree["diameter_mm"]), 2),
                hu=round(float(hu.mean()), 1),
                location=location,
                density="hypodense",
                label=LABEL_DUCT,
                centroid_mm=tuple(round(float(c), 3) for c in volume.voxel_to_mm(centroid)),
                centroid_voxel=tuple(round(float(c), 3) for c in centroid),
                volume_mm3=round(float(m.sum()) * volume.voxel_volume_mm3, 2),
                hu_mean=round(float(hu.mean()), 1),
                hu_sd=round(float(hu.std()), 1),
                lobe=lobe,
                measurements={
                    "diameter_mm": round(tree["diameter_mm"], 2),
                    "max_diameter_mm": round(tree["max_diameter_mm"], 2),
                    "length_mm": round(tree["length_mm"], 1),
                    "branch_points": float(tree["branch_points"]),
                },
            )
        )
    return out
