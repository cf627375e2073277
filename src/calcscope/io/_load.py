"""CT loading into a :class:`calcscope.model.Volume` (HU, mm, LPS)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import (
    CorruptInputError,
    GeometryError,
    InputNotFoundError,
    ModalityError,
    UnsupportedFormatError,
)
from ..model import Volume

__all__ = ["load_ct", "load_mask_like", "save_nifti"]

_IMAGE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")


def _is_image_file(path: Path) -> bool:
    name = path.name.lower()
    return any(name.endswith(s) for s in _IMAGE_SUFFIXES)


def _compact(arr: np.ndarray) -> np.ndarray:
    """int16 when every value is integral and fits, float32 otherwise."""
    if arr.dtype == np.int16:
        return arr
    if np.issubdtype(arr.dtype, np.integer):
        if arr.size and (arr.min() < -32768 or arr.max() > 32767):
            return arr.astype(np.float32)
        return arr.astype(np.int16)
    a32 = arr.astype(np.float32, copy=False)
    if a32.size and np.all(np.isfinite(a32)) and np.all(a32 == np.round(a32)) and a32.min() >= -32768 and a32.max() <= 32767:
        return a32.astype(np.int16)
    return a32


def _check_volume(vol: Volume, path: str) -> Volume:
    if np.issubdtype(vol.array.dtype, np.floating) and not np.all(np.isfinite(vol.array)):
        raise CorruptInputError(
            "the image contains NaN or infinite voxel values, so Hounsfield units are undefined",
            path=path,
            hint="re-export the CT from its source without NaN fill values",
        )
    return vol


def load_ct(path: str | os.PathLike, series: str | None = None, *, allow_modality: bool = False) -> Volume:
    """Load a CT volume in Hounsfield units with its geometry.

    Parameters
    ----------
    path: str or PathLike
        A NIfTI/NRRD/MHA file or a folder of DICOM files.
    series: str, optional
        SeriesInstanceUID to choose when a folder holds several series.
    allow_modality: bool
        Accept non-CT modalities (values are then not Hounsfield units).

    Returns
    -------
    Volume
        ``array`` indexed (z, y, x) in HU, geometry in mm/LPS.

    Raises
    ------
    InputNotFoundError, UnsupportedFormatError, CorruptInputError, ModalityError, GeometryError
    """
    import SimpleITK as sitk

    p = Path(path)
    if not p.exists():
        raise InputNotFoundError("the input path does not exist", path=str(p), hint="check the spelling and the working directory")
    if p.is_file() and _is_image_file(p):
        try:
            img = sitk.ReadImage(str(p))
        except RuntimeError as exc:
            raise CorruptInputError(f"the image file could not be read ({str(exc).strip().splitlines()[-1]})", path=str(p)) from exc
        if img.GetDimension() != 3:
            raise GeometryError(f"calcscope needs a 3-D volume; this image has {img.GetDimension()} dimensions", path=str(p))
        vol = Volume.from_sitk(img, modality="CT", source=p.name)
        vol.array = _compact(vol.array)
        return _check_volume(vol, str(p))
    if p.is_dir():
        reader = sitk.ImageSeriesReader()
        uids = reader.GetGDCMSeriesIDs(str(p))
        if not uids:
            raise UnsupportedFormatError("no DICOM series found in the folder", path=str(p))
        uid = series if series is not None else uids[0]
        files = reader.GetGDCMSeriesFileNames(str(p), uid)
        reader.SetFileNames(files)
        img = reader.Execute()
        vol = Volume.from_sitk(img, modality="CT", source=p.name, series_uid=uid, source_files=list(files))
        vol.array = _compact(vol.array)
        return _check_volume(vol, str(p))
    raise UnsupportedFormatError("not a NIfTI/NRRD/MHA file or a DICOM folder", path=str(p))


def load_mask_like(path: str | os.PathLike, reference: Volume) -> np.ndarray:
    """Load a label image and resample it (nearest neighbour, by physical position) onto ``reference``."""
    import SimpleITK as sitk

    img = sitk.ReadImage(str(path))
    ref = reference.to_sitk(np.zeros(reference.shape, dtype=np.uint8))
    res = sitk.Resample(img, ref, sitk.Transform(), sitk.sitkNearestNeighbor, 0, img.GetPixelID())
    return sitk.GetArrayFromImage(res)


def save_nifti(array: np.ndarray, reference: Volume, path: str | os.PathLike) -> None:
    """Write ``array`` (same grid as ``reference``) as NIfTI with the reference geometry."""
    import SimpleITK as sitk

    sitk.WriteImage(reference.to_sitk(array), str(path), useCompression=True)
