"""Grid geometry, rigid/elastic motion and partial-volume rasterisation of implicit shapes.

Every shape of the phantom is a signed distance function (SDF) written in the
*anatomy frame*: millimetres in patient LPS (x towards the patient's left, y towards
posterior, z towards superior), negative inside.  The scanner frame is the same frame
moved by an optional :class:`Motion`.  Shapes are rasterised voxel by voxel on the
scanner grid: a voxel whose centre is farther from the surface than half its diagonal
is fully inside or outside; only the voxels the surface crosses are supersampled, so
partial volume is exact to the subsample step without supersampling the whole grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

__all__ = [
    "Motion",
    "Grid",
    "SDF",
    "rasterise",
    "rotation_matrix",
    "smooth_min",
    "smooth_max",
]

F = np.float32

#: signature of an implicit shape: (x, y, z) arrays in anatomy-frame mm, broadcastable, -> signed distance mm
SDF = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def rotation_matrix(rotation_deg: tuple[float, float, float]) -> np.ndarray:
    """Rotation about the x, then y, then z axis (degrees, right-handed), as a 3x3 matrix."""
    ax, ay, az = np.deg2rad(np.asarray(rotation_deg, dtype=float))
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


@dataclass(frozen=True)
class Motion:
    """Patient motion between the anatomy frame and the scanner frame.

    The scanner position of an anatomy point ``q`` (LPS mm) is
    ``p = c + R (q - c) + t + D(q)`` with ``R`` the rotation, ``t`` the translation,
    ``c`` the rotation centre and ``D`` a smooth deformation field of peak amplitude
    ``deform_mm`` (sum of three long-wavelength sinusoids, wavelength ``deform_wavelength_mm``).

    Attributes
    ----------
    rotation_deg: (rx, ry, rz) degrees about the LPS x, y, z axes.
    translation_mm: (tx, ty, tz) mm.
    deform_mm: peak displacement of the smooth deformation, mm (0 = rigid).
    deform_wavelength_mm: spatial wavelength of the deformation, mm.
    centre_mm: rotation centre in anatomy-frame LPS mm.
    seed: phase seed of the deformation field.
    """

    rotation_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)
    translation_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    deform_mm: float = 0.0
    deform_wavelength_mm: float = 180.0
    centre_mm: tuple[float, float, float] = (-40.0, 0.0, 0.0)
    seed: int = 0

    @property
    def is_identity(self) -> bool:
        return (
            not any(self.rotation_deg) and not any(self.translation_mm) and self.deform_mm == 0.0
        )

    def _deform_params(self) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([int(self.seed), 7177])
        k = rng.normal(size=(3, 3))
        k /= np.linalg.norm(k, axis=1, keepdims=True)
        k *= 2 * np.pi / self.deform_wavelength_mm
        phase = rng.uniform(0, 2 * np.pi, size=3)
        return k, phase

    def displacement(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, ...]:
        """Deformation D(q) at anatomy points, mm; each component's peak is ``deform_mm``."""
        if self.deform_mm == 0.0:
            zero = np.zeros(np.broadcast_shapes(np.shape(x), np.shape(y), np.shape(z)), dtype=F)
            return zero, zero, zero
        k, ph = self._deform_params()
        out = []
        for i in range(3):
            arg = k[i, 0] * x + k[i, 1] * y + k[i, 2] * z + ph[i]
            out.append((self.deform_mm * np.sin(arg)).astype(F, copy=False))
        return tuple(out)

    def forward(self, q: np.ndarray) -> np.ndarray:
        """Anatomy-frame points (N, 3) or (3,) -> scanner-frame points (LPS mm)."""
        q = np.asarray(q, dtype=float)
        r = rotation_matrix(self.rotation_deg)
        c = np.asarray(self.centre_mm)
        p = (q - c) @ r.T + c + np.asarray(self.translation_mm)
        d = self.displacement(q[..., 0], q[..., 1], q[..., 2])
        return p + np.stack([np.asarray(v, dtype=float) for v in d], axis=-1)

    def inverse_arrays(
        self, px: np.ndarray, py: np.ndarray, pz: np.ndarray, *, iterations: int = 4
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Scanner-frame coordinate arrays -> anatomy-frame arrays (fixed-point inversion)."""
        r = rotation_matrix(self.rotation_deg).astype(F)
        c = np.asarray(self.centre_mm, dtype=F)
        t = np.asarray(self.translation_mm, dtype=F)
        shape = np.broadcast_shapes(np.shape(px), np.shape(py), np.shape(pz))
        bx = np.broadcast_to(px, shape).astype(F) - t[0] - c[0]
        by = np.broadcast_to(py, shape).astype(F) - t[1] - c[1]
        bz = np.broadcast_to(pz, shape).astype(F) - t[2] - c[2]
        dx = dy = dz = np.zeros(shape, dtype=F)
        qx = qy = qz = None
        for _ in range(iterations if self.deform_mm else 1):
            ux, uy, uz = bx - dx, by - dy, bz - dz
            # q - c = R^T u
            qx = r[0, 0] * ux + r[1, 0] * uy + r[2, 0] * uz + c[0]
            qy = r[0, 1] * ux + r[1, 1] * uy + r[2, 1] * uz + c[1]
            qz = r[0, 2] * ux + r[1, 2] * uy + r[2, 2] * uz + c[2]
            if not self.deform_mm:
                break
            dx, dy, dz = self.displacement(qx, qy, qz)
        return qx, qy, qz


@dataclass(frozen=True)
class Grid:
    """A scanner voxel grid with identity direction (LPS) and an optional motion.

    Attributes
    ----------
    shape_zyx: number of voxels along z, y, x.
    spacing_zyx: voxel spacing, mm.
    origin_lps: LPS mm of the centre of voxel (0, 0, 0).
    motion: anatomy -> scanner motion, or None for identity.
    """

    shape_zyx: tuple[int, int, int]
    spacing_zyx: tuple[float, float, float]
    origin_lps: tuple[float, float, float]
    motion: Motion | None = None
    direction: tuple[float, ...] | None = None  # ITK row-major 3x3; None = identity (LPS)

    @property
    def moving(self) -> bool:
        return self.motion is not None and not self.motion.is_identity

    @property
    def half_diagonal_mm(self) -> float:
        return 0.5 * float(np.linalg.norm(self.spacing_zyx))

    def index_to_scanner(self, z: np.ndarray, y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, ...]:
        sz, sy, sx = self.spacing_zyx
        ox, oy, oz = self.origin_lps
        if self.direction is not None:
            d = np.asarray(self.direction, dtype=F).reshape(3, 3)
            i = np.asarray(x, dtype=F) * F(sx)
            j = np.asarray(y, dtype=F) * F(sy)
            k = np.asarray(z, dtype=F) * F(sz)
            return tuple((F(o) + d[r, 0] * i + d[r, 1] * j + d[r, 2] * k).astype(F, copy=False) for r, o in enumerate((ox, oy, oz)))
        return (
            (ox + np.asarray(x, dtype=F) * F(sx)).astype(F, copy=False),
            (oy + np.asarray(y, dtype=F) * F(sy)).astype(F, copy=False),
            (oz + np.asarray(z, dtype=F) * F(sz)).astype(F, copy=False),
        )

    def index_to_anatomy(self, z: np.ndarray, y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, ...]:
        """Fractional (z, y, x) index arrays (broadcastable) -> anatomy-frame (x, y, z) mm."""
        px, py, pz = self.index_to_scanner(z, y, x)
        if not self.moving:
            return px, py, pz
        return self.motion.inverse_arrays(px, py, pz)  # type: ignore[union-attr]

    def anatomy_to_scanner(self, q: np.ndarray) -> np.ndarray:
        q = np.asarray(q, dtype=float)
        return self.motion.forward(q) if self.moving else q.copy()  # type: ignore[union-attr]

    def scanner_to_index(self, p: np.ndarray) -> np.ndarray:
        """LPS mm (..., 3) -> fractional (z, y, x) index (..., 3)."""
        p = np.asarray(p, dtype=float)
        if self.direction is not None:
            m = np.asarray(self.direction, float).reshape(3, 3) @ np.diag(self.spacing_zyx[::-1])
            ijk = (p - np.asarray(self.origin_lps)) @ np.linalg.inv(m).T
            return ijk[..., ::-1]
        ijk = (p - np.asarray(self.origin_lps)) / np.asarray(self.spacing_zyx[::-1])
        return ijk[..., ::-1]

    def anatomy_to_index(self, q: np.ndarray) -> np.ndarray:
        return self.scanner_to_index(self.anatomy_to_scanner(q))

    def bbox(self, lo_mm: np.ndarray, hi_mm: np.ndarray, *, pad_vox: int = 1) -> tuple[slice, slice, slice] | None:
        """Voxel slices (z, y, x) covering an anatomy-frame box, clipped; None when outside the grid."""
        lo = np.asarray(lo_mm, dtype=float)
        hi = np.asarray(hi_mm, dtype=float)
        corners = np.array([[a, b, c] for a in (lo[0], hi[0]) for b in (lo[1], hi[1]) for c in (lo[2], hi[2])])
        margin = 0.0
        if self.moving:
            corners = self.motion.forward(corners)  # type: ignore[union-attr]
            margin = float(self.motion.deform_mm) * 1.8  # type: ignore[union-attr]
        plo = corners.min(axis=0) - margin
        phi = corners.max(axis=0) + margin
        ilo = self.scanner_to_index(plo)
        ihi = self.scanner_to_index(phi)
        out = []
        for ax in range(3):
            a = int(np.floor(min(ilo[ax], ihi[ax]))) - pad_vox
            b = int(np.ceil(max(ilo[ax], ihi[ax]))) + pad_vox + 1
            a = max(a, 0)
            b = min(b, self.shape_zyx[ax])
            if b <= a:
                return None
            out.append(slice(a, b))
        return tuple(out)  # type: ignore[return-value]

    def bbox_coords(self, sl: tuple[slice, slice, slice]) -> tuple[np.ndarray, ...]:
        """Anatomy coordinates of the voxel centres of a bbox (broadcastable when not moving)."""
        z = np.arange(sl[0].start, sl[0].stop, dtype=F)[:, None, None]
        y = np.arange(sl[1].start, sl[1].stop, dtype=F)[None, :, None]
        x = np.arange(sl[2].start, sl[2].stop, dtype=F)[None, None, :]
        if self.moving:
            shape = (z.shape[0], y.shape[1], x.shape[2])
            z, y, x = (np.broadcast_to(a, shape) for a in (z, y, x))
        return self.index_to_anatomy(z, y, x)


def smooth_min(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth minimum (union of SDFs) with blend radius ``k`` mm."""
    if k <= 0:
        return np.minimum(a, b)
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b + (a - b) * h - k * h * (1.0 - h)


def smooth_max(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth maximum (intersection of SDFs) with blend radius ``k`` mm."""
    return -smooth_min(-a, -b, k)


def _subsample_offsets(spacing_zyx: tuple[float, float, float], step_mm: float, max_sub: int) -> np.ndarray:
    """Offsets (S, 3) in index units (z, y, x) of a regular subsample lattice inside one voxel."""
    counts = [int(np.clip(np.ceil(s / step_mm), 1, max_sub)) for s in spacing_zyx]
    axes = [((np.arange(n) + 0.5) / n - 0.5).astype(F) for n in counts]
    g = np.meshgrid(*axes, indexing="ij")
    return np.stack([a.ravel() for a in g], axis=1)


def rasterise(
    grid: Grid,
    sdf: SDF,
    lo_mm: np.ndarray,
    hi_mm: np.ndarray,
    *,
    step_mm: float = 0.5,
    max_sub: int = 6,
    lipschitz: float = 1.25,
    z_invariant: bool = False,
) -> tuple[tuple[slice, slice, slice], np.ndarray] | None:
    """Fractional coverage (0..1, float32) of an implicit shape on the voxels of its box.

    Parameters
    ----------
    grid: Grid
        The scanner grid.
    sdf: callable
        Signed distance (mm, negative inside) of anatomy-frame coordinates.
    lo_mm, hi_mm: array-like of 3
        Anatomy-frame box (x, y, z) that contains the shape.
    step_mm: float
        Largest subsample step for voxels the surface crosses.
    max_sub: int
        Most subsamples per axis.
    lipschitz: float
        Upper bound of |grad sdf|; voxels with |sdf| below half-diagonal x this are supersampled.
    z_invariant: bool
        The shape does not depend on z (and there is no motion): computed on one slice and broadcast.

    Returns
    -------
    (slices, coverage) or None when the box misses the grid.
    """
    sl = grid.bbox(lo_mm, hi_mm)
    if sl is None:
        return None
    if z_invariant and not grid.moving:
        one = (slice(sl[0].start, sl[0].start + 1), sl[1], sl[2])
        res = _rasterise_box(grid, sdf, one, step_mm=step_mm, max_sub=max_sub, lipschitz=lipschitz, subsample_z=False)
        n = sl[0].stop - sl[0].start
        return sl, np.broadcast_to(res, (n,) + res.shape[1:])
    return sl, _rasterise_box(grid, sdf, sl, step_mm=step_mm, max_sub=max_sub, lipschitz=lipschitz)


def _rasterise_box(
    grid: Grid,
    sdf: SDF,
    sl: tuple[slice, slice, slice],
    *,
    step_mm: float,
    max_sub: int,
    lipschitz: float,
    subsample_z: bool = True,
    block: int = 4,
    direct_limit: int = 300_000,
) -> np.ndarray:
    """Coverage on a box: direct evaluation for small boxes; for large ones, blocks of
    ``block``^3 voxels whose centre is farther from the surface than the block's
    half-diagonal are filled at once and only the remaining blocks are evaluated per voxel."""
    shape = tuple(s.stop - s.start for s in sl)
    n_vox = shape[0] * shape[1] * shape[2]
    if n_vox <= direct_limit:
        x, y, z = grid.bbox_coords(sl)
        d = np.broadcast_to(np.asarray(sdf(x, y, z), dtype=F), shape)
        cov = (d < 0).astype(F)
        edge = np.nonzero(np.abs(d) < grid.half_diagonal_mm * lipschitz)
        if edge[0].size:
            cov[edge] = _supersample(grid, sdf, [e + s.start for e, s in zip(edge, sl)], step_mm=step_mm, max_sub=max_sub, subsample_z=subsample_z)
        return cov
    B = block if shape[0] > 1 else 1
    bz = B
    nb = [-(-shape[0] // bz), -(-shape[1] // block), -(-shape[2] // block)]
    steps = (bz, block, block)
    # block centres (fractional index), clipped to the box
    cen = []
    for ax in range(3):
        k = np.arange(nb[ax])
        lo = k * steps[ax]
        hi = np.minimum(lo + steps[ax], shape[ax]) - 1
        cen.append(((lo + hi) / 2.0 + sl[ax].start).astype(F))
    zc, yc, xc = cen[0][:, None, None], cen[1][None, :, None], cen[2][None, None, :]
    if grid.moving:
        full = (nb[0], nb[1], nb[2])
        zc, yc, xc = (np.broadcast_to(a, full) for a in (zc, yc, xc))
    qx, qy, qz = grid.index_to_anatomy(zc, yc, xc)
    db = np.broadcast_to(np.asarray(sdf(qx, qy, qz), dtype=F), tuple(nb))
    ext = np.asarray(steps, float) * np.asarray(grid.spacing_zyx)
    thr = F(0.5 * np.linalg.norm(ext) * lipschitz)
    inside_b = db < -thr
    cov = np.repeat(np.repeat(np.repeat(inside_b.astype(F), steps[0], 0), steps[1], 1), steps[2], 2)[: shape[0], : shape[1], : shape[2]]
    cov = np.ascontiguousarray(cov)
    amb = np.argwhere(np.abs(db) <= thr)
    if amb.size == 0:
        return cov
    off = np.stack(np.meshgrid(np.arange(steps[0]), np.arange(steps[1]), np.arange(steps[2]), indexing="ij"), -1).reshape(-1, 3)
    out_cov_parts = []
    chunk = max(1, 2_000_000 // off.shape[0])
    for a in range(0, amb.shape[0], chunk):
        vox = (amb[a : a + chunk, None, :] * np.asarray(steps) + off[None]).reshape(-1, 3)
        keep = np.all(vox < np.asarray(shape), axis=1)
        vox = vox[keep]
        zi, yi, xi = (vox[:, i] + sl[i].start for i in range(3))
        px, py, pz = grid.index_to_anatomy(zi.astype(F), yi.astype(F), xi.astype(F))
        d = np.asarray(sdf(px, py, pz), dtype=F)
        vals = (d < 0).astype(F)
        e = np.abs(d) < grid.half_diagonal_mm * lipschitz
        if e.any():
            vals[e] = _supersample(grid, sdf, [zi[e], yi[e], xi[e]], step_mm=step_mm, max_sub=max_sub, subsample_z=subsample_z)
        out_cov_parts.append((vox, vals))
    for vox, vals in out_cov_parts:
        cov[vox[:, 0], vox[:, 1], vox[:, 2]] = vals
    return cov


def _supersample(grid: Grid, sdf: SDF, idx: list[np.ndarray], *, step_mm: float, max_sub: int, subsample_z: bool) -> np.ndarray:
    """Fraction of subsamples inside the shape for voxels at integer indices ``idx`` = [z, y, x]."""
    sp = grid.spacing_zyx if subsample_z else (1e-6, grid.spacing_zyx[1], grid.spacing_zyx[2])
    off = _subsample_offsets(sp, step_mm, max_sub)
    zi = np.asarray(idx[0], dtype=F)[:, None] + off[None, :, 0]
    yi = np.asarray(idx[1], dtype=F)[:, None] + off[None, :, 1]
    xi = np.asarray(idx[2], dtype=F)[:, None] + off[None, :, 2]
    n = zi.shape[0]
    chunk = max(1, 4_000_000 // off.shape[0])
    vals = np.empty(n, dtype=F)
    for a in range(0, n, chunk):
        b = min(n, a + chunk)
        qx, qy, qz = grid.index_to_anatomy(zi[a:b], yi[a:b], xi[a:b])
        ds = np.asarray(sdf(qx, qy, qz))
        vals[a:b] = (ds < 0).mean(axis=1, dtype=F)
    return vals
