"""Writing a :class:`Volume` as a classic single-frame DICOM CT series with pydicom."""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import OutputError
from ..model import Volume

__all__ = ["save_dicom_series"]


def save_dicom_series(
    volume: Volume,
    folder: str | os.PathLike,
    *,
    modality: str = "CT",
    series_description: str = "calcscope CT",
    rescale_slope: float = 1.0,
    rescale_intercept: float = -1024.0,
    series_uid: str | None = None,
    study_uid: str | None = None,
    frame_of_reference_uid: str | None = None,
    series_number: int = 1,
    pixel_padding_value: int | None = None,
    file_prefix: str = "slice",
    instance_uids: Sequence[str] | None = None,
    extra_attributes: Mapping[str, Any] | None = None,
    first_file_number: int = 0,
) -> list[Path]:
    """Write ``volume`` as one DICOM file per z slice (CT Image Storage, explicit VR little endian).

    Stored values are ``round((HU - rescale_intercept) / rescale_slope)``, unsigned 16-bit
    when they are all non-negative, signed otherwise. Geometry (ImagePositionPatient,
    ImageOrientationPatient, PixelSpacing) is taken from the volume, so that
    :func:`calcscope.io.load_ct` reads back the same array and the same LPS coordinates.

    Parameters
    ----------
    volume: Volume
        The image to write (HU for CT).
    folder: str or PathLike
        Output folder, created if needed.
    modality, series_description, series_number: optional
        Header values.
    rescale_slope, rescale_intercept: float
        RescaleSlope / RescaleIntercept written into every slice.
    series_uid, study_uid, frame_of_reference_uid: str, optional
        UIDs to use; new ones are generated when omitted.
    pixel_padding_value: int, optional
        PixelPaddingValue (stored units) to declare.
    file_prefix: str
        File names are ``{file_prefix}{first_file_number + index:04d}.dcm``.
    instance_uids: sequence of str, optional
        SOPInstanceUID of each slice (one per z slice, in z order); new ones are generated
        when omitted. With all UIDs given, the same volume and arguments write identical bytes
        (no date or time of writing is stored).
    extra_attributes: mapping, optional
        DICOM keyword -> value set on every slice after the defaults (may override them,
        e.g. ``PatientName``); unknown keywords raise ``ValueError``.
    first_file_number: int
        Number of the first file name (0 by default).

    Returns
    -------
    list of Path
        The files written, in z order.
    """
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID, generate_uid

    out = Path(folder)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the DICOM output folder ({exc})", path=str(out)) from exc
    stored = np.round((volume.array.astype(np.float64) - rescale_intercept) / rescale_slope)
    signed = bool(stored.min() < 0) if stored.size else False
    dtype = np.int16 if signed else np.uint16
    info = np.iinfo(dtype)
    if stored.size and (stored.min() < info.min or stored.max() > info.max):
        raise OutputError(
            f"the values do not fit 16-bit stored pixels with slope {rescale_slope:g} and intercept "
            f"{rescale_intercept:g}",
            path=str(out),
        )
    stored = stored.astype(dtype)
    if instance_uids is not None and len(instance_uids) != volume.shape[0]:
        raise ValueError(f"instance_uids has {len(instance_uids)} UIDs for {volume.shape[0]} slices")
    if extra_attributes:
        from pydicom.datadict import tag_for_keyword

        unknown = [k for k in extra_attributes if tag_for_keyword(k) is None]
        if unknown:
            raise ValueError(f"unknown DICOM keyword(s) in extra_attributes: {', '.join(unknown)}")
    series_uid = series_uid or generate_uid()
    study_uid = study_uid or generate_uid()
    frame_uid = frame_of_reference_uid or generate_uid()
    d = volume.direction_matrix
    row_dir, col_dir = d[:, 0], d[:, 1]
    sz, sy, sx = volume.spacing_zyx
    today = _dt.date(2000, 1, 1).strftime("%Y%m%d")
    files: list[Path] = []
    for k in range(volume.shape[0]):
        sop_uid = str(instance_uids[k]) if instance_uids is not None else generate_uid()
        fm = FileMetaDataset()
        fm.MediaStorageSOPClassUID = CTImageStorage
        fm.MediaStorageSOPInstanceUID = sop_uid
        fm.TransferSyntaxUID = ExplicitVRLittleEndian
        fm.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        path = out / f"{file_prefix}{first_file_number + k:04d}.dcm"
        ds = FileDataset(str(path), {}, file_meta=fm, preamble=b"\0" * 128)
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = sop_uid
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.Modality = modality
        ds.SeriesDescription = series_description
        ds.SeriesNumber = series_number
        ds.InstanceNumber = k + 1
        ds.PatientName = "Synthetic^Phantom"
        ds.PatientID = "CALCSCOPE-SYNTH"
        ds.StudyDate = today
        ds.Manufacturer = "calcscope"
        ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
        pos = volume.voxel_to_mm((k, 0, 0))
        ds.ImagePositionPatient = [f"{v:.6f}" for v in pos]
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in (*row_dir, *col_dir)]
        ds.PixelSpacing = [f"{sy:.6f}", f"{sx:.6f}"]
        ds.SliceThickness = f"{sz:.6f}"
        ds.Rows, ds.Columns = int(volume.shape[1]), int(volume.shape[2])
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1 if signed else 0
        ds.RescaleSlope = f"{rescale_slope:g}"
        ds.RescaleIntercept = f"{rescale_intercept:g}"
        ds.RescaleType = "HU"
        if pixel_padding_value is not None:
            ds.add_new(0x00280120, "SS" if signed else "US", int(pixel_padding_value))
        for keyword, value in (extra_attributes or {}).items():
            setattr(ds, keyword, value)
        ds.PixelData = np.ascontiguousarray(stored[k]).tobytes()
        try:
            ds.save_as(path, enforce_file_format=True)
        except OSError as exc:
            raise OutputError(f"cannot write the DICOM slice ({exc})", path=str(path)) from exc
        files.append(path)
    return files
