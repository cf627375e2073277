"""Voxel-value helpers shared by the NIfTI/NRRD and DICOM loaders (HU, padding, dtype)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import CorruptInputError

__all__ = [
    "AIR_HU",
    "compact_hu",
    "check_finite",
    "infer_padding_hu",
    "replace_padding",
]

#: value written into padded (outside the reconstruction field) voxels: air
AIR_HU = -1024

#: values at or below this cannot be tissue or air; a large plateau there is padding
_PADDING_CEILING_HU = -1500.0
#: minimum fraction of voxels sharing one sub-air value for it to count as padding
_PADDING_MIN_FRACTION = 0.005


def compact_hu(arr: np.ndarray) -> np.ndarray:
    """Return ``arr`` as int16 when every value is integral and fits, float32 otherwise.

    Parameters
    ----------
    arr: ndarray
        Voxel values in HU, any numeric dtype.

    Returns
    -------
    ndarray
        int16 or float32 array (a view of ``arr`` when no conversion is needed).
    """
    if arr.dtype == np.int16:
        return arr
    if arr.size == 0:
        return arr.astype(np.int16)
    lo, hi = arr.min(), arr.max()
    if np.issubdtype(arr.dtype, np.integer):
        if lo < -32768 or hi > 32767:
            return arr.astype(np.float32)
        return arr.astype(np.int16)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return arr.astype(np.float32, copy=False)
    if lo >= -32768 and hi <= 32767 and np.array_equal(arr, np.round(arr)):
        return arr.astype(np.int16)
    return arr.astype(np.float32, copy=False)


def check_finite(arr: np.ndarray, *, path: str) -> None:
    """Raise :class:`CorruptInputError` when ``arr`` holds NaN or infinite values."""
    if not np.issubdtype(arr.dtype, np.floating):
        return
    bad = ~np.isfinite(arr)
    n_bad = int(np.count_nonzero(bad))
    if n_bad:
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise CorruptInputError(
            f"the image contains {n_bad} NaN or infinite voxel value(s) (first at index z, y, x = {first}), "
            "so Hounsfield units are undefined there",
            path=path,
            hint="re-export the CT from its source without NaN/inf fill values",
        )


def infer_padding_hu(arr: np.ndarray) -> float | None:
    """Guess the padding value of an image that does not declare one.

    Scanners fill the corners outside the circular reconstruction field with a value
    well below air (-2000, -2048, -3024 HU...). A single value at or below -1500 HU
    holding at least 0.5 % of the voxels is taken as padding.

    Returns
    -------
    float or None
        The padding value in HU, or None when there is no such plateau.
    """
    if arr.size == 0:
        return None
    lo = float(arr.min())
    if lo > _PADDING_CEILING_HU:
        return None
    n_lo = int(np.count_nonzero(arr == arr.dtype.type(lo)))
    if n_lo >= _PADDING_MIN_FRACTION * arr.size:
        return lo
    return None


def replace_padding(arr: np.ndarray, mask: np.ndarray, *, value_hu: float | None, source: str) -> dict[str, Any]:
    """Set the voxels of ``mask`` to air (-1024 HU) in place and describe what was done.

    Parameters
    ----------
    arr: ndarray
        Voxel values in HU, modified in place.
    mask: ndarray of bool
        Padded voxels.
    value_hu: float or None
        The padding value found, in HU (for the record).
    source: str
        How the padding was recognised ("PixelPaddingValue", "inferred", ...).

    Returns
    -------
    dict
        Record for ``Volume.meta["padding"]``.
    """
    n = int(np.count_nonzero(mask))
    if n:
        arr[mask] = AIR_HU
    return {
        "source": source,
        "value_hu": None if value_hu is None else float(value_hu),
        "replaced_with_hu": AIR_HU,
        "voxels": n,
        "fraction": round(n / arr.size, 6) if arr.size else 0.0,
    }
