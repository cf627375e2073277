"""Writing a phantom as a DICOM CT series (deterministic UIDs: same key, same bytes).

A thin wrapper over :func:`calcscope.io.save_dicom_series` (the one DICOM CT writer of
calcscope): it derives every UID from a key and adds the phantom's descriptive header.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..model import Volume

__all__ = ["write_dicom_series", "deterministic_uid"]

_DATE = "20000101"
_TIME = "000000"


def deterministic_uid(*parts: object) -> str:
    """A DICOM UID derived (SHA-512, pydicom's root) from the given parts only."""
    from pydicom.uid import generate_uid

    return str(generate_uid(entropy_srcs=["calcscope.synth", *[str(p) for p in parts]]))


def write_dicom_series(
    volume: Volume,
    out_dir: str | os.PathLike,
    *,
    key: str,
    description: str = "calcscope synthetic CT",
    phase: str | None = None,
) -> list[Path]:
    """Write ``volume`` as one axial CT series, one file per slice (``IM0001.dcm``, ...).

    HU are clipped to [-1024, 3071] and stored unsigned with ``RescaleIntercept`` -1024
    and ``RescaleSlope`` 1, so readers must apply the rescale to get HU. Study, series,
    frame-of-reference and instance UIDs derive from ``key`` (e.g.
    ``"calcified_metastases-seed7"``), and no date or time of writing is stored, so the
    same key and volume give identical bytes.

    Parameters
    ----------
    volume: Volume
        The CT in HU with identity direction.
    out_dir: path
        Folder to create (must be empty or absent).
    key: str
        Identity of the case; seeds every UID.
    description: str
        SeriesDescription (the phase is appended in brackets).
    phase: str, optional
        Contrast phase; recorded in ``ContrastBolusAgent``/``SeriesDescription``.

    Returns
    -------
    list of Path, in slice order (inferior to superior).
    """
    from ..io import save_dicom_series

    d = np.asarray(volume.direction, float).reshape(3, 3)
    if not np.allclose(d, np.eye(3)):
        raise ValueError("write_dicom_series writes axial series with identity direction only")
    clipped = volume.with_array(np.clip(np.rint(volume.array), -1024, 3071).astype(np.int16))
    sz = float(volume.spacing_zyx[0])
    extra: dict[str, object] = {
        "PatientName": "Phantom^Synthetic",
        "PatientID": f"SYN-{key}"[:64],
        "PatientBirthDate": "",
        "PatientSex": "O",
        "StudyDate": _DATE,
        "StudyTime": _TIME,
        "SeriesDate": _DATE,
        "SeriesTime": _TIME,
        "ContentDate": _DATE,
        "ContentTime": _TIME,
        "AccessionNumber": "",
        "ReferringPhysicianName": "",
        "StudyID": "1",
        "StudyDescription": "calcscope synthetic abdomen",
        "ManufacturerModelName": "synthetic phantom",
        "BodyPartExamined": "ABDOMEN",
        "KVP": 120,
        "PatientPosition": "HFS",
        "SpacingBetweenSlices": f"{sz:.6f}",
        "WindowCenter": "50",
        "WindowWidth": "400",
        "BurnedInAnnotation": "NO",
    }
    thickness = volume.meta.get("slice_thickness_mm")
    if thickness is not None:
        extra["SliceThickness"] = f"{float(thickness):.6f}"  # may exceed the spacing (overlapping slices)
    if phase is not None:
        extra["ContrastBolusAgent"] = "" if phase == "non_contrast" else "IODINATED CONTRAST"
    return save_dicom_series(
        clipped,
        out_dir,
        modality="CT",
        series_description=description if phase is None else f"{description} ({phase})",
        rescale_slope=1.0,
        rescale_intercept=-1024.0,
        series_uid=deterministic_uid(key, "series"),
        study_uid=deterministic_uid(key, "study"),
        frame_of_reference_uid=deterministic_uid(key, "frame-of-reference"),
        series_number=1,
        file_prefix="IM",
        instance_uids=[deterministic_uid(key, "instance", k) for k in range(volume.shape[0])],
        extra_attributes=extra,
        first_file_number=1,
    )
