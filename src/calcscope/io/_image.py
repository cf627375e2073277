"""Loading of single-file volumes (NIfTI, NRRD, MetaImage) through SimpleITK, with checks."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CorruptInputError, GeometryError, ModalityError, UnsupportedFormatError
from ..model import Volume
from ._hu import check_finite, compact_hu, infer_padding_hu, replace_padding

__all__ = ["IMAGE_SUFFIXES", "is_image_file", "load_image_file", "read_sitk_image"]

IMAGE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")

_METAIMAGE_MODALITIES = {"MET_MOD_CT": "CT", "MET_MOD_MR": "MR", "MET_MOD_NM": "NM", "MET_MOD_US": "US"}


def is_image_file(path: Path) -> bool:
    """True when the name ends in one of :data:`IMAGE_SUFFIXES`."""
    name = path.name.lower()
    return any(name.endswith(s) for s in IMAGE_SUFFIXES)


def _nifti_raw_header(path: Path) -> dict[str, Any] | None:
    """dim and pixdim exactly as stored in a NIfTI-1/2 header (no repair), or None if not NIfTI."""
    import nibabel as nib

    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            head = fh.read(4)
            if len(head) < 4:
                raise CorruptInputError("the NIfTI file is empty or truncated", path=str(path))
            fh.seek(0)
            size_le = struct.unpack("<i", head)[0]
            size_be = struct.unpack(">i", head)[0]
            if 540 in (size_le, size_be):
                hdr = nib.Nifti2Header.from_fileobj(fh, check=False)
            elif 348 in (size_le, size_be):
                hdr = nib.Nifti1Header.from_fileobj(fh, check=False)
            else:
                raise CorruptInputError(
                    "the file has a NIfTI name but not a NIfTI header (sizeof_hdr is neither 348 nor 540)",
                    path=str(path),
                    hint="check that the file is really a NIfTI image",
                )
    except (OSError, EOFError, ValueError, gzip.BadGzipFile) as exc:
        if isinstance(exc, CorruptInputError):
            raise
        raise CorruptInputError(
            f"the NIfTI header could not be read ({exc})",
            path=str(path),
            hint="the file is damaged or truncated; copy or export it again",
        ) from exc
    return {
        "dim": [int(d) for d in hdr["dim"]],
        "pixdim": [float(p) for p in hdr["pixdim"]],
        "float": np.issubdtype(hdr.get_data_dtype(), np.floating),
        "scl": (float(hdr["scl_slope"]), float(hdr["scl_inter"])),
    }


def _check_nifti_header(path: Path) -> None:
    raw = _nifti_raw_header(path)
    if raw is None:
        return
    dim, pixdim = raw["dim"], raw["pixdim"]
    ndim = dim[0]
    sizes = dim[1 : 1 + max(0, min(ndim, 7))]
    extra = [s for s in sizes[3:] if s > 1]
    if extra:
        raise GeometryError(
            f"the image is {ndim}-D (size {' x '.join(str(s) for s in sizes)}); calcscope analyses one 3-D volume",
            path=str(path),
            hint="extract the time point / channel you want as a 3-D NIfTI (e.g. with fslroi or nibabel)",
        )
    spacing = pixdim[1:4][: max(1, min(ndim, 3))]
    bad = [s for s in spacing if not np.isfinite(s) or s <= 0]
    if bad:
        raise GeometryError(
            f"the voxel spacing in the NIfTI header is zero, negative or undefined (pixdim = {spacing})",
            path=str(path),
            hint="fix the header (pixdim must hold positive sizes in mm) or re-export the image",
        )
    slope, inter = raw["scl"]
    if slope not in (0.0,) and np.isfinite(slope) and not np.isfinite(inter):
        raise CorruptInputError(
            f"the NIfTI intensity scaling is undefined (scl_inter = {inter})",
            path=str(path),
            hint="fix the header or re-export the image",
        )
    if raw["float"]:
        # ITK's NIfTI reader silently turns NaN into 0, so look at the stored values directly
        import nibabel as nib

        try:
            data = np.asanyarray(nib.load(str(path)).dataobj)
        except Exception as exc:  # nibabel raises several types on damaged files
            raise CorruptInputError(f"the NIfTI voxel data could not be read ({exc})", path=str(path)) from exc
        check_finite(np.asarray(data), path=str(path))


def read_sitk_image(path: Path) -> Any:
    """Read an image file with SimpleITK, turning its exceptions into calcscope errors."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise _sitk_error(exc, path) from exc
    dim = reader.GetDimension()
    size = reader.GetSize()
    if reader.GetNumberOfComponents() != 1:
        raise UnsupportedFormatError(
            f"the image has {reader.GetNumberOfComponents()} components per voxel (colour or vector image), "
            "not one grey value",
            path=str(path),
            hint="give calcscope a scalar CT volume",
        )
    if dim == 4 and size[3] == 1:
        reader.SetExtractIndex((0, 0, 0, 0))
        reader.SetExtractSize((size[0], size[1], size[2], 0))
    elif dim > 3:
        raise GeometryError(
            f"the image is {dim}-D (size {' x '.join(str(s) for s in size)}); calcscope analyses one 3-D volume",
            path=str(path),
            hint="extract the time point / channel you want as a 3-D image",
        )
    elif dim < 3:
        raise GeometryError(
            f"the image is a single {dim}-D picture (size {' x '.join(str(s) for s in size)}), not a 3-D volume",
            path=str(path),
            hint="give calcscope the whole CT volume (a 3-D file or the folder of the series)",
        )
    try:
        img = reader.Execute()
    except RuntimeError as exc:
        raise _sitk_error(exc, path) from exc
    return img, {k: reader.GetMetaData(k) for k in reader.GetMetaDataKeys()}


def _sitk_error(exc: RuntimeError, path: Path) -> Exception:
    text = str(exc)
    last = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    detail = last[-1] if last else type(exc).__name__
    if "spacing" in text.lower():
        return GeometryError(
            f"the image header gives an invalid voxel spacing ({detail})",
            path=str(path),
            hint="spacing must be positive sizes in mm; fix the header or re-export",
        )
    return CorruptInputError(
        f"the image file could not be read ({detail})",
        path=str(path),
        hint="the file is damaged, truncated or not what its name says; copy or export it again",
    )


def _check_geometry(img: Any, path: Path) -> None:
    size = img.GetSize()
    if any(s <= 1 for s in size):
        raise GeometryError(
            f"the image is a single 2-D slice (size {' x '.join(str(s) for s in size)}), not a 3-D volume",
            path=str(path),
            hint="give calcscope the whole CT volume",
        )
    spacing = img.GetSpacing()
    if any(not np.isfinite(s) or s <= 0 for s in spacing):
        raise GeometryError(
            f"the voxel spacing is zero, negative or undefined ({spacing} mm)",
            path=str(path),
            hint="fix the image header or re-export the image",
        )
    direction = np.asarray(img.GetDirection(), dtype=float).reshape(3, 3)
    if not np.all(np.isfinite(direction)) or abs(np.linalg.det(direction)) < 1e-6:
        raise GeometryError(
            "the image orientation (direction matrix) is degenerate",
            path=str(path),
            hint="fix the image header (qform/sform) or re-export the image",
        )


def load_image_file(path: Path, *, allow_modality: bool = False) -> Volume:
    """Load a NIfTI/NRRD/MetaImage file as a CT volume in HU.

    Parameters
    ----------
    path: Path
        The image file.
    allow_modality: bool
        Accept images that do not look like CT in HU (MR, PET...).

    Returns
    -------
    Volume
        int16 (or float32) HU array in (z, y, x), geometry in mm/LPS.
    """
    name = path.name.lower()
    if name.endswith(".nii") or name.endswith(".nii.gz"):
        _check_nifti_header(path)
    img, header = read_sitk_image(path)
    _check_geometry(img, path)
    modality = "CT"
    meta_mod = header.get("Modality") or header.get("modality")
    if meta_mod and meta_mod.strip() not in ("MET_MOD_UNKNOWN", ""):
        modality = _METAIMAGE_MODALITIES.get(meta_mod.strip(), meta_mod.strip())
    vol = Volume.from_sitk(img, modality=modality, source=path.name)
    check_finite(vol.array, path=str(path))
    arr = compact_hu(vol.array)
    meta: dict[str, Any] = {"format": _format_name(name), "file": path.name, "original_dtype": str(vol.array.dtype)}
    if modality != "CT" and not allow_modality:
        raise ModalityError(
            f"the image header says its modality is {modality}, not CT; calcscope's thresholds are in "
            "Hounsfield units and only valid for CT",
            path=str(path),
            hint="pass --allow-modality (allow_modality=True) to analyse it anyway, knowing results are unreliable",
        )
    if arr.size and float(arr.min()) >= 0 and not allow_modality:
        raise ModalityError(
            f"the image has no negative values (range {float(arr.min()):g} to {float(arr.max()):g}), so it does not "
            "look like CT in Hounsfield units (air is about -1000 HU, fat about -100 HU); it may be MR/PET or a CT "
            "stored without its rescale intercept",
            path=str(path),
            hint="convert it to HU, or pass --allow-modality (allow_modality=True) if you know what it is",
        )
    if modality == "CT":
        pad = infer_padding_hu(arr)
        if pad is not None:
            if not arr.flags.writeable:
                arr = arr.copy()
            meta["padding"] = replace_padding(arr, arr == arr.dtype.type(pad), value_hu=pad, source="inferred")
    vol.array = arr
    vol.meta.update(meta)
    return vol


def _format_name(name: str) -> str:
    if name.endswith(".nii") or name.endswith(".nii.gz"):
        return "NIfTI"
    if name.endswith(".nrrd") or name.endswith(".nhdr"):
        return "NRRD"
    return "MetaImage"
