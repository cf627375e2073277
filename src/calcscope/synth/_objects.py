"""Findings as implicit shapes: placement in the liver, geometry, and rasterisation.

Every finding is built from an :class:`~calcscope.synth.ObjectSpec` into a
:class:`Built` object: one or more *pieces* (SDF + bounding box) whose coverage
union is the finding's own mask, a base HU, and optional *parts* painted inside it
(an enhancing rim, a necrotic centre, daughter cysts, a central scar, nodules).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ._anatomy import Anatomy, Segment, capsule_sdf, ellipsoid_sdf, grow_tree, segments_sdf
from ._geometry import F, SDF, Grid, rasterise, rotation_matrix, smooth_max, smooth_min
from ._hu import lesion_hu
from ._truth import ObjectSpec, UnplacedObject

__all__ = ["Built", "Piece", "PlacementError", "build_objects", "default_hu", "SHAPE_WORD", "EXPECTED_KIND", "LESION_SHRINK"]

#: size factors tried in turn for a free lesion that does not fit at its requested size
LESION_SHRINK: tuple[float, ...] = (1.0, 0.85, 0.7)


class PlacementError(ValueError):
    """A finding could not be placed under its constraints (lobe, depth, field of view, clearances)."""

#: expected model.Shape word of each calcification subtype
SHAPE_WORD: dict[str, str] = {
    "punctate": "punctate",
    "coarse": "coarse",
    "linear": "linear",
    "ring": "ring",
    "grit": "grit",
    "stellate": "stellate",
    "capsular": "linear",
    "septal": "linear",
    "beaded": "beaded",
}

EXPECTED_KIND: dict[str, str] = {
    "metastasis": "lesion",
    "cyst": "cyst",
    "abscess": "lesion",
    "hemangioma": "lesion",
    "fibrolamellar": "lesion",
    "hydatid": "cyst",
    "dilated": "duct_dilatation",
}

_CALC_HU = {
    "punctate": 750.0, "coarse": 650.0, "linear": 550.0, "ring": 600.0, "grit": 650.0,
    "stellate": 500.0, "capsular": 480.0, "septal": 400.0, "beaded": 480.0,
}


def default_hu(spec: ObjectSpec, phase: str) -> float:
    """Nominal HU of a spec when it gives none."""
    if spec.hu is not None:
        return float(spec.hu)
    if spec.type == "calcification":
        return _CALC_HU[spec.subtype]
    if spec.type == "duct":
        return 12.0
    return {
        "metastasis": lesion_hu(phase, "metastasis"),
        "cyst": lesion_hu(phase, "cyst"),
        "abscess": lesion_hu(phase, "abscess_fluid"),
        "hemangioma": lesion_hu(phase, "hemangioma"),
        "fibrolamellar": lesion_hu(phase, "fibrolamellar"),
        "hydatid": lesion_hu(phase, "hydatid_matrix"),
    }[spec.subtype]


@dataclass
class Piece:
    sdf: SDF
    lo: np.ndarray
    hi: np.ndarray


@dataclass
class Built:
    """A finding ready to rasterise (anatomy frame)."""

    spec: ObjectSpec  # resolved: id, centre, size, hu, shape_seed set
    centre: np.ndarray
    pieces: list[Piece]
    base_hu: float
    parts: list[tuple[Piece, float]] = field(default_factory=list)
    analytic_volume_mm3: float | None = None
    n_components: int = 1
    lipschitz: float = 1.3
    radius_mm: float = 0.0
    segments: list[Segment] = field(default_factory=list)  # ducts: their centrelines

    @property
    def lo(self) -> np.ndarray:
        return np.min([p.lo for p in self.pieces], axis=0)

    @property
    def hi(self) -> np.ndarray:
        return np.max([p.hi for p in self.pieces], axis=0)

    def sdf(self, x, y, z):
        d = None
        for p in self.pieces:
            v = p.sdf(x, y, z)
            d = v if d is None else np.minimum(d, v)
        return d

    def step_mm(self) -> float:
        return float(np.clip(self.spec.size_mm / 8.0, 0.15, 0.6))


# --------------------------------------------------------------------------------------
# shape helpers
# --------------------------------------------------------------------------------------


def _unit(v):
    v = np.asarray(v, float)
    n = np.linalg.norm(v)
    return v / n if n > 0 else np.array([0.0, 0.0, 1.0])


def _random_unit(rng: np.random.Generator) -> np.ndarray:
    return _unit(rng.normal(size=3))


def _box(c, r) -> tuple[np.ndarray, np.ndarray]:
    c = np.asarray(c, float)
    return c - r, c + r


def _lobulated(c: np.ndarray, radius: float, amp: float, rng: np.random.Generator) -> SDF:
    """Sphere whose radius varies smoothly with direction between (1 - 2 amp) R and R."""
    ks = [_random_unit(rng) * rng.uniform(2.0, 4.0) for _ in range(4)]
    ph = rng.uniform(0, 2 * np.pi, size=4)
    cx, cy, cz = (F(v) for v in c)
    R = F(radius)

    def f(x, y, z):
        dx, dy, dz = x - cx, y - cy, z - cz
        n = np.sqrt(dx * dx + dy * dy + dz * dz) + F(1e-6)
        ux, uy, uz = dx / n, dy / n, dz / n
        w = 0.0
        for k, p in zip(ks, ph):
            w = w + np.sin(F(k[0]) * ux + F(k[1]) * uy + F(k[2]) * uz + F(p))
        w = w / F(len(ks))  # in [-1, 1]
        rad = R * (F(1.0 - amp) + F(amp) * w)
        return n - rad

    return f


# --------------------------------------------------------------------------------------
# builders
# --------------------------------------------------------------------------------------


def _build_calcification(spec: ObjectSpec, c: np.ndarray, rng: np.random.Generator, an: Anatomy, parent: Built | None) -> Built:
    s = spec.size_mm
    st = spec.subtype
    hu = spec.hu
    if st == "punctate" or st == "beaded":
        if st == "beaded" and parent is not None and parent.segments:
            seg = min(parent.segments, key=lambda g: float(segments_sdf([g], c[None])[0]))
            axis = _unit(np.subtract(seg.b, seg.a))
            rot = _frame_from_axis(axis)
            radii = (s / 2, s / 2 * 0.8, s / 2 * 0.8)
        else:
            rot = rotation_matrix(tuple(rng.uniform(-180, 180, size=3)))
            radii = (s / 2, s / 2 * rng.uniform(0.8, 1.0), s / 2 * rng.uniform(0.8, 1.0))
        # the body frame's first axis is the longest
        f = lambda x, y, z: ellipsoid_sdf(x, y, z, c, radii, rot)  # noqa: E731
        vol = 4 / 3 * np.pi * radii[0] * radii[1] * radii[2]
        return Built(spec, c, [Piece(f, *_box(c, s / 2 + 0.5))], hu, analytic_volume_mm3=vol, radius_mm=s / 2)
    if st == "coarse":
        rot = rotation_matrix(tuple(rng.uniform(-180, 180, size=3)))
        radii = np.array([s / 2, s / 2 * rng.uniform(0.65, 0.85), s / 2 * rng.uniform(0.5, 0.7)])
        bumps = []
        for _ in range(3):
            u = _random_unit(rng) * np.array([0.5, 0.6, 0.6])
            bc = c + rot @ (u * radii)
            bumps.append((bc, float(radii[2] * rng.uniform(0.55, 0.8))))

        def f(x, y, z):
            d = ellipsoid_sdf(x, y, z, c, radii, rot)
            for bc, br in bumps:
                d = smooth_min(d, ellipsoid_sdf(x, y, z, bc, (br, br, br)), 0.8)
            return d

        return Built(spec, c, [Piece(f, *_box(c, s / 2 + 2.0))], hu, radius_mm=s / 2, lipschitz=1.4)
    if st == "linear":
        t = spec.thickness_mm or 1.4
        r = t / 2
        u = _random_unit(rng)
        a, b = c - u * (s / 2 - r), c + u * (s / 2 - r)
        f = lambda x, y, z: capsule_sdf(x, y, z, a, b, r, r)  # noqa: E731
        vol = np.pi * r * r * (s - 2 * r) + 4 / 3 * np.pi * r**3
        return Built(spec, c, [Piece(f, *_box(c, s / 2 + 1.0))], hu, analytic_volume_mm3=vol, radius_mm=s / 2)
    if st == "ring":
        t = spec.thickness_mm or 1.8
        R = s / 2 - t / 2
        axis = _random_unit(rng)
        frac = spec.arc_fraction
        cosmax = 1.0 - 2.0 * frac  # cap from the axis covering `frac` of the sphere area
        cx, cy, cz = (F(v) for v in c)

        def f(x, y, z):
            dx, dy, dz = x - cx, y - cy, z - cz
            n = np.sqrt(dx * dx + dy * dy + dz * dz)
            d = np.abs(n - F(R)) - F(t / 2)
            if frac < 1.0:
                cosang = (dx * F(axis[0]) + dy * F(axis[1]) + dz * F(axis[2])) / (n + F(1e-6))
                d = np.maximum(d, (F(cosmax) - cosang) * n)
            return d

        vol = 4 / 3 * np.pi * ((R + t / 2) ** 3 - (R - t / 2) ** 3) * frac
        return Built(spec, c, [Piece(f, *_box(c, s / 2 + 1.0))], hu, analytic_volume_mm3=vol, radius_mm=s / 2)
    if st == "grit":
        n = spec.count or 12
        R = s / 2
        pts: list[tuple[np.ndarray, float]] = []
        tries = 0
        while len(pts) < n and tries < 5000:
            tries += 1
            pr = float(rng.uniform(0.5, 1.0))  # particle radius, mm (1-2 mm diameter)
            v = rng.uniform(-1, 1, size=3)
            if v @ v > 1:
                continue
            pc = c + v * (R - pr)
            if all(np.linalg.norm(pc - q) > pr + qr + 0.8 for q, qr in pts):
                pts.append((pc, pr))
        pieces = [Piece((lambda x, y, z, pc=pc, pr=pr: ellipsoid_sdf(x, y, z, pc, (pr, pr, pr))), *_box(pc, pr + 0.5)) for pc, pr in pts]
        vol = float(sum(4 / 3 * np.pi * pr**3 for _, pr in pts))
        return Built(spec.model_copy(update={"count": len(pts)}), c, pieces, hu, analytic_volume_mm3=vol, n_components=len(pts), radius_mm=R)
    if st == "stellate":
        k = spec.count or int(rng.integers(5, 8))
        R = s / 2
        core = max(1.2, 0.14 * s)
        pieces = [Piece((lambda x, y, z, rc=core: ellipsoid_sdf(x, y, z, c, (rc, rc, rc))), *_box(c, core + 0.5))]
        base = _random_unit(rng)
        for i in range(k):
            u = _unit(_random_unit(rng) + 0.15 * base)
            r0, r1 = rng.uniform(0.9, 1.3), rng.uniform(0.5, 0.7)
            tip = c + u * (R - r1)
            pieces.append(Piece((lambda x, y, z, tip=tip, r0=r0, r1=r1: capsule_sdf(x, y, z, c, tip, r0, r1)), *_box((c + tip) / 2, (R / 2 + 2.0))))
        return Built(spec, c, pieces, hu, radius_mm=R)
    if st == "capsular":
        t = spec.thickness_mm or 2.0
        R = s / 2
        cx, cy, cz = (F(v) for v in c)
        surface_pt = c  # centre was placed t/2 under the surface

        def f(x, y, z):
            dl = an.liver_sdf(x, y, z)
            shell = np.abs(dl + F(t / 2)) - F(t / 2)
            dx, dy, dz = x - cx, y - cy, z - cz
            return np.maximum(shell, np.sqrt(dx * dx + dy * dy + dz * dz) - F(R))

        return Built(spec, surface_pt, [Piece(f, *_box(c, R + t + 2))], hu, radius_mm=R, lipschitz=1.5)
    if st == "septal":
        t = spec.thickness_mm or 1.6
        R = s / 2
        n_out = an.liver_grad(c)
        m = _unit(np.cross(n_out, _random_unit(rng)))  # sheet normal, perpendicular to the capsule normal
        Rc = float(rng.uniform(60, 110))
        c2 = c + m * Rc
        cx, cy, cz = (F(v) for v in c)

        def f(x, y, z):
            dx2, dy2, dz2 = x - F(c2[0]), y - F(c2[1]), z - F(c2[2])
            sheet = np.abs(np.sqrt(dx2 * dx2 + dy2 * dy2 + dz2 * dz2) - F(Rc)) - F(t / 2)
            dx, dy, dz = x - cx, y - cy, z - cz
            d = np.maximum(sheet, np.sqrt(dx * dx + dy * dy + dz * dz) - F(R))
            return np.maximum(d, an.liver_sdf(x, y, z) + F(0.5))

        return Built(spec, c, [Piece(f, *_box(c, R + 2))], hu, radius_mm=R, lipschitz=1.5)
    raise ValueError(f"unknown calcification subtype {st!r}")


def _frame_from_axis(axis: np.ndarray) -> np.ndarray:
    """Rotation whose first column is ``axis``."""
    a = _unit(axis)
    tmp = np.array([0.0, 0.0, 1.0]) if abs(a[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    b = _unit(np.cross(a, tmp))
    c = np.cross(a, b)
    return np.stack([a, b, c], axis=1)


def _build_lesion(spec: ObjectSpec, c: np.ndarray, rng: np.random.Generator, phase: str) -> Built:
    s = spec.size_mm
    R = s / 2
    st = spec.subtype
    hu = spec.hu
    box = _box(c, R + 1.5)
    if st in ("cyst", "hydatid"):
        radii = (R, R * rng.uniform(0.88, 1.0), R * rng.uniform(0.88, 1.0)) if st == "cyst" else (R, R, R)
        rot = rotation_matrix(tuple(rng.uniform(-180, 180, size=3)))
        f = lambda x, y, z: ellipsoid_sdf(x, y, z, c, radii, rot)  # noqa: E731
        b = Built(spec, c, [Piece(f, *box)], hu, analytic_volume_mm3=4 / 3 * np.pi * np.prod(radii), radius_mm=R)
        if st == "hydatid":
            k = spec.count or int(rng.integers(4, 7))
            for _ in range(k):
                dr = R * rng.uniform(0.16, 0.24)
                dc = c + _random_unit(rng) * (R - dr - 2.5)
                b.parts.append((Piece((lambda x, y, z, dc=dc, dr=dr: ellipsoid_sdf(x, y, z, dc, (dr, dr, dr))), *_box(dc, dr + 1)), lesion_hu(phase, "daughter_cyst")))
        return b
    amp = {"metastasis": 0.07, "abscess": 0.05, "hemangioma": 0.06, "fibrolamellar": 0.09}[st]
    f = _lobulated(c, R, amp, rng)
    b = Built(spec, c, [Piece(f, *box)], hu, radius_mm=R, lipschitz=1.5)
    if st == "metastasis" and spec.rim == "target":
        t = max(2.0, 0.14 * R)
        b.parts.append((Piece(lambda x, y, z: np.maximum(f(x, y, z), -(f(x, y, z) + F(t))), *box), lesion_hu(phase, "target_rim")))
        rn = 0.4 * R
        b.parts.append((Piece(lambda x, y, z: ellipsoid_sdf(x, y, z, c, (rn, rn, rn)), *_box(c, rn + 1)), 28.0))
    if st == "abscess" and spec.rim == "enhancing":
        t = max(2.5, 0.12 * R)
        b.parts.append((Piece(lambda x, y, z: np.maximum(f(x, y, z), -(f(x, y, z) + F(t))), *box), lesion_hu(phase, "abscess_rim")))
    if st == "hemangioma":
        k = int(rng.integers(6, 11))
        for _ in range(k):
            nr = R * rng.uniform(0.12, 0.2)
            nc = c + _random_unit(rng) * (R * 0.86 - nr)
            b.parts.append((Piece((lambda x, y, z, nc=nc, nr=nr: ellipsoid_sdf(x, y, z, nc, (nr, nr, nr))), *_box(nc, nr + 1)), lesion_hu(phase, "hemangioma_nodule")))
    if st == "fibrolamellar":
        arms = []
        for _ in range(int(rng.integers(5, 8))):
            tip = c + _random_unit(rng) * R * rng.uniform(0.35, 0.55)
            arms.append((tip, rng.uniform(1.8, 3.0)))
        core = 0.16 * R

        def scar(x, y, z):
            d = ellipsoid_sdf(x, y, z, c, (core, core, core))
            for tip, r in arms:
                d = smooth_min(d, capsule_sdf(x, y, z, c, tip, r + 1.0, r * 0.5), 2.0)
            return d

        b.parts.append((Piece(scar, *_box(c, 0.6 * R + 3)), lesion_hu(phase, "scar")))
    return b


def _build_duct(spec: ObjectSpec, c: np.ndarray, rng: np.random.Generator, an: Anatomy) -> Built:
    """A dilated intrahepatic duct tree upstream of a stricture at ``c`` (left lobe by default)."""
    r_max = spec.size_mm / 2
    left = spec.lobe != "right"

    big = [g for g in an.segments if max(g.ra, g.rb) >= 2.5]
    n_max = spec.count or 18
    base_d = _unit(np.array([0.55, -0.7, 0.35]) if left else np.array([-0.6, -0.3, 0.5]))
    best: list[Segment] = []
    # a few attempts: vary the initial direction, then stop avoiding the big vessels
    for attempt in range(10):
        clear = attempt < 6

        def inside(p, clear=clear):
            on_left = bool(an.is_left_lobe(F(p[0]), F(p[1]), F(p[2])))
            return on_left == left and (not clear or float(segments_sdf(big, np.asarray(p)[None])[0]) > r_max + 0.5)

        d0 = base_d if attempt == 0 else _unit(base_d + 0.6 * _random_unit(rng))
        # stricture: a short narrow segment, then the dilated tree growing away from the hilum
        strict_end = c + d0 * 6.0
        segs = [Segment(tuple(c), tuple(strict_end), 1.0, r_max * 0.9, "duct", 0)]
        grow_tree(an, strict_end, d0, r_max, system="duct", rng=rng, r_min=max(1.8, r_max * 0.5), out=segs, max_segments=n_max,
                  inside=inside, generation=1, taper=0.95, length_factor=(3.0, 5.0), ratios=((0.85, 0.95), (0.7, 0.85)))
        if len(segs) > len(best):
            best = segs
        if len(segs) >= min(6, n_max):
            break
    segs = best
    if len(segs) < 2:
        raise PlacementError(f"could not grow the dilated duct {spec.id!r} inside the liver")
    pieces = []
    for sg in segs:
        lo, hi = sg.bounds(1.0)
        pieces.append(Piece(sg.sdf, lo, hi))
    b = Built(spec, c, pieces, spec.hu, radius_mm=r_max, lipschitz=1.3)
    b.segments = segs
    return b


# --------------------------------------------------------------------------------------
# placement
# --------------------------------------------------------------------------------------


@dataclass
class _Placer:
    an: Anatomy
    grid: Grid
    rng: np.random.Generator
    big_vessels: list[Segment]
    placed: list[tuple[np.ndarray, float]] = field(default_factory=list)
    clearance_fn: Callable[[np.ndarray], np.ndarray] | None = None
    siblings: dict[str, list[tuple[np.ndarray, float]]] = field(default_factory=dict)  # parent id -> placed children

    def in_fov(self, pts: np.ndarray, r: float) -> np.ndarray:
        idx = self.grid.anatomy_to_index(pts)
        sp = np.asarray(self.grid.spacing_zyx)
        m = (r + 3.0) / sp
        shape = np.asarray(self.grid.shape_zyx)
        return np.all((idx >= m - 0.5) & (idx <= shape - 1 - m + 0.5), axis=1)

    def _vessel_clear(self, pts: np.ndarray, r: float, clearance: float) -> np.ndarray:
        d = segments_sdf(self.big_vessels, pts)
        ix, iy = self.an.ivc_xy
        d_ivc = np.hypot(pts[:, 0] - ix, pts[:, 1] - iy) - 13.0
        ok = (d > r + clearance) & (d_ivc > r + clearance)
        if self.clearance_fn is not None:
            ok &= self.clearance_fn(pts) > r + clearance
        return ok

    def _others_clear(self, pts: np.ndarray, r: float, gap: float) -> np.ndarray:
        ok = np.ones(len(pts), bool)
        for q, qr in self.placed:
            ok &= np.linalg.norm(pts - q, axis=1) > r + qr + gap
        return ok

    def sample_inside(self, r: float, *, lobe: str | None, depth: str | None, gap: float = 3.0) -> np.ndarray:
        """A random centre fully inside the liver (3 mm margin), in ``lobe`` and ``depth``, in view.

        Constraints are relaxed in a fixed order until a point is found: the clearance from
        vessels of 5 mm calibre or more and the IVC goes 2.5 -> 1 -> -1 mm -> none; then the
        gap to other findings goes from ``gap`` to 1 mm; then the depth class is dropped.
        The lobe and the field of view are never relaxed; :class:`PlacementError` when
        nothing fits.
        """
        stages: list[tuple[str | None, float, tuple[float | None, ...]]] = [(depth, gap, (2.5, 1.0, -1.0, None))]
        if gap > 1.0:
            stages.append((depth, 1.0, (None,)))
        if depth is not None:
            stages.append((None, min(gap, 1.0), (None,)))
        for d, g, clearances in stages:
            p = self._search_inside(r, lobe=lobe, depth=d, gap=g, clearances=clearances)
            if p is not None:
                self.placed.append((p, r))
                return p
        where = f" in the {lobe} lobe" if lobe else ""
        raise PlacementError(f"could not place an object of radius {r:.1f} mm{where} in the liver within the field of view")

    def _search_inside(self, r: float, *, lobe: str | None, depth: str | None, gap: float, clearances: tuple[float | None, ...]) -> np.ndarray | None:
        lo, hi = self.an.liver_bounds()
        for clearance in clearances:
            for _ in range(40 if clearance is not None else 80):
                pts = self.rng.uniform(lo, hi, size=(400, 3))
                s = self.an.liver_sdf_points(pts)
                ok = s < -(r + 3.0)
                if depth == "subcapsular":
                    ok &= s > -(r + 15.0)
                elif depth == "deep":
                    ok &= s < -(r + 15.0)
                if lobe is not None:
                    left = self.an.is_left_lobe(pts[:, 0].astype(F), pts[:, 1].astype(F), pts[:, 2].astype(F))
                    # stay clear of Cantlie's plane so the lobe is unambiguous
                    dist = np.abs(pts[:, 0] - (self.an.cantlie_x0 + self.an.cantlie_slope * pts[:, 1]))
                    ok &= (left if lobe == "left" else ~left) & (dist > (r + 2.0 if clearance is not None else 2.0))
                if not ok.any():
                    continue
                ok &= self.in_fov(pts, r)
                if not ok.any():
                    continue
                if clearance is not None:
                    ok &= self._vessel_clear(pts, r, clearance)
                ok &= self._others_clear(pts, r, gap)
                if ok.any():
                    return pts[int(np.argmax(ok))]
        return None

    def sample_surface(self, r: float, depth_mm: float, *, lobe: str | None) -> np.ndarray:
        """A point ``depth_mm`` under the liver surface, in ``lobe``, inside the field of view.

        200 random surface points keeping 2 mm from other findings, then 600 more that only
        must not overlap them; :class:`PlacementError` when none fits.
        """
        for tries, gap in ((200, 2.0), (600, 0.0)):
            p = self._search_surface(r, depth_mm, lobe=lobe, tries=tries, gap=gap)
            if p is not None:
                self.placed.append((p, r))
                return p
        where = f" of the {lobe} lobe" if lobe else ""
        raise PlacementError(f"could not place a capsular object of radius {r:.1f} mm on the liver surface{where} within the field of view")

    def _search_surface(self, r: float, depth_mm: float, *, lobe: str | None, tries: int, gap: float) -> np.ndarray | None:
        lo, hi = self.an.liver_bounds()
        for _ in range(tries):
            p = self.rng.uniform(lo, hi)
            if self.an.liver_sdf_point(p) > 0:
                continue
            for _ in range(12):
                s = self.an.liver_sdf_point(p)
                g = self.an.liver_grad(p)
                p = p - g * (s + depth_mm)
            if abs(self.an.liver_sdf_point(p) + depth_mm) > 0.3:
                continue
            # avoid the dome roof strip and the gallbladder/kidney impressions: normal must be lateral/anterior/inferior
            if lobe is not None:
                left = bool(self.an.is_left_lobe(F(p[0]), F(p[1]), F(p[2])))
                if left != (lobe == "left"):
                    continue
            if not self.in_fov(p[None], r)[0]:
                continue
            if not self._others_clear(p[None], r, gap)[0]:
                continue
            # not where the IVC or a large vessel runs under the capsule: its label would
            # overwrite the liver's, leaving the plaque outside the truth liver
            if not self._vessel_clear(p[None], r, 1.0)[0]:
                continue
            return p
        return None


def _object_rng(spec: ObjectSpec) -> np.random.Generator:
    return np.random.default_rng([int(spec.shape_seed or 0), 99])


def build_objects(
    specs: list[ObjectSpec],
    *,
    an: Anatomy,
    grid: Grid,
    phase: str,
    seed: int,
    clearance: Callable[[np.ndarray], np.ndarray] | None = None,
    strict: bool = True,
    unplaced: list[UnplacedObject] | None = None,
) -> list[Built]:
    """Resolve ids, HU, positions and shape seeds, and build every finding's geometry.

    Lesions and ducts are placed first, then calcifications (children relative to their
    parent). ``clearance`` (points (N, 3) -> mm to the nearest structure to avoid) adds a
    placement constraint.

    Placement rules when a finding does not fit: the placer first relaxes its own
    constraints (see :meth:`_Placer.sample_inside`, :meth:`_Placer.sample_surface`,
    :func:`_along_duct`); a free lesion is then retried at 85 % and 70 % of its size
    (:data:`LESION_SHRINK`; the truth records the size used). If it still does not fit,
    ``strict`` raises :class:`PlacementError`; otherwise the finding is left out, its
    children with it, and each one left out is appended to ``unplaced`` with the reason.

    Returns the built objects in the order of ``specs`` (left-out ones omitted).
    """
    rng = np.random.default_rng([int(seed), 3])
    big = [sg for sg in an.segments if max(sg.ra, sg.rb) >= 2.5]
    placer = _Placer(an, grid, rng, big, clearance_fn=clearance)
    # ids
    counts: dict[str, int] = {}
    resolved: list[ObjectSpec] = []
    for i, sp in enumerate(specs):
        counts[sp.subtype] = counts.get(sp.subtype, 0) + 1
        upd = {}
        if sp.id is None:
            upd["id"] = f"{sp.subtype}-{counts[sp.subtype]}"
        if sp.shape_seed is None:
            upd["shape_seed"] = int(rng.integers(0, 2**31 - 1))
        resolved.append(sp.model_copy(update=upd) if upd else sp)
    ids = [sp.id for sp in resolved]
    if len(set(ids)) != len(ids):
        raise ValueError("object ids must be unique")
    by_id = {sp.id: k for k, sp in enumerate(resolved)}
    for sp in resolved:
        if sp.parent is not None and sp.parent not in by_id:
            raise ValueError(f"object {sp.id!r} names an unknown parent {sp.parent!r}")
    # already-fixed centres block space
    for sp in resolved:
        if sp.centre_mm is not None and sp.type != "calcification":
            placer.placed.append((np.asarray(sp.centre_mm, float), sp.size_mm / 2))
    built: dict[int, Built] = {}
    dropped: dict[int, str] = {}
    order = [k for k, sp in enumerate(resolved) if sp.type != "calcification"] + [k for k, sp in enumerate(resolved) if sp.type == "calcification"]
    # a child listed before its parent (e.g. a lesion inside a lesion) waits for it
    order = sorted(order, key=lambda k: (resolved[k].type == "calcification", resolved[k].parent is not None and resolved[k].type != "calcification"))
    for k in order:
        sp = resolved[k]
        if sp.parent is not None and by_id[sp.parent] in dropped:
            dropped[k] = f"its parent {sp.parent!r} could not be placed"
            continue
        parent = built.get(by_id[sp.parent]) if sp.parent is not None else None
        n_placed = len(placer.placed)
        try:
            b = _place_and_build(sp, parent, placer, an=an, phase=phase)
        except PlacementError as exc:
            if strict:
                raise
            del placer.placed[n_placed:]
            dropped[k] = str(exc)
            continue
        if b.spec.parent is not None:
            placer.siblings.setdefault(b.spec.parent, []).append((b.centre, b.radius_mm))
        resolved[k] = b.spec
        built[k] = b
    if unplaced is not None:
        for k in sorted(dropped):
            sp = resolved[k]
            unplaced.append(UnplacedObject(id=str(sp.id), type=sp.type, subtype=sp.subtype, size_mm=float(sp.size_mm), parent=sp.parent, reason=dropped[k]))
    return [built[k] for k in range(len(resolved)) if k in built]


def _place_and_build(sp: ObjectSpec, parent: Built | None, placer: _Placer, *, an: Anatomy, phase: str) -> Built:
    """Place one finding (shrinking a free lesion that does not fit) and build its geometry."""
    orng = _object_rng(sp)
    sp = sp.model_copy(update={"hu": default_hu(sp, phase)})
    free_lesion = sp.type == "lesion" and sp.parent is None and sp.centre_mm is None
    factors = LESION_SHRINK if free_lesion else (1.0,)
    for i, f in enumerate(factors):
        try_sp = sp if f == 1.0 else sp.model_copy(update={"size_mm": round(float(sp.size_mm) * f, 1)})
        try:
            c, try_sp = _resolve_centre(try_sp, parent, placer, orng)
            break
        except PlacementError:
            if i == len(factors) - 1:
                raise
    sp = try_sp.model_copy(update={"centre_mm": tuple(float(v) for v in c)})
    if sp.type == "lesion":
        return _build_lesion(sp, c, orng, phase)
    if sp.type == "duct":
        return _build_duct(sp, c, orng, an)
    return _build_calcification(sp, c, orng, an, parent)


def _resolve_centre(sp: ObjectSpec, parent: Built | None, placer: _Placer, orng: np.random.Generator) -> tuple[np.ndarray, ObjectSpec]:
    """Centre of an object (anatomy frame) and the spec possibly resized to fit its parent."""
    an = placer.an
    if sp.type == "calcification" and sp.subtype == "ring" and parent is not None:
        t = sp.thickness_mm or 1.8
        sp = sp.model_copy(update={"size_mm": round(parent.radius_mm * 2 + t, 3), "thickness_mm": t, "relation": sp.relation or "wall"})
        return parent.centre.copy(), sp
    if sp.centre_mm is not None:
        return np.asarray(sp.centre_mm, float), sp
    r = sp.size_mm / 2
    if parent is not None:
        rel = sp.relation or "centre"
        if parent.spec.type == "duct" or rel == "in_duct":
            return _along_duct(parent, sp, placer, orng), sp.model_copy(update={"relation": "in_duct"})
        R = parent.radius_mm
        if rel == "centre":
            off = _random_unit(orng) * min(R * 0.12, max(0.0, R - r - 1))
            return parent.centre + off, sp
        if rel == "whole":
            return parent.centre.copy(), sp
        if rel == "periphery":
            # clear of the parent's other children (0.5 mm gap); 60 directions, else not placed
            dist = max(0.0, min(R * 0.72, R - r - 1.5))
            sibs = placer.siblings.get(str(parent.spec.id), [])
            for _ in range(60):
                p = parent.centre + _random_unit(orng) * dist
                if all(np.linalg.norm(p - q) > r + qr + 0.5 for q, qr in sibs):
                    return p, sp
            raise PlacementError(f"no room for {sp.id!r} in the periphery of {parent.spec.id!r} clear of its other calcifications")
        if rel == "wall":
            return parent.centre + _random_unit(orng) * max(0.0, R - r), sp
    if sp.subtype == "capsular":
        t = sp.thickness_mm or 2.0
        return placer.sample_surface(r, t / 2, lobe=sp.lobe), sp
    if sp.type == "duct":
        left = sp.lobe != "right"
        key = "left_portal_turn" if left else "right_portal_branching"
        base = np.asarray(an.landmarks[key]) + (np.array([4.0, -9.0, 7.0]) if left else np.array([-4.0, -9.0, 7.0]))
        for _ in range(60):
            if an.liver_sdf_point(base) < -(r + 3.0) and placer.in_fov(base[None], r)[0]:
                break
            base = base - an.liver_grad(base) * 1.0
        placer.placed.append((base, r))
        return base, sp
    if sp.subtype == "septal":
        p = placer.sample_surface(r, r * 0.6, lobe=sp.lobe)
        return p, sp
    return placer.sample_inside(r, lobe=sp.lobe, depth=sp.depth), sp


def _along_duct(duct: Built, sp: ObjectSpec, placer: _Placer, orng: np.random.Generator) -> np.ndarray:
    """A point on the centreline of a dilated duct segment, in view and away from other stones.

    First 300 tries on the six widest segments keeping 1.5 mm between stones (and from
    other findings), then 300 tries on every dilated segment keeping 0.5 mm;
    :class:`PlacementError` when neither finds room.
    """
    dilated = [g for g in duct.segments if g.generation >= 1]
    if not dilated:
        raise PlacementError(f"duct {duct.spec.id!r} has no dilated segment to hold stone {sp.id!r}")
    widest = sorted(dilated, key=lambda g: -g.ra)[:6]
    r = sp.size_mm / 2
    others = [(q, qr) for q, qr in placer.placed if np.linalg.norm(q - duct.centre) > 1e-6]
    for segs, gap in ((widest, 1.5), (dilated, 0.5)):
        for _ in range(300):
            g = segs[int(orng.integers(0, len(segs)))]
            t = orng.uniform(0.15, 0.85)
            p = np.asarray(g.a) + t * (np.asarray(g.b) - np.asarray(g.a))
            if not placer.in_fov(p[None], r)[0]:
                continue
            if all(np.linalg.norm(p - q) > r + qr + gap for q, qr in others):
                placer.placed.append((p, r))
                return p
    raise PlacementError(f"could not place stone {sp.id!r} along duct {duct.spec.id!r}: no room in view")


def rasterise_object(grid: Grid, b: Built) -> tuple[tuple[slice, slice, slice], np.ndarray] | None:
    """Coverage of a finding on its bounding box (union of its pieces)."""
    sl = grid.bbox(b.lo, b.hi)
    if sl is None:
        return None
    shape = tuple(s.stop - s.start for s in sl)
    cov = np.zeros(shape, dtype=F)
    step = b.step_mm()
    max_sub = 8 if b.spec.size_mm < 4 else 6
    for p in b.pieces:
        res = rasterise(grid, p.sdf, p.lo, p.hi, step_mm=step, max_sub=max_sub, lipschitz=b.lipschitz)
        if res is None:
            continue
        psl, pc = res
        tgt = tuple(slice(ps.start - s.start, ps.stop - s.start) for ps, s in zip(psl, sl))
        np.maximum(cov[tgt], pc, out=cov[tgt])
    return sl, cov


def rasterise_part(grid: Grid, piece: Piece, step_mm: float):
    return rasterise(grid, piece.sdf, piece.lo, piece.hi, step_mm=step_mm, lipschitz=1.5)



def children_of(built: list["Built"]) -> dict[str, list[str]]:
    """Parent object id -> ids of the objects placed inside it, in placement order."""
    children: dict[str, list[str]] = {}
    for b in built:
        if b.spec.parent:
            children.setdefault(b.spec.parent, []).append(b.spec.id)  # type: ignore[arg-type]
    return children
