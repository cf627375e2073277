"""``segmentation.nii.gz`` (label map on the input grid) and its Slicer colour table."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..model import CALC_LABEL_BASE, LABEL_DUCT, LABEL_LIVER, LESION_LABEL_BASE, Analysis, Masks, Volume
from ._common import label_table

__all__ = ["write_label_map", "label_colour", "colour_table_text"]

_LESION_COLOURS = (
    (230, 97, 1), (178, 24, 43), (214, 96, 77), (153, 52, 4), (240, 59, 32), (189, 0, 38),
)
_CALC_COLOURS = ((255, 255, 0), (255, 215, 0), (255, 250, 150), (238, 232, 105))


def label_colour(value: int) -> tuple[int, int, int, int]:
    """RGBA (0-255) of a label value: liver brown, ducts green, lesions orange-red, calcifications yellow."""
    if value == 0:
        return (0, 0, 0, 0)
    if value == LABEL_LIVER:
        return (221, 130, 101, 255)
    if value == LABEL_DUCT:
        return (0, 145, 30, 255)
    if value > CALC_LABEL_BASE:
        return (*_CALC_COLOURS[(value - CALC_LABEL_BASE - 1) % len(_CALC_COLOURS)], 255)
    if value > LESION_LABEL_BASE:
        return (*_LESION_COLOURS[(value - LESION_LABEL_BASE - 1) % len(_LESION_COLOURS)], 255)
    return (128, 128, 128, 255)


def colour_table_text(table: dict[str, str]) -> str:
    """A 3D Slicer colour table (``.ctbl``): ``id name R G B A`` per line, background first.

    Names must not hold white space (Slicer splits on it); finding ids never do.
    """
    rows = {0: "background", **{int(k): v for k, v in table.items()}}
    lines = [
        "# Color table file segmentation.ctbl (calcscope label map)",
        f"# {len(rows)} values",
    ]
    for value in sorted(rows):
        name = "_".join(rows[value].split())
        r, g, b, a = label_colour(value)
        lines.append(f"{value} {name} {r} {g} {b} {a}")
    return "\n".join(lines) + "\n"


def write_label_map(
    out_dir: str | os.PathLike,
    volume: Volume,
    masks: Masks,
    analysis: Analysis,
    *,
    label_map: np.ndarray | None = None,
) -> list[Path]:
    """Write ``segmentation.nii.gz`` and ``segmentation.ctbl`` into ``out_dir``.

    The label map is :meth:`calcscope.model.Masks.label_map` (uint16) on the grid of
    ``volume`` (same spacing, origin and direction), so it overlays the input CT
    voxel for voxel in Slicer, ITK-SNAP or any NIfTI viewer.

    Returns
    -------
    list of Path
        The two files written.
    """
    import SimpleITK as sitk

    out = Path(out_dir)
    lm = masks.label_map() if label_map is None else label_map
    if lm.shape != volume.shape:
        raise ValueError(f"label map shape {lm.shape} differs from the volume shape {volume.shape}")
    nii = out / "segmentation.nii.gz"
    sitk.WriteImage(volume.to_sitk(lm.astype(np.uint16, copy=False)), str(nii), useCompression=True)
    ctbl = out / "segmentation.ctbl"
    ctbl.write_text(colour_table_text(label_table(analysis, lm)), encoding="utf-8")
    return [nii, ctbl]
