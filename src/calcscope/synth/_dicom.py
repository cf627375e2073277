"""Writing a phantom as a DICOM CT series (deterministic UIDs: same seed, same bytes)."""

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

    Pixel data are stored unsigned with ``RescaleIntercept`` -1024 and ``RescaleSlope`` 1,
    so readers must apply the rescale to get HU. Study, series, frame-of-reference and
    instance UIDs derive from ``key`` (e.g. ``"calcified_metastases-seed7"``), and no
    date or time of writing is stored, so the same key and volume give identical bytes.

    Parameters
    ----------
    volume: Volume
        The CT in HU with identity direction.
    out_dir: path
        Folder to create (must be empty or absent).
    key: str
        Identity of the case; seeds every UID.
    phase: str, optional
        Contrast phase; recorded in ``ContrastBolusAgent``/``SeriesDescription``.

    Returns
    -------
    list of Path, in slice order (inferior to superior).
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

    d = np.asarray(volume.direction, float).reshape(3, 3)
    if not np.allclose(d, np.eye(3)):
        raise ValueError("write_dicom_series writes axial series with identity direction only")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    study = deterministic_uid(key, "study")
    series = deterministic_uid(key, "series")
    frame = deterministic_uid(key, "frame-of-reference")
    arr = np.clip(np.rint(volume.array), -1024, 3071).astype(np.int32) + 1024
    stored = arr.astype(np.uint16)
    sz, sy, sx = volume.spacing_zyx
    ox, oy, oz = volume.origin_lps
    nz, ny, nx = volume.shape
    paths = []
    for k in range(nz):
        sop = deterministic_uid(key, "instance", k)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = sop
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = sop
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = series
        ds.FrameOfReferenceUID = frame
        ds.Modality = "CT"
        ds.Manufacturer = "calcscope"
        ds.ManufacturerModelName = "synthetic phantom"
        ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
        ds.PatientName = "Phantom^Synthetic"
        ds.PatientID = f"SYN-{key}"[:64]
        ds.PatientBirthDate = ""
        ds.PatientSex = "O"
        ds.StudyDate = _DATE
        ds.StudyTime = _TIME
        ds.SeriesDate = _DATE
        ds.SeriesTime = _TIME
        ds.ContentDate = _DATE
        ds.ContentTime = _TIME
        ds.AccessionNumber = ""
        ds.ReferringPhysicianName = ""
        ds.StudyID = "1"
        ds.SeriesNumber = 1
        ds.InstanceNumber = k + 1
        ds.StudyDescription = "calcscope synthetic abdomen"
        ds.SeriesDescription = description if phase is None else f"{description} ({phase})"
        ds.BodyPartExamined = "ABDOMEN"
        ds.KVP = 120
        ds.PatientPosition = "HFS"
        if phase is not None:
            ds.ContrastBolusAgent = "" if phase == "non_contrast" else "IODINATED CONTRAST"
        ds.ImagePositionPatient = [f"{ox:.6f}", f"{oy:.6f}", f"{oz + k * sz:.6f}"]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.SliceLocation = f"{oz + k * sz:.6f}"
        ds.SliceThickness = f"{sz:.6f}"
        ds.SpacingBetweenSlices = f"{sz:.6f}"
        ds.PixelSpacing = [f"{sy:.6f}", f"{sx:.6f}"]  # row spacing (y), column spacing (x)
        ds.Rows = ny
        ds.Columns = nx
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 12
        ds.HighBit = 11
        ds.PixelRepresentation = 0
        ds.RescaleIntercept = "-1024"
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
        ds.WindowCenter = "50"
        ds.WindowWidth = "400"
        ds.BurnedInAnnotation = "NO"
        ds.PixelData = np.ascontiguousarray(stored[k]).tobytes()
        p = out / f"IM{k + 1:04d}.dcm"
        ds.save_as(p, enforce_file_format=True)
        paths.append(p)
    return paths
