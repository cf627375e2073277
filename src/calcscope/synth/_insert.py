"""Inserting synthetic findings into a real CT inside a given liver mask."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from ..errors import MaskError
from ..model import Volume
from ._anatomy import Segment
from ._geometry import F, Grid
from ._objects import EXPECTED_KIND, children_of, SHAPE_WORD, Built, build_objects, rasterise_object, rasterise_part
from ._truth import ObjectSpec, Truth, TruthObject

__all__ = ["insert_objects", "insertion_truth", "MaskLiver", "estimate_noise_hu"]


@dataclass
class MaskLiver:
    """The parts of :class:`~calcscope.synth._anatomy.Anatomy` the object builders need, from a liver mask.

    The liver SDF is a signed Euclidean distance transform of the mask (mm, negative
    inside) interpolated trilinearly; the left/right split is a sagittal-oblique plane
    at 62 % of the liver's right-to-left extent (an approximation of Cantlie's plane);
    ``avoid`` holds bright (enhanced vessel or calcified) voxels that placement keeps clear of.
    """

    grid: Grid
    sdf_crop: np.ndarray  # float32 (z, y, x) on the crop
    crop_start: np.ndarray  # (3,) z, y, x index of the crop origin
    bright_dist: np.ndarray  # float32 mm distance to bright voxels on the crop
    cantlie_x0: float
    cantlie_slope: float = 0.0
    lo: np.ndarray = field(default_factory=lambda: np.zeros(3))
    hi: np.ndarray = field(default_factory=lambda: np.zeros(3))
    ivc_xy: tuple[float, float] = (1e6, 1e6)
    segments: list[Segment] = field(default_factory=list)
    landmarks: dict[str, tuple[float, float, float]] = field(default_factory=dict)

    def _interp(self, arr: np.ndarray, x, y, z, outside: float) -> np.ndarray:
        shape = np.broadcast_shapes(np.shape(x), np.shape(y), np.shape(z))
        pts = np.stack([np.broadcast_to(np.asarray(v, float), shape).ravel() for v in (x, y, z)], axis=1)
        idx = self.grid.scanner_to_index(pts) - self.crop_start
        v = ndimage.map_coordinates(arr, idx.T, order=1, mode="constant", cval=outside)
        return v.reshape(shape).astype(F)

    def liver_sdf(self, x, y, z):
        return self._interp(self.sdf_crop, x, y, z, 50.0)

    def liver_sdf_point(self, p) -> float:
        p = np.asarray(p, float)
        return float(self.liver_sdf(p[0], p[1], p[2]))

    def liver_sdf_points(self, p) -> np.ndarray:
        p = np.asarray(p, float)
        return np.asarray(self.liver_sdf(p[:, 0], p[:, 1], p[:, 2]), float)

    def liver_grad(self, p, h: float = 1.0) -> np.ndarray:
        p = np.asarray(p, float)
        pts = np.array([p + e for e in np.eye(3) * h] + [p - e for e in np.eye(3) * h])
        v = self.liver_sdf_points(pts)
        g = (v[:3] - v[3:]) / (2 * h)
        n = np.linalg.norm(g)
        return g / n if n > 0 else np.array([0.0, 0.0, 1.0])

    def liver_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return self.lo.copy(), self.hi.copy()

    def is_left_lobe(self, x, y, z):
        return np.asarray(x) > F(self.cantlie_x0) + F(self.cantlie_slope) * np.asarray(y)

    def clearance_mm(self, pts: np.ndarray) -> np.ndarray:
        """Distance (mm) from points (N, 3) to the nearest bright voxel."""
        return self._interp(self.bright_dist, pts[:, 0], pts[:, 1], pts[:, 2], 0.0).astype(float)


def estimate_noise_hu(volume: Volume, liver_mask: np.ndarray) -> float:
    """Noise of the scan in the liver, HU: robust SD (1.4826 x MAD) of the eroded liver's voxels.

    Like an ROI standard deviation it includes the parenchyma's own texture; voxels more
    than 60 HU from the median (vessels, lesions, calcifications) are left out first.
    """
    m = ndimage.binary_erosion(liver_mask.astype(bool), iterations=2)
    if m.sum() < 100:
        m = liver_mask.astype(bool)
    vals = volume.array[m].astype(np.float64)
    if vals.size == 0:
        return 0.0
    med = float(np.median(vals))
    vals = vals[np.abs(vals - med) < 60.0]
    mad = float(np.median(np.abs(vals - np.median(vals))))
    return round(1.4826 * mad, 2)


def _mask_liver(volume: Volume, liver_mask: np.ndarray) -> MaskLiver:
    grid = Grid(volume.shape, volume.spacing_zyx, volume.origin_lps, None, volume.direction)
    objs = ndimage.find_objects(liver_mask.astype(np.uint8))
    if not objs:
        raise MaskError("the liver mask is empty", hint="give a mask with the liver voxels set")
    sl = objs[0]
    pad = 4
    sl = tuple(slice(max(0, s.start - pad), min(n, s.stop + pad)) for s, n in zip(sl, volume.shape))
    m = liver_mask[sl].astype(bool)
    sp = volume.spacing_zyx
    inside = ndimage.distance_transform_edt(m, sampling=sp)
    outside = ndimage.distance_transform_edt(~m, sampling=sp)
    half = 0.5 * min(sp)
    sdf = np.where(m, -(inside - half), outside - half).astype(F)
    sub = volume.array[sl].astype(F)
    med = float(np.median(sub[m]))
    bright = m & (sub > med + 45.0)
    bright = ndimage.binary_opening(bright) | (m & (sub > med + 150.0))
    bd = ndimage.distance_transform_edt(~bright, sampling=sp).astype(F) if bright.any() else np.full(m.shape, 1e3, F)
    # liver bounds in LPS from the crop corners
    zz, yy, xx = np.nonzero(m)
    idx = np.stack([zz + sl[0].start, yy + sl[1].start, xx + sl[2].start], axis=1).astype(float)
    pts = grid.index_to_scanner(idx[:, 0], idx[:, 1], idx[:, 2])
    P = np.stack(pts, axis=1).astype(float)
    lo, hi = P.min(axis=0), P.max(axis=0)
    # Cantlie's plane approximated at 62 % of the extent from the patient's right (LPS: small x)
    x0 = float(lo[0] + 0.62 * (hi[0] - lo[0]))
    return MaskLiver(grid=grid, sdf_crop=sdf, crop_start=np.array([s.start for s in sl], float), bright_dist=bd, cantlie_x0=x0, lo=lo, hi=hi)


def insert_objects(
    volume: Volume,
    liver_mask: np.ndarray,
    specs: list[ObjectSpec],
    *,
    seed: int,
    phase: str = "portal_venous",
    psf_mm: float = 0.5,
) -> tuple[Volume, np.ndarray, list[TruthObject]]:
    """Insert calcifications and lesions into a real CT inside ``liver_mask``.

    Each object is rasterised with exact partial volume on the scan's own grid (any
    direction), then added as a *contrast* over the local background (the CT smoothed
    with a 2 mm Gaussian), so the scan's own noise and texture stay inside the object;
    the added contrast is blurred by a Gaussian point-spread function of ``psf_mm``.
    Objects are placed at random (seeded) fully inside the mask, clear of bright
    (enhanced vessel) voxels and of each other, unless their spec gives ``centre_mm``
    (LPS, mm).  Ducts are not supported.

    Parameters
    ----------
    volume: Volume
        The real CT (HU).
    liver_mask: (Z, Y, X) bool
        Liver mask on the volume's grid.
    specs: list of ObjectSpec
        Calcifications and lesions (children may name a lesion as parent).
    seed: int
        Placement and shape seed.
    phase: str
        Phase used for default lesion HU.
    psf_mm: float
        Standard deviation of the in-plane blur applied to the inserted contrast (0 = none).

    Returns
    -------
    (Volume, labels, objects)
        The new volume (same geometry; float32 when the input was float, else int16),
        an int32 label map (value = ``TruthObject.label``) and the truth objects.
    """
    if liver_mask.shape != volume.shape:
        raise MaskError(f"the liver mask shape {liver_mask.shape} differs from the volume shape {volume.shape}")
    if any(s.type == "duct" for s in specs):
        raise ValueError("insert_objects places calcifications and lesions; ducts are not supported")
    ml = _mask_liver(volume, liver_mask.astype(bool))
    grid = ml.grid
    built = build_objects(specs, an=ml, grid=grid, phase=phase, seed=seed, clearance=ml.clearance_mm)  # type: ignore[arg-type]
    arr = volume.array.astype(F)
    out = arr.copy()
    labels = np.zeros(volume.shape, np.int32)
    own: list = [None] * len(built)
    order = [i for i, b in enumerate(built) if b.spec.type != "calcification"] + [i for i, b in enumerate(built) if b.spec.type == "calcification"]
    sp = volume.spacing_zyx
    for i in order:
        b = built[i]
        res = rasterise_object(grid, b)
        if res is None:
            continue
        sl, cov = res
        pad = 4
        big = tuple(slice(max(0, s.start - pad), min(n, s.stop + pad)) for s, n in zip(sl, volume.shape))
        inner = tuple(slice(s.start - g.start, s.stop - g.start) for s, g in zip(sl, big))
        # local background of the current image (earlier objects included), noise smoothed out
        bg = ndimage.gaussian_filter(out[big], [2.0 / s for s in sp])[inner]
        target = np.full(cov.shape, F(b.base_hu))
        for piece, hu in b.parts:
            pres = rasterise_part(grid, piece, b.step_mm())
            if pres is None:
                continue
            psl, pcov = pres
            tgt = tuple(slice(max(p.start, s.start), min(p.stop, s.stop)) for p, s in zip(psl, sl))
            if any(t.stop <= t.start for t in tgt):
                continue
            pc = pcov[tuple(slice(t.start - p.start, t.stop - p.start) for t, p in zip(tgt, psl))]
            loc = tuple(slice(t.start - s.start, t.stop - s.start) for t, s in zip(tgt, sl))
            target[loc] += pc * (F(hu) - target[loc])
        delta = np.zeros(out[big].shape, F)
        delta[inner] = cov * (target - bg)
        if psf_mm > 0:
            delta = ndimage.gaussian_filter(delta, [0.0, psf_mm / sp[1], psf_mm / sp[2]])
        out[big] += delta
        mask = cov >= 0.5
        if not mask.any() and cov.max() > 0:
            mask = cov == cov.max()
        labels[sl][mask] = i + 1
        own[i] = (sl, cov, mask, bg + delta[inner])
    objs = _truth(grid, ml, built, own, volume.voxel_volume_mm3)
    if np.issubdtype(volume.array.dtype, np.integer):
        new = np.clip(np.rint(out), -32768, 32767).astype(np.int16)
    else:
        new = out.astype(np.float32)
    nv = volume.with_array(new)
    nv.meta["inserted_objects"] = len(objs)
    return nv, labels, objs


def _truth(grid: Grid, ml: MaskLiver, built: list[Built], own: list, vox: float) -> list[TruthObject]:
    children = children_of(built)
    out = []
    for i, b in enumerate(built):
        sp = b.spec
        c_idx = grid.scanner_to_index(b.centre)
        if own[i] is not None:
            sl, cov, mask, clean = own[i]
            n = int(mask.sum())
            vol_pv = float(cov.sum(dtype=np.float64)) * vox
            vals = clean[mask]
            hu_meas, hu_peak = (float(vals.mean()), float(vals.max())) if vals.size else (None, None)
        else:
            n, vol_pv, hu_meas, hu_peak = 0, 0.0, None, None
        depth_mm = -ml.liver_sdf_point(b.centre)
        r = b.radius_mm
        depth = "capsular" if sp.subtype == "capsular" or depth_mm - r <= 1.0 else ("subcapsular" if depth_mm - r <= 10.0 else "deep")
        out.append(
            TruthObject(
                id=sp.id, label=i + 1, type=sp.type, subtype=sp.subtype,  # type: ignore[arg-type]
                expected_kind="calcification" if sp.type == "calcification" else EXPECTED_KIND[sp.subtype],  # type: ignore[arg-type]
                centre_mm=tuple(round(float(v), 3) for v in b.centre),  # type: ignore[arg-type]
                centre_voxel=tuple(round(float(v), 3) for v in c_idx),  # type: ignore[arg-type]
                size_mm=round(float(sp.size_mm), 3), volume_mm3=round(n * vox, 3), volume_pv_mm3=round(vol_pv, 3),
                volume_analytic_mm3=round(float(b.analytic_volume_mm3 if b.analytic_volume_mm3 is not None else vol_pv), 3),
                voxel_count=n, hu=float(sp.hu),  # type: ignore[arg-type]
                hu_measured=None if hu_meas is None else round(hu_meas, 2), hu_peak=None if hu_peak is None else round(hu_peak, 2),
                lobe="left" if bool(ml.is_left_lobe(b.centre[0], b.centre[1], b.centre[2])) else "right",
                depth=depth, depth_mm=round(float(depth_mm), 2), parent=sp.parent, relation=sp.relation,  # type: ignore[arg-type]
                children=children.get(sp.id, []),  # type: ignore[arg-type]
                shape=SHAPE_WORD.get(sp.subtype) if sp.type == "calcification" else None,
                n_components=b.n_components, spec=sp,
            )
        )
    return out


def insertion_truth(volume: Volume, objects: list[TruthObject], *, seed: int, phase: str, noise_hu: float | None = None) -> Truth:
    """A :class:`Truth` document for an insertion case (for ``calcscope evaluate``)."""
    from ._presets import derive_distribution

    calcs = [(o.subtype, o.lobe, o.parent, np.asarray(o.centre_mm)) for o in objects if o.type == "calcification"]
    return Truth(
        source="insertion", preset=None, seed=int(seed), phase=phase, shape_zyx=volume.shape, spacing_zyx=volume.spacing_zyx,
        origin_lps=volume.origin_lps, direction=tuple(volume.direction), noise_hu=float(noise_hu or 0.0), objects=objects,
        calcification_distribution=derive_distribution(calcs),  # type: ignore[arg-type]
        has_duct_dilatation=False,
    )

