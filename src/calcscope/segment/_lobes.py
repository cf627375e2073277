"""Right/left lobe split along an approximate Cantlie plane (IVC - gallbladder fossa)."""

from __future__ import annotations

import numpy as np

from ..model import Volume
from ._classical import _body_mask, coarse_image
from ._grid import block_reduce_mask, to_canonical
from ._landmarks import IVC_FROM_AORTA_MM, find_aorta, find_gallbladder, find_ivc

__all__ = ["split_lobes", "cantlie_plane"]

#: default Cantlie direction when no gallbladder is seen: dx/dy going anteriorly (x falls to the right)
_DEFAULT_SLOPE = 0.2


def cantlie_plane(volume: Volume, liver_mask: np.ndarray, *, work_spacing_mm: float = 2.5) -> tuple[tuple[float, float], float, list[str]]:
    """Vertical Cantlie plane on the canonical grid as x = x0 + slope * (y - y0) in mm.

    Returns ((y0_mm, x0_mm), slope, notes); y0/x0 are canonical-grid millimetres (index x spacing).
    The plane runs through the IVC (located by its attenuation right of the aorta, see
    ``find_ivc``; placed at a fixed offset from the aorta when it enhances like the liver; the
    posterior-medial liver edge when no aorta is found) and the gallbladder fossa (gallbladder centroid when a
    fluid-filled gallbladder is seen; otherwise a fixed anatomical obliquity).
    """
    notes: list[str] = []
    can, img, sp, f = coarse_image(volume, work_spacing_mm)
    lm = block_reduce_mask(can.from_native(liver_mask), f)
    if not lm.any():
        lm = block_reduce_mask(can.from_native(liver_mask), f, level=0.0)
    body = _body_mask(img, -400.0)
    zs = np.nonzero(lm.any(axis=(1, 2)))[0]
    keep = np.zeros(body.shape[0], bool)
    keep[zs.min():zs.max() + 1] = True
    aorta = find_aorta(img, body & keep[:, None, None], sp)
    zz, yy, xx = np.nonzero(lm)
    liver_hu = float(np.median(img[lm]))
    ivc = None
    if aorta is not None:
        ivc = find_ivc(img, (int(zs.min()), int(zs.max())), aorta, sp, liver_hu=liver_hu)
        if ivc.any(axis=(1, 2)).sum() < 0.3 * zs.size:
            ivc = None
    if ivc is not None:
        iz, iy, ix = np.nonzero(ivc)
        ivc_y, ivc_x = float(np.median(iy)) * sp[1], float(np.median(ix)) * sp[2]
        notes.append("IVC located by its attenuation right of the aorta")
    elif aorta is not None:
        ivc_y = aorta.centre_yx[0] * sp[1] + IVC_FROM_AORTA_MM[0]
        ivc_x = aorta.centre_yx[1] * sp[2] + IVC_FROM_AORTA_MM[1]
        notes.append("IVC placed from the aorta position (its attenuation equals the liver's)")
    else:
        # posterior-medial corner of the liver
        sel = yy >= np.percentile(yy, 75)
        ivc_y = float(np.median(yy[sel])) * sp[1]
        ivc_x = float(np.percentile(xx[sel], 90)) * sp[2]
        notes.append("aorta not found; IVC placed at the posterior-medial liver edge")
    gb = find_gallbladder(img, lm, sp, liver_hu=liver_hu)
    slope = _DEFAULT_SLOPE
    if gb is not None:
        gy, gx = gb[1] * sp[1], gb[2] * sp[2]
        if gy < ivc_y - 20.0:
            s = (ivc_x - gx) / (ivc_y - gy)
            if -0.2 <= s <= 0.8:
                slope = float(s)
                notes.append("Cantlie plane through the IVC and the gallbladder")
    if slope == _DEFAULT_SLOPE:
        notes.append("gallbladder not used; Cantlie plane at a fixed 11 degree obliquity through the IVC")
    return (ivc_y, ivc_x), slope, notes


def split_lobes(volume: Volume, liver_mask: np.ndarray, *, work_spacing_mm: float = 2.5) -> tuple[np.ndarray, list[str]]:
    """Label the liver 1 (right lobe) / 2 (left lobe) on the volume's grid.

    This is an approximation of Cantlie's line by a vertical plane; the caudate lobe is not
    separated and Couinaud segments are not assigned.
    """
    out = np.zeros(liver_mask.shape, np.uint8)
    if not liver_mask.any():
        return out, ["empty liver mask: no lobes"]
    (y0, x0), slope, notes = cantlie_plane(volume, liver_mask, work_spacing_mm=work_spacing_mm)
    can = to_canonical(volume)
    sy, sx = can.spacing_zyx[1], can.spacing_zyx[2]
    m = can.from_native(liver_mask)
    rows = np.nonzero(m.any(axis=(0, 2)))[0]
    cols = np.nonzero(m.any(axis=(0, 1)))[0]
    ys = (np.arange(rows[0], rows[-1] + 1) * sy)[:, None]
    xs = (np.arange(cols[0], cols[-1] + 1) * sx)[None, :]
    left2d = xs > x0 + slope * (ys - y0)
    lab2d = np.where(left2d, 2, 1).astype(np.uint8)
    # labels written through a canonical view of the output, inside the liver's in-plane box only
    out_can = can.from_native(out)
    box = (slice(None), slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1))
    out_can[box] = np.where(m[box], lab2d[None], 0)
    return out, notes
