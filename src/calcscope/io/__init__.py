"""Loading and saving images: CT volumes (NIfTI, NRRD, MHA, DICOM series, zip) and masks.

Public entry points
-------------------
:func:`load_ct`
    Any supported input to a :class:`calcscope.model.Volume` in HU, or a specific
    :class:`calcscope.errors.CalcscopeError` saying why not.
:func:`load_mask_like`
    A label image resampled onto a volume's grid by physical position.
:func:`save_nifti`, :func:`save_dicom_series`
    Write an array / a volume back to disk.
:func:`list_series`
    The image series of a DICOM folder or zip, without reading pixels.
"""

from ._archive import DEFAULT_ARCHIVE_LIMITS, ArchiveLimits
from ._dicom import MAX_GAP_RATIO, MAX_TILT_DEG, SeriesInfo
from ._dicom_write import save_dicom_series
from ._load import list_series, load_ct, load_mask_like, save_nifti

__all__ = [
    "load_ct",
    "load_mask_like",
    "save_nifti",
    "save_dicom_series",
    "list_series",
    "SeriesInfo",
    "ArchiveLimits",
    "DEFAULT_ARCHIVE_LIMITS",
    "MAX_GAP_RATIO",
    "MAX_TILT_DEG",
]
