"""Grid helpers: canonical (LPS) orientation, block down-sampling, mm morphology via distance maps.

All morphology here works with Euclidean distance transforms in millimetres, so a radius given
in mm means the same on any voxel spacing, and edges of the field of view are handled by
replicating the border slices (the anatomy is assumed to continue beyond a partial scan).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from ..model import Volume

__all__ = [
    "Canonical",
    "to_canonical",
    "block_reduce_mean",
    "erode_mm",
    "dilate_mm",
    "open_mm",
    "close_mm",
    "fill_holes_2d",
    "largest_components",
    "face_touching",
]


@dataclass
class Canonical:
    """Array of a volume re-ordered so that its axes point (Superior, Posterior, Left).

    ``perm`` and ``flip`` record how to go back to the volume's own index order.
    """

    array: np.ndarray
    spacing_zyx: tuple[float, float, float]
    perm: tuple[int, int, int]
    flip: tuple[bool, bool, bool]

    def to_native(self, arr: np.ndarray) -> np.ndarray:
        """Map an array on the canonical grid back to the volume's (z, y, x) order."""
        out = arr
        for ax, f in enumerate(self.flip):
            if f:
                out = np.flip(out, axis=ax)
        inv = np.argsort(self.perm)
        return np.ascontiguousarray(np.transpose(out, inv))

    def from_native(self, arr: np.ndarray) -> np.ndarray:
        """Map an array on the volume's grid to the canonical grid."""
        out = np.transpose(arr, self.perm)
        for ax, f in enumerate(self.flip):
            if f:
                out = np.flip(out, axis=ax)
        return out


def to_canonical(volume: Volume) -> Canonical:
    """Re-order a volume's array into (S, P, L) axis order, i.e. LPS with axes (z, y, x).

    Each index axis is matched to the patient axis its direction cosine points along most;
    oblique acquisitions are therefore approximated by the nearest axis-aligned orientation.
    """
    d = volume.direction_matrix  # columns: index axes i (x), j (y), k (z) in LPS
    # array axis a (0=z/k, 1=y/j, 2=x/i) -> direction column
    col_of_array_axis = {0: 2, 1: 1, 2: 0}
    lps_axis = {}
    sign = {}
    for a, c in col_of_array_axis.items():
        v = d[:, c]
        k = int(np.argmax(np.abs(v)))
        lps_axis[a] = k
        sign[a] = v[k] >= 0
    if sorted(lps_axis.values()) != [0, 1, 2]:
        # degenerate direction (two index axes along one patient axis): keep native order
        lps_axis = {0: 2, 1: 1, 2: 0}
        sign = {0: True, 1: True, 2: True}
    # canonical axis 0 = S (LPS z, k=2), 1 = P (LPS y, k=1), 2 = L (LPS x, k=0)
    want = {0: 2, 1: 1, 2: 0}
    perm = []
    for cax in range(3):
        src = next(a for a in range(3) if lps_axis[a] == want[cax])
        perm.append(src)
    flip = tuple(not sign[src] for src in perm)
    arr = np.transpose(volume.array, perm)
    for ax, f in enumerate(flip):
        if f:
            arr = np.flip(arr, axis=ax)
    sp = tuple(float(volume.spacing_zyx[src]) for src in perm)
    return Canonical(array=arr, spacing_zyx=sp, perm=tuple(perm), flip=flip)  # type: ignore[arg-type]


def block_reduce_mean(arr: np.ndarray, factors: tuple[int, int, int]) -> np.ndarray:
    """Mean over non-overlapping blocks (edge blocks padded by replication), float32 out.

    Works one block of slices at a time, so that only small temporaries are allocated (no
    whole-volume intermediate) and flipped or transposed views are read without a copy.
    """
    fz, fy, fx = factors
    if (fz, fy, fx) == (1, 1, 1):
        return arr.astype(np.float32)
    z, y, x = arr.shape
    oz, oy, ox = -(-z // fz), -(-y // fy), -(-x // fx)
    py, px = oy * fy - y, ox * fx - x
    acc = np.float32 if np.issubdtype(arr.dtype, np.floating) else np.int32
    out = np.empty((oz, oy, ox), np.float32)
    for k in range(oz):
        s = arr[k * fz].astype(acc)
        for j in range(1, fz):
            s += arr[min(k * fz + j, z - 1)]  # last block padded by replicating the last slice
        if py or px:
            s = np.pad(s, ((0, py), (0, px)), mode="edge")
        # strided adds (one pass per block offset) are much faster than reductions over short axes
        sx = s[:, 0::fx].copy()
        for j in range(1, fx):
            sx += s[:, j::fx]
        sy = sx[0::fy].copy()
        for j in range(1, fy):
            sy += sx[j::fy]
        out[k] = sy
    out /= np.float32(fz * fy * fx)
    return out


def block_reduce_mask(mask: np.ndarray, factors: tuple[int, int, int], *, level: float = 0.5) -> np.ndarray:
    """Blocks of a boolean mask whose occupied fraction exceeds ``level`` (bool, coarse grid).

    Same result as ``block_reduce_mean(mask, factors) > level``, computed only over the mask's
    bounding box (aligned to the blocks), so a small organ in a large volume costs little.
    """
    out_shape = tuple(-(-n // f) for n, f in zip(mask.shape, factors))
    out = np.zeros(out_shape, bool)
    box = _bbox(mask, [0, 0, 0])
    if box is None:
        return out
    lo = [(b.start // f) * f for b, f in zip(box, factors)]
    hi = [min(n, -(-b.stop // f) * f) for b, f, n in zip(box, factors, mask.shape)]
    sub = mask[tuple(slice(a, b) for a, b in zip(lo, hi))]
    red = block_reduce_mean(sub.view(np.uint8) if sub.dtype == bool else sub, factors) > level
    out[tuple(slice(a // f, a // f + n) for a, f, n in zip(lo, factors, red.shape))] = red
    return out


def _pad_edge(mask: np.ndarray, pad_vox: tuple[int, int, int]) -> tuple[np.ndarray, tuple[slice, ...]]:
    pads = [(p, p) for p in pad_vox]
    sl = tuple(slice(p, p + n) for p, n in zip(pad_vox, mask.shape))
    return np.pad(mask, pads, mode="edge"), sl


def _pad_for(radius_mm: float, spacing: tuple[float, float, float], axes: tuple[int, ...] = (0,)) -> tuple[int, int, int]:
    out = [0, 0, 0]
    for a in axes:
        out[a] = int(np.ceil(radius_mm / spacing[a])) + 1
    return tuple(out)  # type: ignore[return-value]


def erode_mm(mask: np.ndarray, radius_mm: float, spacing: tuple[float, float, float], *, edge_axes: tuple[int, ...] = (0,)) -> np.ndarray:
    """Binary erosion by a ball of ``radius_mm``; borders along ``edge_axes`` are replicated.

    Computed in the mask's bounding box (one voxel of margin).
    """
    if radius_mm <= 0:
        return mask.copy()
    box = _bbox(mask, [1, 1, 1])
    out = np.zeros(mask.shape, bool)
    if box is None:
        return out
    sub = mask[box]
    # replicate only the array's own border (not the box's)
    axes = tuple(a for a in edge_axes if box[a].start == 0 or box[a].stop == mask.shape[a])
    padded, sl = _pad_edge(sub, _pad_for(radius_mm, spacing, axes))
    dist = ndi.distance_transform_edt(padded, sampling=spacing)
    out[box] = (dist > radius_mm)[sl]
    return out


def _bbox(mask: np.ndarray, pad: list[int]) -> tuple[slice, ...] | None:
    """Bounding box of ``mask`` (3-D) grown by ``pad`` voxels per axis; None when it is empty.

    The in-plane extent is read on the occupied slices only: one pass over the whole array
    instead of three (the liver fills a part of a 512 x 512 x 300 CT).
    """
    zs = np.nonzero(mask.any(axis=(1, 2)))[0]
    if zs.size == 0:
        return None
    sub = mask[int(zs[0]):int(zs[-1]) + 1]
    idx = [zs, np.nonzero(sub.any(axis=(0, 2)))[0], np.nonzero(sub.any(axis=(0, 1)))[0]]
    return tuple(slice(max(0, int(i[0]) - p), min(n, int(i[-1]) + p + 1)) for i, p, n in zip(idx, pad, mask.shape))


def distance_in_box(mask: np.ndarray, reach_mm: float, spacing: tuple[float, float, float], *, edge_axes: tuple[int, ...] = (0,)) -> tuple[tuple[slice, ...], np.ndarray] | None:
    """Distance (mm) to ``mask`` in its bounding box grown by ``reach_mm``: (box, distances).

    One transform for several dilations of the same mask: ``dist <= r`` for any ``r <= reach_mm``
    is :func:`dilate_mm` by ``r`` inside the box (nothing outside it); None when ``mask`` is empty.
    """
    box = _bbox(mask, [int(np.ceil(reach_mm / s)) + 2 for s in spacing])
    if box is None:
        return None
    padded, sl = _pad_edge(mask[box], _pad_for(reach_mm, spacing, edge_axes))
    return box, ndi.distance_transform_edt(~padded, sampling=spacing)[sl]


def dilate_mm(mask: np.ndarray, radius_mm: float, spacing: tuple[float, float, float], *, edge_axes: tuple[int, ...] = (0,)) -> np.ndarray:
    """Binary dilation by a ball of ``radius_mm``; borders along ``edge_axes`` are replicated.

    Computed in the mask's bounding box grown by the radius.
    """
    if radius_mm <= 0:
        return mask.copy()
    out = np.zeros_like(mask, dtype=bool)
    got = distance_in_box(mask, radius_mm, spacing, edge_axes=edge_axes)
    if got is not None:
        out[got[0]] = got[1] <= radius_mm
    return out


def open_mm(mask: np.ndarray, radius_mm: float, spacing: tuple[float, float, float]) -> np.ndarray:
    """Morphological opening by a ball of ``radius_mm``."""
    return dilate_mm(erode_mm(mask, radius_mm, spacing), radius_mm, spacing) & mask


def close_mm(mask: np.ndarray, radius_mm: float, spacing: tuple[float, float, float]) -> np.ndarray:
    """Morphological closing by a ball of ``radius_mm`` (in the bounding box grown by twice the radius)."""
    box = _bbox(mask, [2 * int(np.ceil(radius_mm / s)) + 2 for s in spacing])
    if box is None or radius_mm <= 0:
        return mask.copy()
    out = mask.copy()
    sub = mask[box]
    out[box] = erode_mm(dilate_mm(sub, radius_mm, spacing), radius_mm, spacing) | sub
    return out


def fill_holes_2d(mask: np.ndarray, *, max_area_mm2: float | None = None, spacing_yx: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """Fill holes slice by slice (axis 0); with ``max_area_mm2`` only holes up to that area."""
    out = mask.copy()
    px = spacing_yx[0] * spacing_yx[1]
    for z in range(mask.shape[0]):
        sl = mask[z]
        if not sl.any():
            continue
        filled = ndi.binary_fill_holes(sl)
        if max_area_mm2 is None:
            out[z] = filled
            continue
        holes = filled & ~sl
        if not holes.any():
            continue
        lab, n = ndi.label(holes)
        areas = ndi.sum_labels(np.ones_like(lab), lab, index=np.arange(1, n + 1)) * px
        keep = np.zeros(n + 1, dtype=bool)
        keep[1:] = areas <= max_area_mm2
        out[z] |= keep[lab]
    return out


def largest_components(mask: np.ndarray, *, connectivity: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """Connected components (cc3d) and their voxel counts (index 0 = background)."""
    import cc3d

    lab = cc3d.connected_components(np.ascontiguousarray(mask, dtype=np.uint8), connectivity=connectivity)
    counts = np.bincount(lab.ravel())
    return lab, counts


def face_touching(a: np.ndarray) -> np.ndarray:
    """Voxels with a face neighbour (6-connectivity) in ``a``; slicing, no structuring element."""
    out = np.zeros(a.shape, bool)
    for ax in range(a.ndim):
        lo = [slice(None)] * a.ndim
        hi = [slice(None)] * a.ndim
        lo[ax], hi[ax] = slice(1, None), slice(None, -1)
        out[tuple(lo)] |= a[tuple(hi)]
        out[tuple(hi)] |= a[tuple(lo)]
    return out
