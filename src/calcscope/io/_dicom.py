"""DICOM CT series loading with pydicom: scan, group, choose, check geometry, assemble HU.

Headers are read first with ``stop_before_pixels`` to group files by SeriesInstanceUID
and to check the geometry; pixel data is read only for the chosen series. Slices are
ordered by their position along the slice normal (ImagePositionPatient projected on the
cross product of the ImageOrientationPatient row and column directions).
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import (
    CorruptInputError,
    GeometryError,
    InputNotFoundError,
    ModalityError,
    SeriesSelectionError,
    UnsupportedFormatError,
)
from ..model import Volume
from ._hu import AIR_HU, compact_hu, infer_padding_hu, replace_padding
from ._image import is_image_file
from ._paths import describe_os_error

__all__ = [
    "SeriesInfo",
    "DicomScan",
    "scan_folder",
    "series_infos",
    "load_dicom_series",
    "load_dicom_file",
    "read_dicom_header",
    "MAX_GAP_RATIO",
    "MAX_TILT_DEG",
]

#: uneven slice spacing is resampled when the largest gap is at most this many times the median
MAX_GAP_RATIO = 2.0
#: gantry tilt up to this angle is corrected by resampling; beyond it the series is refused
MAX_TILT_DEG = 30.0
#: slices closer than this along the normal are at the same position (duplicates)
_DUPLICATE_TOL_MM = 0.01
#: relative tolerance of "regular" slice spacing
_SPACING_REL_TOL = 0.02
#: largest number of files scanned in one folder tree
MAX_FILES = 200_000

#: modalities of DICOM objects that carry no image to analyse
_NON_IMAGE_MODALITIES = {"SEG", "SR", "RTSTRUCT", "RTPLAN", "RTRECORD", "RTDOSE", "PR", "KO", "REG", "DOC", "FID", "PLAN", "RWV"}


# --------------------------------------------------------------------------------------
# Scanning
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SeriesInfo:
    """Summary of one image series found in a folder (for listings and error messages)."""

    series_uid: str
    modality: str
    description: str
    n_slices: int
    slice_thickness_mm: float | None
    series_number: int | None = None
    rows: int | None = None
    columns: int | None = None

    def line(self) -> str:
        """One-line description: UID, description, slice count, thickness."""
        thick = "unknown" if self.slice_thickness_mm is None else f"{self.slice_thickness_mm:g} mm"
        desc = self.description or "(no description)"
        num = "" if self.series_number is None else f"#{self.series_number} "
        return f"{num}{self.series_uid} [{self.modality}] '{desc}', {self.n_slices} slice(s), slice thickness {thick}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "series_uid": self.series_uid,
            "modality": self.modality,
            "description": self.description,
            "n_slices": self.n_slices,
            "slice_thickness_mm": self.slice_thickness_mm,
            "series_number": self.series_number,
            "rows": self.rows,
            "columns": self.columns,
        }


@dataclass
class DicomScan:
    """What a folder tree holds."""

    root: Path
    series: dict[str, list[tuple[Path, Any]]] = field(default_factory=dict)  # uid -> [(path, header)]
    image_files: list[Path] = field(default_factory=list)  # NIfTI/NRRD/MHA files
    non_dicom: list[Path] = field(default_factory=list)
    non_image_dicom: list[Path] = field(default_factory=list)
    unreadable: list[tuple[Path, str]] = field(default_factory=list)
    n_files: int = 0


def _sniff(path: Path) -> str:
    """'dicom' (DICM prefix), 'raw' (looks like DICOM without preamble) or 'other'."""
    with open(path, "rb") as fh:
        head = fh.read(132)
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if len(head) >= 8:
        group = int.from_bytes(head[0:2], "little")
        elem = int.from_bytes(head[2:4], "little")
        if group in (0x0002, 0x0008) and elem < 0x0100:
            return "raw"
    return "other"


def read_dicom_header(path: Path) -> Any | None:
    """Read a DICOM header (no pixels) or return None when the file is not DICOM.

    Raises
    ------
    CorruptInputError
        The file starts like DICOM but cannot be parsed (truncated or damaged).
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    kind = _sniff(path)
    if kind == "other":
        return None
    try:
        with warnings.catch_warnings():
            # invalid values are judged below; pydicom's warnings would only clutter the CLI
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, stop_before_pixels=True, force=(kind == "raw"))
            # touch the elements we rely on so that lazy parsing errors surface here
            for kw in ("Modality", "SeriesInstanceUID", "Rows", "Columns", "SOPClassUID"):
                ds.get(kw)
    except InvalidDicomError:
        return None
    except Exception as exc:  # pydicom raises many types on damaged files
        raise CorruptInputError(
            f"the DICOM file is damaged or truncated and its header cannot be read ({type(exc).__name__}: {exc})",
            path=str(path),
            hint="remove the file or export the series again from PACS",
        ) from exc
    # pydicom reads a truncated header silently, so check that what an image needs is there
    if kind == "raw":
        return ds if len(ds) else None
    meta = getattr(ds, "file_meta", None)
    sop = ds.get("SOPClassUID") or (meta.get("MediaStorageSOPClassUID") if meta is not None else None)
    if len(ds) == 0 or sop is None:
        raise CorruptInputError(
            "the DICOM file is truncated: its header stops before the data set (no SOP class, no elements)",
            path=str(path),
            hint="remove the file or export the series again from PACS",
        )
    from pydicom.uid import UID

    classes = {str(u) for u in (ds.get("SOPClassUID"), meta.get("MediaStorageSOPClassUID") if meta is not None else None) if u}
    if len(classes) > 1:
        raise CorruptInputError(
            f"the DICOM file is truncated or damaged: its SOP class differs between the file meta and the data set "
            f"({' vs '.join(sorted(classes))})",
            path=str(path),
            hint="remove the file or export the series again from PACS",
        )
    image_class = next((UID(u).name for u in classes if "Image Storage" in UID(u).name), None)
    if image_class and ("Rows" not in ds or "Columns" not in ds):
        raise CorruptInputError(
            f"the DICOM file is truncated or damaged: it is a {image_class} object but its header stops before "
            "the image attributes (Rows, Columns)",
            path=str(path),
            hint="remove the file or export the series again from PACS",
        )
    ts = getattr(meta, "TransferSyntaxUID", None) if meta is not None else None
    if image_class and ts is not None and not UID(str(ts)).is_compressed:
        try:
            bits = int(ds.get("BitsAllocated", 16) or 16)
            n_values = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1) or 1)
            need = (n_values * int(ds.get("NumberOfFrames", 1) or 1) * bits + 7) // 8
        except (TypeError, ValueError):
            need = 0
        size = os.path.getsize(path)
        if size < need:
            raise CorruptInputError(
                f"the DICOM file is truncated: it has {size} bytes but its pixel data alone needs {need}",
                path=str(path),
                hint="remove the file or export the series again from PACS",
            )
    return ds


def _is_image(ds: Any) -> bool:
    modality = str(ds.get("Modality", "") or "").upper()
    return "Rows" in ds and "Columns" in ds and modality not in _NON_IMAGE_MODALITIES


def scan_folder(root: Path) -> DicomScan:
    """Walk ``root`` (links to folders are not followed) and sort its files.

    DICOM image files are grouped by SeriesInstanceUID; NIfTI/NRRD/MHA files, other
    files and non-image DICOM objects (SEG, SR...) are listed separately.
    """
    scan = DicomScan(root=root)
    errors: list[OSError] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False, onerror=errors.append):
        dirnames.sort()
        for fname in sorted(filenames):
            p = Path(dirpath) / fname
            scan.n_files += 1
            if scan.n_files > MAX_FILES:
                raise UnsupportedFormatError(
                    f"the folder tree holds more than {MAX_FILES} files; calcscope expects the folder of one study",
                    path=str(root),
                    hint="point calcscope at the folder of the study or series",
                )
            try:
                if not p.is_file():
                    # dangling links, sockets...; a link loop raises OSError below
                    os.stat(p)
                    continue
                if is_image_file(p):
                    scan.image_files.append(p)
                    continue
                ds = read_dicom_header(p)
            except OSError as exc:
                scan.unreadable.append((p, describe_os_error(exc)))
                continue
            if ds is None:
                scan.non_dicom.append(p)
            elif not _is_image(ds):
                scan.non_image_dicom.append(p)
            else:
                uid = str(ds.get("SeriesInstanceUID", "") or "")
                scan.series.setdefault(uid, []).append((p, ds))
    for exc in errors:
        scan.unreadable.append((Path(getattr(exc, "filename", "") or root), describe_os_error(exc)))
    return scan


def _float_or_none(v: Any) -> float | None:
    try:
        return None if v is None or v == "" else float(v)
    except (TypeError, ValueError):
        return None


def _int_or_none(v: Any) -> int | None:
    try:
        return None if v is None or v == "" else int(v)
    except (TypeError, ValueError):
        return None


def series_infos(scan: DicomScan) -> list[SeriesInfo]:
    """One :class:`SeriesInfo` per image series, ordered by series number then UID."""
    out = []
    for uid, items in scan.series.items():
        ds = items[0][1]
        out.append(
            SeriesInfo(
                series_uid=uid or "(missing SeriesInstanceUID)",
                modality=str(ds.get("Modality", "") or "?"),
                description=str(ds.get("SeriesDescription", "") or ""),
                n_slices=len(items),
                slice_thickness_mm=_float_or_none(ds.get("SliceThickness")),
                series_number=_int_or_none(ds.get("SeriesNumber")),
                rows=_int_or_none(ds.get("Rows")),
                columns=_int_or_none(ds.get("Columns")),
            )
        )
    out.sort(key=lambda s: (s.series_number if s.series_number is not None else 1 << 30, s.series_uid))
    return out


# --------------------------------------------------------------------------------------
# Series selection
# --------------------------------------------------------------------------------------


def _listing(infos: list[SeriesInfo]) -> str:
    return "; ".join(f"({i + 1}) {s.line()}" for i, s in enumerate(infos))


def choose_series(scan: DicomScan, series: str | None, *, allow_modality: bool, display: str) -> str:
    """Return the SeriesInstanceUID to load, or raise with the list of candidates."""
    infos = series_infos(scan)
    by_uid = {s.series_uid: s for s in infos}
    if series is not None:
        if series not in scan.series:
            raise SeriesSelectionError(
                f"the series '{series}' is not in the folder; it holds {len(infos)} image series: {_listing(infos)}",
                path=display,
                hint="copy one of the SeriesInstanceUIDs above into --series",
            )
        info = by_uid[series or "(missing SeriesInstanceUID)"]
        if info.modality.upper() != "CT" and not allow_modality:
            raise _modality_error(info.modality, display)
        return series
    ct = [s for s in infos if s.modality.upper() == "CT"]
    candidates = ct if ct else (infos if allow_modality else [])
    if not ct and not allow_modality:
        mods = sorted({s.modality for s in infos})
        raise ModalityError(
            f"the folder holds no CT series, only {', '.join(mods)}: {_listing(infos)}; calcscope's thresholds are "
            "in Hounsfield units and only valid for CT",
            path=display,
            hint="give calcscope a CT series, or pass --allow-modality to analyse this one anyway (results unreliable)",
        )
    if len(candidates) > 1:
        kind = "CT series" if ct else "image series"
        raise SeriesSelectionError(
            f"the folder holds {len(candidates)} {kind} and none was chosen: {_listing(candidates)}",
            path=display,
            hint="choose one with --series UID (series=... in Python)",
        )
    uid = candidates[0].series_uid
    return "" if uid == "(missing SeriesInstanceUID)" else uid


def _modality_error(modality: str, display: str) -> ModalityError:
    return ModalityError(
        f"the series modality is {modality or 'unknown'}, not CT; calcscope's thresholds are in Hounsfield units "
        "and only valid for CT",
        path=display,
        hint="give calcscope a CT series, or pass --allow-modality (allow_modality=True) to analyse it anyway, "
        "knowing results are unreliable",
    )


# --------------------------------------------------------------------------------------
# Geometry of one series
# --------------------------------------------------------------------------------------


@dataclass
class _SliceGeom:
    path: Path
    ds: Any
    position: np.ndarray  # IPP, mm
    along: float  # position along the normal, mm
    instance: int


def _vec(ds: Any, keyword: str, n: int, path: Path) -> np.ndarray:
    value = ds.get(keyword)
    if value is None:
        raise GeometryError(
            f"the DICOM slice has no {keyword}, so its position in the patient is unknown",
            path=str(path),
            hint="export the series with its geometry tags; secondary captures cannot be analysed",
        )
    try:
        arr = np.asarray([float(v) for v in value], dtype=float)
    except (TypeError, ValueError) as exc:
        raise GeometryError(f"the DICOM slice has an unreadable {keyword} ({value!r})", path=str(path)) from exc
    if arr.shape != (n,) or not np.all(np.isfinite(arr)):
        raise GeometryError(f"the DICOM slice has an invalid {keyword} ({value!r})", path=str(path))
    return arr


def _pixel_spacing(ds: Any, path: Path) -> tuple[float, float]:
    ps = ds.get("PixelSpacing")
    if ps is None:
        extra = " (it has ImagerPixelSpacing, which is measured at the detector, not in the patient)" if "ImagerPixelSpacing" in ds else ""
        raise GeometryError(
            f"the DICOM slice has no PixelSpacing{extra}, so distances in mm cannot be measured",
            path=str(path),
            hint="export the series with PixelSpacing (0028,0030); calcscope will not guess a pixel size",
        )
    try:
        row_mm, col_mm = (float(v) for v in ps)
    except (TypeError, ValueError) as exc:
        raise GeometryError(f"the DICOM slice has an unreadable PixelSpacing ({ps!r})", path=str(path)) from exc
    if not (np.isfinite(row_mm) and np.isfinite(col_mm)) or row_mm <= 0 or col_mm <= 0:
        raise GeometryError(
            f"the DICOM slice has a zero, negative or undefined PixelSpacing ({row_mm:g}, {col_mm:g} mm)",
            path=str(path),
            hint="the header is damaged; export the series again",
        )
    return row_mm, col_mm


def _orientation(ds: Any, path: Path) -> tuple[np.ndarray, np.ndarray]:
    iop = _vec(ds, "ImageOrientationPatient", 6, path)
    row, col = iop[:3], iop[3:]
    nr, nc = np.linalg.norm(row), np.linalg.norm(col)
    if nr < 1e-6 or nc < 1e-6:
        raise GeometryError(f"the ImageOrientationPatient has a zero vector ({iop.tolist()})", path=str(path))
    row, col = row / nr, col / nc
    if abs(float(row @ col)) > 1e-3:
        raise GeometryError(
            f"the row and column directions in ImageOrientationPatient are not perpendicular ({iop.tolist()})",
            path=str(path),
        )
    return row, col


def _check_uniform(values: list[Any], what: str, paths: list[Path], *, rel_tol: float = 1e-4) -> None:
    first = np.asarray(values[0], dtype=float)
    for v, p in zip(values[1:], paths[1:]):
        if not np.allclose(np.asarray(v, dtype=float), first, rtol=rel_tol, atol=1e-4):
            raise GeometryError(
                f"the slices of the series do not share the same {what} ({np.asarray(v).tolist()} vs {first.tolist()})",
                path=str(p),
                hint="the series mixes differently shaped or oriented images; export a consistent series",
            )


# --------------------------------------------------------------------------------------
# Pixel reading
# --------------------------------------------------------------------------------------


def _read_stored(path: Path, rows: int, cols: int) -> np.ndarray:
    """Stored pixel values of one slice (before rescale), shape (rows, cols)."""
    import pydicom

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path)
        if "PixelData" not in ds:
            raise CorruptInputError("the DICOM slice has no pixel data (truncated?)", path=str(path))
        try:
            arr = ds.pixel_array
        except (RuntimeError, NotImplementedError) as exc:
            if "plugin" not in str(exc).lower() and "decode" not in str(exc).lower():
                raise
            arr = _read_stored_sitk(path, ds)
    except CorruptInputError:
        raise
    except Exception as exc:
        raise CorruptInputError(
            f"the pixel data of the DICOM slice cannot be read ({type(exc).__name__}: {exc})",
            path=str(path),
            hint="the file is truncated or damaged; export the series again",
        ) from exc
    if arr.shape != (rows, cols):
        raise CorruptInputError(
            f"the DICOM slice decodes to shape {arr.shape}, not the {rows} x {cols} its header declares",
            path=str(path),
            hint="the file is damaged; export the series again",
        )
    return arr


def _read_stored_sitk(path: Path, ds: Any) -> np.ndarray:
    """Fallback decoder (GDCM inside SimpleITK) for compressed transfer syntaxes; returns stored values."""
    import SimpleITK as sitk

    img = sitk.ReadImage(str(path))  # GDCM applies the rescale
    hu = sitk.GetArrayFromImage(img).astype(np.float64).reshape(int(ds.Rows), int(ds.Columns))
    slope = float(ds.get("RescaleSlope", 1) or 1)
    inter = float(ds.get("RescaleIntercept", 0) or 0)
    return np.round((hu - inter) / slope).astype(np.int32)


def _padding_mask(stored: np.ndarray, ds: Any) -> tuple[np.ndarray | None, float | None]:
    """Mask of padded pixels from PixelPaddingValue (and PixelPaddingRangeLimit)."""
    ppv = ds.get("PixelPaddingValue")
    if ppv is None:
        return None, None
    ppv = int(ppv)
    limit = ds.get("PixelPaddingRangeLimit")
    if limit is None:
        return stored == ppv, float(ppv)
    lo, hi = sorted((ppv, int(limit)))
    return (stored >= lo) & (stored <= hi), float(ppv)


# --------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------


def _meta_from_header(ds: Any) -> dict[str, Any]:
    from pydicom.multival import MultiValue

    def s(kw: str) -> str | None:
        v = ds.get(kw)
        if isinstance(v, MultiValue):
            v = " / ".join(str(x).strip() for x in v if str(x).strip())
        return None if v is None or str(v).strip() == "" else str(v).strip()

    return {
        "format": "DICOM",
        "series_description": s("SeriesDescription"),
        "series_number": _int_or_none(ds.get("SeriesNumber")),
        "slice_thickness_mm": _float_or_none(ds.get("SliceThickness")),
        "manufacturer": s("Manufacturer"),
        "manufacturer_model": s("ManufacturerModelName"),
        "contrast_agent": s("ContrastBolusAgent"),
        "contrast_route": s("ContrastBolusRoute"),
        "kvp": _float_or_none(ds.get("KVP")),
        "convolution_kernel": s("ConvolutionKernel"),
        "body_part": s("BodyPartExamined"),
        "gantry_detector_tilt_tag_deg": _float_or_none(ds.get("GantryDetectorTilt")),
        "transfer_syntax": str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "") or None,
    }


def _instance_uid(ds: Any) -> str:
    """SOPInstanceUID, or the file meta's MediaStorageSOPInstanceUID when an anonymiser blanked it."""
    uid = str(ds.get("SOPInstanceUID", "") or "").strip()
    if not uid:
        meta = getattr(ds, "file_meta", None)
        uid = str(meta.get("MediaStorageSOPInstanceUID", "") or "").strip() if meta is not None else ""
    return uid


def _positions(items: list[tuple[Path, Any]], normal: np.ndarray) -> list[_SliceGeom]:
    geoms = []
    for p, ds in items:
        ipp = _vec(ds, "ImagePositionPatient", 3, p)
        geoms.append(_SliceGeom(path=p, ds=ds, position=ipp, along=float(ipp @ normal), instance=_int_or_none(ds.get("InstanceNumber")) or 0))
    geoms.sort(key=lambda g: (g.along, g.instance, str(g.path)))
    return geoms


def _hu_slice(g: _SliceGeom, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray | None, float | None, float, float]:
    stored = _read_stored(g.path, rows, cols)
    slope = float(g.ds.get("RescaleSlope", 1) or 1)
    inter = float(g.ds.get("RescaleIntercept", 0) or 0)
    if slope == 0 or not math.isfinite(slope) or not math.isfinite(inter):
        raise CorruptInputError(
            f"the DICOM slice has an invalid RescaleSlope/RescaleIntercept ({slope:g}, {inter:g})",
            path=str(g.path),
        )
    pad_mask, ppv = _padding_mask(stored, g.ds)
    hu = stored.astype(np.float64) * slope + inter
    pad_hu = None if ppv is None else ppv * slope + inter
    return hu, pad_mask, pad_hu, slope, inter


def load_dicom_series(
    scan: DicomScan,
    uid: str,
    *,
    display: str,
    allow_modality: bool = False,
) -> Volume:
    """Assemble the series ``uid`` of ``scan`` into a :class:`Volume` in HU.

    Raises
    ------
    GeometryError, CorruptInputError, ModalityError, UnsupportedFormatError
        See :func:`calcscope.io.load_ct`.
    """
    items = list(scan.series[uid])
    first_ds = items[0][1]
    modality = str(first_ds.get("Modality", "") or "")
    if modality.upper() != "CT" and not allow_modality:
        raise _modality_error(modality, display)

    meta: dict[str, Any] = _meta_from_header(first_ds)
    localizers = [(p, ds) for p, ds in items if "LOCALIZER" in [str(t).upper() for t in (ds.get("ImageType") or [])]]
    if localizers and len(localizers) < len(items):
        loc_paths = {p for p, _ in localizers}
        items = [it for it in items if it[0] not in loc_paths]
        meta["localizers_dropped"] = len(localizers)

    for p, ds in items:
        frames = _int_or_none(ds.get("NumberOfFrames")) or 1
        if frames > 1:
            raise UnsupportedFormatError(
                f"the series is stored as a multi-frame (enhanced) DICOM object with {frames} frames, which calcscope "
                "does not read",
                path=str(p),
                hint="export the series as classic single-frame CT images (one file per slice)",
            )
        if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
            raise UnsupportedFormatError(
                "the DICOM image is a colour image, not a CT grey-value image", path=str(p)
            )

    if len(items) == 1:
        raise GeometryError(
            "the series holds a single 2-D slice, not a 3-D volume; calcscope needs the whole CT series",
            path=str(items[0][0]),
            hint="export or copy every slice of the series into the folder",
        )

    paths = [p for p, _ in items]
    rows_cols = [(int(ds.Rows), int(ds.Columns)) for _, ds in items]
    _check_uniform(rows_cols, "image size (rows, columns)", paths, rel_tol=0)
    rows, cols = rows_cols[0]
    spacings = [_pixel_spacing(ds, p) for p, ds in items]
    _check_uniform(spacings, "PixelSpacing", paths)
    orients = [_orientation(ds, p) for p, ds in items]
    _check_uniform([np.concatenate(o) for o in orients], "ImageOrientationPatient", paths)
    row_dir, col_dir = orients[0]
    normal = np.cross(row_dir, col_dir)
    row_mm, col_mm = spacings[0]

    geoms = _positions(items, normal)

    # ---- pixels, with duplicate positions resolved ------------------------------------
    # filled slice by slice: int16 while every value is integral and fits, float32 otherwise,
    # so that a 300-slice series never exists as a list of float64 slices
    stack = np.empty((len(geoms), rows, cols), dtype=np.int16)
    kept: list[_SliceGeom] = []
    dropped: list[str] = []
    pad_voxels = 0
    pad_values: set[float] = set()
    slopes: set[float] = set()
    intercepts: set[float] = set()
    i = 0
    while i < len(geoms):
        j = i + 1
        while j < len(geoms) and geoms[j].along - geoms[i].along < _DUPLICATE_TOL_MM:
            j += 1
        hu, pad_mask, pad_hu, slope, inter = _hu_slice(geoms[i], rows, cols)
        slopes.add(slope)
        intercepts.add(inter)
        for g in geoms[i + 1 : j]:
            other, other_pad, _, _, _ = _hu_slice(g, rows, cols)
            same_pad = (pad_mask is None and other_pad is None) or (
                pad_mask is not None and other_pad is not None and np.array_equal(pad_mask, other_pad)
            )
            if not (np.array_equal(hu, other) and same_pad):
                raise GeometryError(
                    f"two slices lie at the same position ({geoms[i].along:.2f} mm along the slice normal) but hold "
                    f"different pixels ({geoms[i].path.name} and {g.path.name}); the series probably mixes several "
                    "acquisitions (contrast phases, time points or reconstructions) under one SeriesInstanceUID",
                    path=display,
                    hint="export each acquisition as its own series, or remove the extra slices",
                )
            dropped.append(g.path.name)
        if pad_mask is not None:
            pad_values.add(float(pad_hu))
            pad_voxels += int(np.count_nonzero(pad_mask))
            hu[pad_mask] = AIR_HU
        if stack.dtype == np.int16 and not (
            hu.min() >= -32768 and hu.max() <= 32767 and np.array_equal(hu, np.round(hu))
        ):
            stack = stack.astype(np.float32)
        stack[len(kept)] = hu
        kept.append(geoms[i])
        i = j
    if dropped:
        meta["duplicates_dropped"] = dropped
    meta["rescale"] = {"slopes": sorted(slopes), "intercepts": sorted(intercepts)}
    if len(kept) < 2:
        raise GeometryError(
            "every slice of the series lies at the same position: it is a 2-D image repeated, not a 3-D volume",
            path=display,
            hint="export the whole CT series",
        )

    if len(kept) < stack.shape[0]:
        stack = stack[: len(kept)].copy()
    positions = np.stack([g.position for g in kept])
    along = np.asarray([g.along for g in kept])
    resampling: list[dict[str, Any]] = []

    # ---- gantry tilt: slices shifted in-plane along the stack ----------------------------
    rel = positions - positions[0]
    off_row = rel @ row_dir  # mm along the row direction (x index)
    off_col = rel @ col_dir  # mm along the column direction (y index)
    step = along - along[0]
    pix = min(row_mm, col_mm)
    if max(np.abs(off_row).max(), np.abs(off_col).max()) > 0.1 * pix:
        stack, tilt = _correct_tilt(stack, step, off_row, off_col, row_mm=row_mm, col_mm=col_mm, display=display)
        resampling.append(tilt)
        meta["gantry_tilt_deg"] = tilt["angle_deg"]

    # ---- slice spacing -----------------------------------------------------------------
    gaps = np.diff(along)
    med = float(np.median(gaps))
    if float(np.max(np.abs(gaps - med))) <= max(_SPACING_REL_TOL * med, 0.01):
        spacing_z = round(float((along[-1] - along[0]) / (len(along) - 1)), 6)
    else:
        stack, spacing_z, info = _regularise_spacing(stack, along, display=display)
        resampling.append(info)

    # ---- padding without a declared value ------------------------------------------------
    arr = compact_hu(np.round(stack) if resampling and stack.dtype != np.int16 else stack)
    del stack
    if pad_values:
        meta["padding"] = {
            "source": "PixelPaddingValue",
            "value_hu": sorted(pad_values)[0] if len(pad_values) == 1 else sorted(pad_values),
            "replaced_with_hu": AIR_HU,
            "voxels": pad_voxels,
            "fraction": round(pad_voxels / (len(kept) * rows * cols), 6),
        }
    else:
        pad = infer_padding_hu(arr)
        meta["padding"] = (
            replace_padding(arr, arr == arr.dtype.type(pad), value_hu=pad, source="inferred") if pad is not None else None
        )

    direction = np.column_stack([row_dir, col_dir, normal])
    meta["slice_spacing_mm"] = round(spacing_z, 6)
    meta["resampling"] = resampling
    meta["n_source_slices"] = len(geoms)
    ignored = {
        "non_dicom_files": len(scan.non_dicom),
        "non_image_dicom_objects": len(scan.non_image_dicom),
        "other_series": len(scan.series) - 1,
        "unreadable_files": len(scan.unreadable),
        "image_files": len(scan.image_files),
    }
    meta["ignored"] = {k: v for k, v in ignored.items() if v}
    src_files = [str(g.path) for g in kept]
    inst = [_instance_uid(g.ds) for g in kept]
    if resampling:
        # the grid no longer matches the source slices one to one
        meta["source_slices_before_resampling"] = [g.path.name for g in kept]
        src_files, inst = [], []
    desc = meta.get("series_description") or scan.root.name
    return Volume(
        array=arr,
        spacing_zyx=(spacing_z, row_mm, col_mm),
        origin_lps=tuple(positions[0]),
        direction=tuple(direction.ravel()),
        modality=modality or "CT",
        source=str(desc),
        series_uid=uid or None,
        study_uid=str(first_ds.get("StudyInstanceUID", "") or "") or None,
        frame_of_reference_uid=str(first_ds.get("FrameOfReferenceUID", "") or "") or None,
        instance_uids=inst,
        source_files=src_files,
        meta=meta,
    )


def _correct_tilt(
    stack: np.ndarray,
    step: np.ndarray,
    off_row: np.ndarray,
    off_col: np.ndarray,
    *,
    row_mm: float,
    col_mm: float,
    display: str,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Shift each slice in-plane so that the stack becomes orthogonal (gantry-tilt correction).

    Slice k's pixel (r, c) lies at ``P0 + (off_row_k + c*col_mm)*row + (off_col_k + r*row_mm)*col +
    step_k*normal``; shifting slice k by ``(off_col_k/row_mm, off_row_k/col_mm)`` pixels puts every
    slice on the in-plane grid of slice 0. Linear interpolation; uncovered pixels become air.
    """
    from scipy import ndimage

    denom = float(step @ step)
    k_row = float(off_row @ step / denom) if denom > 0 else 0.0
    k_col = float(off_col @ step / denom) if denom > 0 else 0.0
    resid = max(np.abs(off_row - k_row * step).max() / col_mm, np.abs(off_col - k_col * step).max() / row_mm)
    angle = math.degrees(math.atan(math.hypot(k_row, k_col)))
    if resid > 0.5:
        raise GeometryError(
            "the slice positions do not lie on a straight line: slices are shifted sideways by differing amounts "
            f"(up to {resid:.1f} pixels off a constant tilt), so the slices cannot be stacked into one volume",
            path=display,
            hint="the series may mix several acquisitions or have been edited; export it again",
        )
    if angle > MAX_TILT_DEG:
        raise GeometryError(
            f"the slices are stacked obliquely (gantry tilt of {angle:.1f} degrees, more than the {MAX_TILT_DEG:g} "
            "calcscope corrects)",
            path=display,
            hint="reformat the series to an orthogonal grid in your viewer/PACS and export that",
        )
    out = np.empty(stack.shape, dtype=np.float32)
    for k in range(stack.shape[0]):
        shift = (off_col[k] / row_mm, off_row[k] / col_mm)
        out[k] = ndimage.shift(stack[k].astype(np.float32), shift, order=1, mode="constant", cval=float(AIR_HU))
    return out, {
        "reason": "gantry tilt",
        "angle_deg": round(angle, 3),
        "method": "each slice shifted in-plane (linear interpolation) onto the orthogonal grid of the first slice; "
        "uncovered pixels set to -1024 HU",
        "max_shift_mm": round(float(max(np.abs(off_row).max(), np.abs(off_col).max())), 3),
    }


def _regularise_spacing(stack: np.ndarray, along: np.ndarray, *, display: str) -> tuple[np.ndarray, float, dict[str, Any]]:
    """Resample an unevenly spaced stack onto a regular grid along the normal, or refuse."""
    from scipy.interpolate import interp1d

    gaps = np.diff(along)
    # the regular spacing is that of the small gaps (the large ones are where slices are missing)
    med = float(np.median(gaps[gaps <= 1.5 * gaps.min()]))
    worst = int(np.argmax(gaps))
    if gaps[worst] > MAX_GAP_RATIO * med * (1 + _SPACING_REL_TOL):
        big = np.flatnonzero(gaps > MAX_GAP_RATIO * med * (1 + _SPACING_REL_TOL))
        where = ", ".join(f"{along[i]:.2f} to {along[i + 1]:.2f} mm ({gaps[i]:.2f} mm)" for i in big[:5])
        raise GeometryError(
            f"slices are missing: the gap between slices reaches {gaps[worst]:.2f} mm where the usual spacing is "
            f"{med:.2f} mm (more than {MAX_GAP_RATIO:g} times); gaps along the slice normal: {where}",
            path=display,
            hint="export the complete series; calcscope does not invent missing anatomy",
        )
    extent = float(along[-1] - along[0])
    n = int(round(extent / med)) + 1
    spacing = extent / (n - 1)
    targets = along[0] + spacing * np.arange(n)
    targets[-1] = along[-1]
    f = interp1d(along, stack, axis=0, kind="linear", assume_sorted=True, copy=False)
    out = f(targets).astype(np.float32)
    return out, spacing, {
        "reason": "uneven slice spacing",
        "method": "linear interpolation along the slice normal onto a regular grid",
        "source_gaps_mm": {"min": round(float(gaps.min()), 4), "median": round(med, 4), "max": round(float(gaps.max()), 4)},
        "new_spacing_mm": round(spacing, 6),
        "n_slices_before": int(len(along)),
        "n_slices_after": int(n),
    }


def load_dicom_file(path: Path, *, allow_modality: bool = False) -> Volume:
    """Handle a single DICOM file given as input: it is one slice, so it is refused as 2-D.

    Raises
    ------
    UnsupportedFormatError
        Not DICOM, a non-image object, or multi-frame.
    ModalityError
        Not CT (without ``allow_modality``).
    GeometryError
        A single 2-D slice.
    """
    ds = read_dicom_header(path)
    if ds is None:
        raise UnsupportedFormatError(
            "the file is not DICOM (no DICOM header) and not a NIfTI/NRRD/MetaImage/zip file"
            + (" although its name ends in .dcm" if path.name.lower().endswith(".dcm") else ""),
            path=str(path),
            hint="give calcscope a DICOM series folder, a .nii/.nii.gz/.nrrd/.mha file or a zip of those",
        )
    if not _is_image(ds):
        raise UnsupportedFormatError(
            f"the DICOM file is a {ds.get('Modality', 'non-image')} object, not an image",
            path=str(path),
            hint="give calcscope the CT series itself",
        )
    modality = str(ds.get("Modality", "") or "")
    if modality.upper() != "CT" and not allow_modality:
        raise _modality_error(modality, str(path))
    frames = _int_or_none(ds.get("NumberOfFrames")) or 1
    if frames > 1:
        raise UnsupportedFormatError(
            f"the file is a multi-frame (enhanced) DICOM object with {frames} frames, which calcscope does not read",
            path=str(path),
            hint="export the series as classic single-frame CT images (one file per slice)",
        )
    raise GeometryError(
        f"the file is a single 2-D DICOM slice ({ds.get('Rows', '?')} x {ds.get('Columns', '?')} pixels), not a 3-D "
        "volume; calcscope's 3-D analysis needs the whole series",
        path=str(path),
        hint="pass the folder that holds every slice of the series",
    )


def raise_for_empty(scan: DicomScan, display: str) -> None:
    """Raise the most specific error for a folder without any usable image."""
    if scan.series or scan.image_files:
        return
    if scan.n_files == 0:
        raise InputNotFoundError(
            "the folder is empty (no files in it or its sub-folders)",
            path=display,
            hint="check that the export or copy completed",
        )
    if scan.unreadable and not scan.non_dicom and not scan.non_image_dicom:
        p, why = scan.unreadable[0]
        raise InputNotFoundError(
            f"none of the {len(scan.unreadable)} file(s) in the folder can be read ({p.name}: {why})",
            path=display,
            hint="fix the permissions or links of the files",
        )
    named_dcm = [p for p in scan.non_dicom if p.name.lower().endswith(".dcm")]
    if named_dcm:
        raise UnsupportedFormatError(
            f"the folder holds no DICOM image: {len(named_dcm)} file(s) are named .dcm but are not DICOM "
            f"(e.g. {named_dcm[0].name})",
            path=display,
            hint="check the export; these files may be reports or were renamed",
        )
    if scan.non_image_dicom:
        raise UnsupportedFormatError(
            f"the folder holds only non-image DICOM objects (e.g. {scan.non_image_dicom[0].name}: SEG/SR/RTSTRUCT), "
            "no CT images",
            path=display,
            hint="add the CT series itself",
        )
    raise UnsupportedFormatError(
        f"the folder holds {scan.n_files} file(s) but no DICOM image and no NIfTI/NRRD/MetaImage file",
        path=display,
        hint="give calcscope a DICOM series folder, an image file or a zip of those",
    )
