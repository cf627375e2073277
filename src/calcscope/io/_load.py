"""CT loading into a :class:`calcscope.model.Volume` (HU, mm, LPS): the public entry points."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import CalcscopeError, GeometryError, OutputError, SeriesSelectionError, UsageError
from ..model import Volume
from ._archive import extracted_zip, is_zip_file
from ._dicom import (
    SeriesInfo,
    choose_series,
    load_dicom_file,
    load_dicom_series,
    raise_for_empty,
    scan_folder,
    series_infos,
)
from ._image import is_image_file, load_image_file, read_sitk_image
from ._paths import check_input_path

__all__ = ["load_ct", "load_mask_like", "save_nifti", "list_series"]


def load_ct(path: str | os.PathLike, series: str | None = None, *, allow_modality: bool = False) -> Volume:
    """Load a CT volume in Hounsfield units with its geometry, or refuse it with a reason.

    Parameters
    ----------
    path: str or PathLike
        One of: a NIfTI (.nii, .nii.gz), NRRD (.nrrd, .nhdr) or MetaImage (.mha, .mhd) file;
        a folder (searched recursively) holding a DICOM series; a .zip archive of either
        (extracted safely into a temporary folder that is always removed). A single DICOM
        file is read and refused as a 2-D image.
    series: str, optional
        SeriesInstanceUID to load when the folder holds several image series (for a folder
        of NIfTI files: the file name).
    allow_modality: bool
        Accept non-CT modalities (MR, US, PT...). Their values are not Hounsfield units and
        calcscope's thresholds do not apply.

    Returns
    -------
    Volume
        ``array`` indexed (z, y, x) in HU (int16 when integral, float32 otherwise); spacing
        in mm; origin/direction in LPS. For DICOM: ``series_uid``, ``study_uid``,
        ``frame_of_reference_uid``, ``instance_uids`` and ``source_files`` in z order (empty
        when the grid was resampled or the input was a zip archive), and ``meta`` with slice
        thickness, manufacturer, contrast agent, padding and any resampling done.

    Raises
    ------
    InputNotFoundError
        Missing, unreadable, looping link, empty folder.
    UnsupportedFormatError
        Not an image/DICOM/zip; multi-frame or colour DICOM.
    CorruptInputError
        Truncated or damaged file, NaN/inf voxels.
    ModalityError
        Not CT, unless ``allow_modality``.
    GeometryError
        2-D or 4-D image, zero/negative spacing, missing PixelSpacing, duplicate slices with
        different pixels, missing slices, gantry tilt beyond what is corrected.
    SeriesSelectionError
        Several CT series and none chosen, or the chosen UID is absent.
    ArchiveError
        Damaged zip, path traversal, links, or beyond the size/ratio/entry limits.
    UsageError
        ``series`` given for a single-file input.
    """
    p = check_input_path(path)
    if p.is_dir():
        return _load_folder(p, series, allow_modality=allow_modality, display=str(p))
    if is_zip_file(p):
        return _load_zip(p, series, allow_modality=allow_modality)
    if series is not None:
        raise UsageError(
            f"a series ('{series}') was chosen but the input is a single file, which holds no series to choose from",
            path=str(p),
            hint="drop --series, or give the folder or zip that holds the series",
        )
    if is_image_file(p):
        return load_image_file(p, allow_modality=allow_modality)
    return load_dicom_file(p, allow_modality=allow_modality)


def list_series(path: str | os.PathLike) -> list[SeriesInfo]:
    """The image series found in a DICOM folder (or zip of one), without reading pixels.

    Parameters
    ----------
    path: str or PathLike
        Folder or zip archive.

    Returns
    -------
    list of SeriesInfo
        UID, modality, description, slice count and thickness of each series.
    """
    p = check_input_path(path)
    if p.is_dir():
        return series_infos(scan_folder(p))
    if is_zip_file(p):
        with extracted_zip(p) as root:
            return series_infos(scan_folder(root))
    return []


def _load_folder(root: Path, series: str | None, *, allow_modality: bool, display: str) -> Volume:
    scan = scan_folder(root)
    raise_for_empty(scan, display)
    if scan.series:
        uid = choose_series(scan, series, allow_modality=allow_modality, display=display)
        vol = load_dicom_series(scan, uid, display=display, allow_modality=allow_modality)
        vol.source_files = [os.path.abspath(f) for f in vol.source_files]
        return vol
    files = scan.image_files
    if len(files) == 1 and series is None:
        return load_image_file(files[0], allow_modality=allow_modality)
    names = [f.relative_to(root).as_posix() for f in files]
    if series is not None and series in names:
        return load_image_file(files[names.index(series)], allow_modality=allow_modality)
    raise SeriesSelectionError(
        f"the folder holds {len(files)} image files and none was chosen"
        if series is None
        else f"the folder has no image file named '{series}'; it holds {len(files)}",
        path=display,
        hint=f"choose one with --series NAME, one of: {', '.join(names[:20])}",
    )


def _load_zip(p: Path, series: str | None, *, allow_modality: bool) -> Volume:
    with extracted_zip(p) as root:
        try:
            vol = _load_folder(root, series, allow_modality=allow_modality, display=str(p))
        except CalcscopeError as exc:
            if exc.path and exc.path.startswith(str(root)):
                exc.path = f"{p}!/{Path(exc.path).relative_to(root).as_posix()}"
                exc.args = (exc.paragraph(),)
            raise
        members = [Path(os.path.relpath(f, os.path.abspath(root))).as_posix() for f in vol.source_files]
    # the extracted files are gone: keep only their names inside the archive
    vol.meta["archive"] = p.name
    if members:
        vol.meta["archive_members"] = members
    vol.source_files = []
    vol.source = vol.source or p.name
    return vol


def load_mask_like(path: str | os.PathLike, reference: Volume) -> np.ndarray:
    """Load a label image and resample it onto ``reference``'s grid by physical position.

    Nearest-neighbour interpolation through the LPS coordinates of both images, so a
    mask stored with another orientation, origin or spacing lands on the right voxels.

    Parameters
    ----------
    path: str or PathLike
        NIfTI/NRRD/MetaImage label image (3-D).
    reference: Volume
        The grid to resample onto.

    Returns
    -------
    ndarray
        Labels on ``reference``'s (z, y, x) grid, same dtype as stored; 0 outside the
        mask's field of view.
    """
    import SimpleITK as sitk

    p = check_input_path(path)
    img, _ = read_sitk_image(p)
    if img.GetDimension() != 3:
        raise GeometryError(f"the mask is {img.GetDimension()}-D, not 3-D", path=str(p))
    ref = reference.to_sitk(np.zeros(reference.shape, dtype=np.uint8))
    res = sitk.Resample(img, ref, sitk.Transform(), sitk.sitkNearestNeighbor, 0, img.GetPixelID())
    return sitk.GetArrayFromImage(res)


def save_nifti(array: np.ndarray, reference: Volume, path: str | os.PathLike) -> None:
    """Write ``array`` (on ``reference``'s grid) as compressed NIfTI with the reference geometry.

    Raises
    ------
    OutputError
        Shape mismatch or the file cannot be written.
    """
    import SimpleITK as sitk

    if array.shape != reference.shape:
        raise OutputError(f"array shape {array.shape} differs from the volume shape {reference.shape}", path=str(path))
    try:
        sitk.WriteImage(reference.to_sitk(array), str(path), useCompression=True)
    except RuntimeError as exc:
        raise OutputError(f"cannot write the NIfTI file ({str(exc).strip().splitlines()[-1]})", path=str(path)) from exc
