"""Helpers shared by the report writers: label table, finding masks, stable identifiers."""

from __future__ import annotations

import hashlib
import json
import uuid

import numpy as np

from ..model import (
    CALC_LABEL_BASE,
    LABEL_DUCT,
    LABEL_LIVER,
    LESION_LABEL_BASE,
    Analysis,
    Finding,
    Masks,
    Volume,
)

__all__ = [
    "label_table",
    "software_version",
    "present_labels",
    "label_name",
    "finding_mask",
    "finding_bbox",
    "content_digest",
    "analysis_digest",
    "stable_uuid",
    "fmt",
]

KIND_WORDS = {
    "calcification": "calcification",
    "lesion": "lesion",
    "cyst": "cyst",
    "duct_dilatation": "dilated bile duct",
    "duct_stone": "bile duct stone",
}


def label_name(value: int, analysis: Analysis | None = None) -> str:
    """Name of a value of ``segmentation.nii.gz`` (finding id for findings)."""
    if value == 0:
        return "background"
    if value == LABEL_LIVER:
        return "liver"
    if value == LABEL_DUCT:
        return "bile_duct_dilated"
    if analysis is not None:
        for f in analysis.findings:
            if f.label == value and f.id and value != LABEL_DUCT:
                return f.id
    if value > CALC_LABEL_BASE:
        return f"calc-{value - CALC_LABEL_BASE:03d}"
    if value > LESION_LABEL_BASE:
        return f"lesion-{value - LESION_LABEL_BASE:03d}"
    return f"label-{value}"


def present_labels(label_map: np.ndarray) -> list[int]:
    """Sorted non-zero values of an unsigned label map (a histogram: linear time, unlike ``np.unique``)."""
    lm = np.asarray(label_map)
    if lm.size == 0:
        return []
    flat = lm.reshape(lm.shape[0], -1) if lm.ndim > 1 else lm.reshape(1, -1)
    counts = np.zeros(int(lm.max()) + 1, dtype=np.int64)
    step = max(1, (1 << 22) // max(1, flat.shape[1]))  # about 4 M voxels per chunk
    for start in range(0, flat.shape[0], step):
        chunk = flat[start:start + step].ravel()
        counts += np.bincount(chunk, minlength=counts.size)
    return [int(v) for v in np.flatnonzero(counts) if v != 0]


def label_table(analysis: Analysis, label_map: np.ndarray | None = None) -> dict[str, str]:
    """Label id (as a string) -> name for every value present in ``label_map``.

    Without ``label_map`` the table lists liver, ducts and every finding's label.
    Keys are ordered by numeric value. Names already recorded in
    ``analysis.labels`` are kept, so the colour table and ``analysis.json`` agree.
    """
    if label_map is not None:
        values = present_labels(label_map)
    else:
        values = {LABEL_LIVER, LABEL_DUCT}
        values.update(int(f.label) for f in analysis.findings if f.label is not None)
        values = sorted(values)
    return {str(v): analysis.labels.get(str(v)) or label_name(v, analysis) for v in values}


def software_version(analysis: Analysis) -> str:
    """calcscope's version as recorded in ``analysis.software`` (``version`` or ``calcscope`` key)."""
    sw = analysis.software
    v = sw.get("version") if sw.get("name", "calcscope") == "calcscope" else None
    v = v or sw.get("calcscope")
    if not v:
        from .. import __version__

        v = __version__
    return str(v)


def finding_mask(finding: Finding, masks: Masks) -> np.ndarray | None:
    """Boolean mask of one finding on the analysis grid, or None when it has none.

    Lesions and calcifications come from their own label arrays (so a lesion keeps
    the voxels its calcifications overwrite in the combined label map); ducts share
    the duct mask.
    """
    lab = finding.label
    if lab is None:
        return None
    if lab > CALC_LABEL_BASE and masks.calcifications is not None:
        m = masks.calcifications == (lab - CALC_LABEL_BASE)
    elif LESION_LABEL_BASE < lab < CALC_LABEL_BASE and masks.lesions is not None:
        m = masks.lesions == (lab - LESION_LABEL_BASE)
    elif lab == LABEL_DUCT and masks.ducts is not None:
        m = masks.ducts.astype(bool)
    else:
        return None
    return m if m.any() else None


def finding_bbox(mask: np.ndarray) -> tuple[slice, slice, slice] | None:
    """Bounding box (z, y, x slices) of a boolean mask, or None when empty."""
    idx = np.nonzero(mask.any(axis=(1, 2)))[0]
    if idx.size == 0:
        return None
    idy = np.nonzero(mask.any(axis=(0, 2)))[0]
    idx_x = np.nonzero(mask.any(axis=(0, 1)))[0]
    return (
        slice(int(idx[0]), int(idx[-1]) + 1),
        slice(int(idy[0]), int(idy[-1]) + 1),
        slice(int(idx_x[0]), int(idx_x[-1]) + 1),
    )


def content_digest(analysis: Analysis, volume: Volume, label_map: np.ndarray) -> str:
    """SHA-256 (hex) of what the outputs say: the input's identity, findings and label map.

    The timestamp (``created``) and the run timings are left out, so the identifiers
    derived from the digest stay the same from one run to the next.
    """
    h = hashlib.sha256()
    ident = {
        "series_uid": volume.series_uid,
        "study_uid": volume.study_uid,
        "instance_uids": list(volume.instance_uids),
        "shape": list(volume.shape),
        "spacing": list(volume.spacing_zyx),
        "origin": list(volume.origin_lps),
        "direction": list(volume.direction),
        "input_sha256": analysis.input.sha256 if analysis.input else None,
    }
    h.update(json.dumps(ident, sort_keys=True).encode())
    dump = analysis.model_dump(mode="json", exclude={"created", "timings_s"})
    h.update(json.dumps(dump, sort_keys=True).encode())
    h.update(np.ascontiguousarray(label_map, dtype=np.uint16).tobytes())
    return h.hexdigest()


def analysis_digest(analysis: Analysis) -> str:
    """SHA-256 (hex) of the analysis without ``created`` and ``timings_s``."""
    dump = analysis.model_dump(mode="json", exclude={"created", "timings_s"})
    return hashlib.sha256(json.dumps(dump, sort_keys=True).encode()).hexdigest()


_NAMESPACE = uuid.UUID("6f1c1b8e-4c1f-5b7a-9d57-63616c6373cf")


def stable_uuid(*parts: str) -> str:
    """A name-based (version 5) UUID string from ``parts``: identical input, identical UUID."""
    return str(uuid.uuid5(_NAMESPACE, "|".join(parts)))


def fmt(value: float | None, digits: int = 1, unit: str = "") -> str:
    """Format a number for people: fixed decimals, an en dash when missing."""
    if value is None:
        return "\u2013"
    text = f"{value:.{digits}f}"
    return f"{text} {unit}".rstrip() if unit else text
