"""Analytic abdominal anatomy in the anatomy frame (LPS mm) and its rasterisation.

The body is centred on x = 0, y = 0; z = 0 is near the middle of the liver.  Organs
are signed distance functions (SDFs) built from ellipsoids, cylinders and tapered
capsules with smooth unions, so the same anatomy is obtained on any voxel grid.
Random variation (organ sizes, surface undulation, vessel branching) comes from the
anatomy seed only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ._geometry import F, Grid, rasterise, rotation_matrix, smooth_max, smooth_min
from ._hu import HU_BY_PHASE

__all__ = [
    "ORGAN_LABELS",
    "VESSEL_LABELS",
    "Segment",
    "Anatomy",
    "build_anatomy",
    "paint_anatomy",
    "ellipsoid_sdf",
    "capsule_sdf",
    "segments_sdf",
]

#: organ label values of ``Phantom.organs``
ORGAN_LABELS: dict[str, int] = {
    "liver": 1,
    "spleen": 2,
    "kidney_right": 3,
    "kidney_left": 4,
    "aorta": 5,
    "ivc": 6,
    "portal_vein": 7,
    "spine": 8,
    "lung": 9,
    "heart": 10,
    "muscle": 11,
    "fat": 12,
    "skin": 13,
    "stomach": 14,
    "gallbladder": 15,
    "rib": 16,
    "hepatic_artery": 17,
    "bowel": 18,
}

#: vessel label values of ``Phantom.vessels``
VESSEL_LABELS: dict[str, int] = {"portal": 1, "hepatic_vein": 2, "ivc": 3, "aorta": 4, "hepatic_artery": 5}

# body outline (ellipse semi-axes, mm) and layer thicknesses
_BODY_A, _BODY_B, _BODY_YC = 160.0, 112.0, 4.0
_SKIN_MM, _SUBCUT_MM, _MUSCLE_MM = 2.0, 18.0, 11.0


# --------------------------------------------------------------------------------------
# primitives
# --------------------------------------------------------------------------------------


def _rot(x, y, z, c, r: np.ndarray | None):
    dx, dy, dz = x - F(c[0]), y - F(c[1]), z - F(c[2])
    if r is None:
        return dx, dy, dz
    r = r.astype(F)
    # coordinates in the body frame: R^T (p - c)
    return (
        r[0, 0] * dx + r[1, 0] * dy + r[2, 0] * dz,
        r[0, 1] * dx + r[1, 1] * dy + r[2, 1] * dz,
        r[0, 2] * dx + r[1, 2] * dy + r[2, 2] * dz,
    )


def ellipsoid_sdf(x, y, z, c, radii, rot: np.ndarray | None = None):
    """Approximate signed distance (mm) to an ellipsoid; exact on spheres, close near the surface."""
    px, py, pz = _rot(x, y, z, c, rot)
    a, b, cc = (F(v) for v in radii)
    if a == b == cc:
        return np.sqrt(px * px + py * py + pz * pz) - a
    ux, uy, uz = px / a, py / b, pz / cc
    k0 = np.sqrt(ux * ux + uy * uy + uz * uz)
    k1 = np.sqrt((ux / a) ** 2 + (uy / b) ** 2 + (uz / cc) ** 2)
    return k0 * (k0 - 1.0) / np.maximum(k1, F(1e-6))


def ellipse2d_sdf(x, y, cx, cy, a, b):
    """Approximate signed distance to an elliptic cylinder along z."""
    ux, uy = (x - F(cx)) / F(a), (y - F(cy)) / F(b)
    k0 = np.sqrt(ux * ux + uy * uy)
    k1 = np.sqrt((ux / F(a)) ** 2 + (uy / F(b)) ** 2)
    return k0 * (k0 - 1.0) / np.maximum(k1, F(1e-6))


def capsule_sdf(x, y, z, a, b, ra: float, rb: float):
    """Signed distance to a tapered capsule from point ``a`` (radius ra) to ``b`` (radius rb)."""
    a = np.asarray(a, dtype=F)
    b = np.asarray(b, dtype=F)
    ab = b - a
    l2 = float(ab @ ab) or 1e-6
    px, py, pz = x - a[0], y - a[1], z - a[2]
    h = np.clip((px * ab[0] + py * ab[1] + pz * ab[2]) / F(l2), 0.0, 1.0)
    dx, dy, dz = px - h * ab[0], py - h * ab[1], pz - h * ab[2]
    return np.sqrt(dx * dx + dy * dy + dz * dz) - (F(ra) + F(rb - ra) * h)


@dataclass(frozen=True)
class Segment:
    """A tapered vessel/duct segment (anatomy-frame mm)."""

    a: tuple[float, float, float]
    b: tuple[float, float, float]
    ra: float
    rb: float
    system: str
    generation: int = 0

    def bounds(self, pad: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        a, b = np.asarray(self.a), np.asarray(self.b)
        r = max(self.ra, self.rb) + pad
        return np.minimum(a, b) - r, np.maximum(a, b) + r

    def sdf(self, x, y, z):
        return capsule_sdf(x, y, z, self.a, self.b, self.ra, self.rb)


def segments_sdf(segments: list[Segment], pts: np.ndarray) -> np.ndarray:
    """Distance (mm, negative inside) from points (N, 3) to the union of segments; vectorised over both."""
    if not segments:
        return np.full(len(pts), np.inf)
    a = np.array([s.a for s in segments])
    b = np.array([s.b for s in segments])
    ra = np.array([s.ra for s in segments])
    rb = np.array([s.rb for s in segments])
    ab = b - a
    l2 = np.maximum((ab * ab).sum(1), 1e-9)
    p = np.asarray(pts, dtype=float)[:, None, :]
    h = np.clip(((p - a) * ab).sum(-1) / l2, 0, 1)
    d = np.linalg.norm(p - a - h[..., None] * ab, axis=-1) - (ra + (rb - ra) * h)
    return d.min(axis=1)


# --------------------------------------------------------------------------------------
# anatomy
# --------------------------------------------------------------------------------------


@dataclass
class Anatomy:
    """Seeded anatomy parameters, organ SDFs and vessel trees (anatomy frame)."""

    seed: int
    scale: float
    liver_right_c: np.ndarray
    liver_right_r: np.ndarray
    liver_left_c: np.ndarray
    liver_left_r: np.ndarray
    liver_left_rot: np.ndarray
    waves: np.ndarray  # (K, 5): kx, ky, kz, phase, amplitude
    dome_right: float
    dome_left: float
    spleen_c: np.ndarray
    spleen_r: np.ndarray
    spleen_rot: np.ndarray
    kidney_r_c: np.ndarray
    kidney_l_c: np.ndarray
    kidney_r: np.ndarray
    kidney_rot_r: np.ndarray
    kidney_rot_l: np.ndarray
    stomach_c: np.ndarray
    stomach_r: np.ndarray
    gb_c: np.ndarray
    gb_r: np.ndarray
    gb_rot: np.ndarray
    cantlie_x0: float
    cantlie_slope: float
    aorta_xy: tuple[float, float] = (14.0, 44.0)
    aorta_r: float = 11.5
    ivc_xy: tuple[float, float] = (-22.0, 30.0)
    ivc_r: tuple[float, float] = (13.0, 10.0)
    trabecular_hu: float = 260.0
    segments: list[Segment] = field(default_factory=list)
    landmarks: dict[str, tuple[float, float, float]] = field(default_factory=dict)

    # ---- diaphragm ------------------------------------------------------------------
    def diaphragm_z(self, x, y):
        """Height (z, mm) of the diaphragm's upper surface above (x, y)."""
        zr = F(self.dome_right) - 30.0 * ((x + 68.0) / 85.0) ** 2 - 26.0 * ((y - 5.0) / 95.0) ** 2
        zl = F(self.dome_left) - 30.0 * ((x - 70.0) / 80.0) ** 2 - 26.0 * ((y - 5.0) / 95.0) ** 2
        zc = F(min(self.dome_left, self.dome_right) - 10.0) - 12.0 * (y / 120.0) ** 2
        return smooth_max(smooth_max(zr, zl, 25.0), zc, 10.0)

    # ---- liver ----------------------------------------------------------------------
    def _waves(self, x, y, z):
        w = self.waves
        out = 0.0
        for kx, ky, kz, ph, amp in w:
            out = out + F(amp) * np.sin(F(kx) * x + F(ky) * y + F(kz) * z + F(ph))
        return out

    def liver_sdf(self, x, y, z):
        """Signed distance (mm, approximate) to the liver surface."""
        r = ellipsoid_sdf(x, y, z, self.liver_right_c, self.liver_right_r)
        left = ellipsoid_sdf(x, y, z, self.liver_left_c, self.liver_left_r, self.liver_left_rot)
        d = smooth_min(r, left, 22.0)
        d = d + self._waves(x, y, z)
        # dome under the diaphragm (4 mm muscle in between)
        d = smooth_max(d, z - (self.diaphragm_z(x, y) - 4.0), 6.0)
        # impressions of neighbours
        d = smooth_max(d, -(self.kidney_sdf(x, y, z, right=True) - 4.0), 4.0)
        d = smooth_max(d, -(self.stomach_sdf(x, y, z) - 4.0), 4.0)
        d = smooth_max(d, -(self.gallbladder_sdf(x, y, z) - 1.5), 2.0)
        return d

    def liver_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        c1, r1 = self.liver_right_c, self.liver_right_r
        c2, r2 = self.liver_left_c, self.liver_left_r * 1.05
        lo = np.minimum(c1 - r1, c2 - r2) - 10.0
        hi = np.maximum(c1 + r1, c2 + r2) + 10.0
        hi[2] = min(hi[2], max(self.dome_right, self.dome_left))
        return lo, hi

    def is_left_lobe(self, x, y, z):
        """True where a point lies left of Cantlie's plane (the left lobe side)."""
        return x > F(self.cantlie_x0) + F(self.cantlie_slope) * y

    def liver_sdf_point(self, p: np.ndarray) -> float:
        p = np.asarray(p, dtype=F)
        return float(self.liver_sdf(p[..., 0], p[..., 1], p[..., 2]))

    def liver_sdf_points(self, p: np.ndarray) -> np.ndarray:
        p = np.asarray(p, dtype=F)
        return np.asarray(self.liver_sdf(p[:, 0], p[:, 1], p[:, 2]), dtype=float)

    def liver_grad(self, p: np.ndarray, h: float = 0.5) -> np.ndarray:
        p = np.asarray(p, dtype=float)
        pts = np.array([p + e for e in np.eye(3) * h] + [p - e for e in np.eye(3) * h])
        v = self.liver_sdf_points(pts)
        g = (v[:3] - v[3:]) / (2 * h)
        n = np.linalg.norm(g)
        return g / n if n > 0 else np.array([0.0, 0.0, 1.0])

    # ---- other organs ---------------------------------------------------------------
    def kidney_sdf(self, x, y, z, *, right: bool):
        c = self.kidney_r_c if right else self.kidney_l_c
        rot = self.kidney_rot_r if right else self.kidney_rot_l
        return ellipsoid_sdf(x, y, z, c, self.kidney_r, rot)

    def spleen_sdf(self, x, y, z):
        d = ellipsoid_sdf(x, y, z, self.spleen_c, self.spleen_r, self.spleen_rot)
        return smooth_max(d, z - (self.diaphragm_z(x, y) - 4.0), 5.0)

    def stomach_sdf(self, x, y, z):
        d = ellipsoid_sdf(x, y, z, self.stomach_c, self.stomach_r)
        return smooth_max(d, z - (self.diaphragm_z(x, y) - 5.0), 6.0)

    def gallbladder_sdf(self, x, y, z):
        return ellipsoid_sdf(x, y, z, self.gb_c, self.gb_r, self.gb_rot)

    def cavity_sdf(self, x, y):
        """Inner surface of the abdominal/thoracic wall muscle (z-invariant)."""
        t = _SKIN_MM + _SUBCUT_MM + _MUSCLE_MM
        return ellipse2d_sdf(x, y, 0.0, _BODY_YC, _BODY_A - t, _BODY_B - t)

    def heart_sdf(self, x, y, z):
        d = ellipsoid_sdf(x, y, z, (22.0, -22.0, self.dome_left + 48.0), (72.0, 58.0, 55.0))
        return smooth_max(d, (self.diaphragm_z(x, y) + 3.0) - z, 4.0)


def _rand_rot(rng: np.random.Generator, deg: float) -> np.ndarray:
    return rotation_matrix(tuple(rng.uniform(-deg, deg, size=3)))


def build_anatomy(seed: int) -> Anatomy:
    """Draw a seeded anatomy (organ sizes and positions, liver undulation, vessel trees)."""
    rng = np.random.default_rng([int(seed), 1])
    s = float(rng.uniform(0.94, 1.06))
    j = lambda sd: rng.normal(0.0, sd)  # noqa: E731
    waves = []
    for _ in range(5):
        k = rng.normal(size=3)
        k = k / np.linalg.norm(k) * (2 * np.pi / rng.uniform(60.0, 130.0))
        waves.append([k[0], k[1], k[2], rng.uniform(0, 2 * np.pi), rng.uniform(0.6, 1.4)])
    an = Anatomy(
        seed=int(seed),
        scale=s,
        liver_right_c=np.array([-72.0 + j(2), 8.0 + j(2), 0.0 + j(2)]),
        liver_right_r=np.array([68.0, 78.0, 72.0]) * s,
        liver_left_c=np.array([-6.0 + j(3), -32.0 + j(2), 22.0 + j(2)]),
        liver_left_r=np.array([84.0, 47.0, 41.0]) * s * np.array([rng.uniform(0.92, 1.08), 1.0, 1.0]),
        liver_left_rot=rotation_matrix((0.0, rng.uniform(-8, -2), rng.uniform(8, 16))),
        waves=np.array(waves),
        dome_right=78.0 * s + j(2),
        dome_left=64.0 * s + j(2),
        spleen_c=np.array([92.0 + j(2), 42.0 + j(2), 22.0 + j(3)]),
        spleen_r=np.array([22.0, 55.0, 46.0]) * rng.uniform(0.9, 1.1),
        spleen_rot=rotation_matrix((0.0, 0.0, -38.0 + j(4))),
        kidney_r_c=np.array([-68.0, 64.0, -78.0 + j(3)]),
        kidney_l_c=np.array([68.0, 62.0, -62.0 + j(3)]),
        kidney_r=np.array([26.0, 21.0, 52.0]) * rng.uniform(0.93, 1.07),
        kidney_rot_r=rotation_matrix((-12.0, 10.0, 25.0)),
        kidney_rot_l=rotation_matrix((-12.0, -10.0, -25.0)),
        stomach_c=np.array([62.0 + j(3), -22.0 + j(3), 18.0 + j(3)]),
        stomach_r=np.array([42.0, 34.0, 48.0]) * rng.uniform(0.9, 1.1),
        gb_c=np.array([-40.0 + j(2), -55.0 + j(2), -40.0 + j(2)]),
        gb_r=np.array([15.0, 17.0, 36.0]) * rng.uniform(0.9, 1.1),
        gb_rot=rotation_matrix((35.0, 0.0, 20.0)),
        cantlie_x0=-36.0 + j(2),
        cantlie_slope=0.12,
        trabecular_hu=float(rng.uniform(220, 320)),
    )
    _build_vessels(an, np.random.default_rng([int(seed), 2]))
    return an


# --------------------------------------------------------------------------------------
# vessel trees
# --------------------------------------------------------------------------------------


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=float)
    n = np.linalg.norm(v)
    return v / n if n > 0 else v


def _perp(d: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=3)
    v -= v.dot(d) * d
    return _unit(v)


def _rotate(v: np.ndarray, axis: np.ndarray, angle_rad: float) -> np.ndarray:
    """Rodrigues rotation of ``v`` about unit ``axis``."""
    k = axis
    return v * np.cos(angle_rad) + np.cross(k, v) * np.sin(angle_rad) + k * k.dot(v) * (1 - np.cos(angle_rad))


def grow_tree(
    an: Anatomy,
    start: np.ndarray,
    direction: np.ndarray,
    radius: float,
    *,
    system: str,
    rng: np.random.Generator,
    r_min: float,
    out: list[Segment],
    max_segments: int,
    inside: "callable | None" = None,
    generation: int = 0,
    taper: float = 0.93,
    length_factor: tuple[float, float] = (4.0, 7.0),
    ratios: tuple[tuple[float, float], tuple[float, float]] = ((0.82, 0.9), (0.55, 0.75)),
) -> None:
    """Grow a branching tree of tapered segments inside the liver (depth-first, seeded).

    Each segment is 4-7 radii long (plus 4 mm), tapers by ``taper`` and ends in two
    children of radius ratios drawn from ``ratios`` (major and minor branch), deflected
    on opposite sides; branches steer away from the liver surface and stop below ``r_min``.
    """
    stack = [(np.asarray(start, float), _unit(direction), float(radius), generation)]
    while stack and len(out) < max_segments:
        p, d, r, gen = stack.pop()
        if r < r_min:
            continue
        length = float(np.clip(rng.uniform(*length_factor) * r + 4.0, 6.0, 38.0))
        q = None
        for _ in range(5):
            cand = p + d * length
            s = an.liver_sdf_point(cand)
            ok = s < -(r + 2.0) and (inside is None or inside(cand))
            if ok:
                q = cand
                break
            g = an.liver_grad(cand)
            d = _unit(d - 0.9 * g + 0.2 * rng.normal(size=3))
            length *= 0.75
            if length < 4.0:
                break
        if q is None:
            continue
        r_end = max(r * taper, r_min * 0.95)
        out.append(Segment(tuple(p), tuple(q), r, r_end, system, gen))
        axis = _perp(d, rng)
        (a1, b1), (a2, b2) = ratios
        r1, r2 = r_end * rng.uniform(a1, b1), r_end * rng.uniform(a2, b2)
        d1 = _rotate(d, axis, np.deg2rad(rng.uniform(10, 26)))
        d2 = _rotate(d, axis, -np.deg2rad(rng.uniform(35, 65)))
        s_q = an.liver_sdf_point(q)
        if s_q > -15.0:
            g = an.liver_grad(q)
            d1, d2 = _unit(d1 - 0.5 * g), _unit(d2 - 0.5 * g)
        stack.append((q, _unit(d2), r2, gen + 1))
        stack.append((q, _unit(d1), r1, gen + 1))


def _inside_point(an: Anatomy, p: np.ndarray, margin: float) -> np.ndarray:
    """Move ``p`` up (+z) and inward until it is ``margin`` mm inside the liver."""
    p = np.asarray(p, dtype=float).copy()
    for _ in range(80):
        if an.liver_sdf_point(p) < -margin:
            return p
        p = p - an.liver_grad(p) * 1.5
    return p


def _build_vessels(an: Anatomy, rng: np.random.Generator) -> None:
    segs: list[Segment] = []
    # --- extrahepatic veins: IVC and aorta are cylinders painted separately
    # portal confluence -> hilum bifurcation
    conf = np.array([6.0, 14.0, -88.0])
    bif = _inside_point(an, np.array([-20.0, 4.0, -30.0]), 9.0)
    segs.append(Segment(tuple(conf), tuple(bif), 7.0, 6.5, "portal", 0))
    segs.append(Segment((8.0, 16.0, -150.0), tuple(conf), 5.5, 6.5, "portal", 0))  # SMV
    spl_mid = np.array([45.0, 30.0, -62.0])
    spl_end = an.spleen_c + np.array([-18.0, -12.0, -12.0])
    segs.append(Segment(tuple(conf), tuple(spl_mid), 5.0, 4.8, "portal", 0))
    segs.append(Segment(tuple(spl_mid), tuple(spl_end), 4.8, 4.5, "portal", 0))
    # right and left portal veins
    rpv_end = _inside_point(an, bif + np.array([-30.0, 6.0, 8.0]), 8.0)
    lpv_mid = _inside_point(an, bif + np.array([24.0, -8.0, 6.0]), 7.0)
    segs.append(Segment(tuple(bif), tuple(rpv_end), 5.2, 5.0, "portal", 1))
    segs.append(Segment(tuple(bif), tuple(lpv_mid), 4.6, 4.4, "portal", 1))
    an.landmarks["portal_bifurcation"] = tuple(float(v) for v in bif)
    an.landmarks["right_portal_branching"] = tuple(float(v) for v in rpv_end)
    an.landmarks["left_portal_turn"] = tuple(float(v) for v in lpv_mid)
    trees = [
        (rpv_end, np.array([-0.45, -0.65, 0.6]), 3.9, "portal"),  # right anterior
        (rpv_end, np.array([-0.7, 0.55, 0.35]), 3.9, "portal"),  # right posterior
        (lpv_mid, np.array([0.35, -0.85, 0.35]), 4.0, "portal"),  # umbilical part
        (lpv_mid, np.array([0.75, -0.15, 0.55]), 3.2, "portal"),  # segment 2
    ]
    # hepatic veins from the IVC confluence under the dome
    ix, iy = an.ivc_xy
    zc = float(an.diaphragm_z(np.float32(ix), np.float32(iy))) - 14.0
    hv = np.array([ix, iy - 4.0, zc])
    an.landmarks["hepatic_vein_confluence"] = tuple(float(v) for v in hv)
    trees += [
        (hv + [-6, -2, 0], np.array([-0.8, -0.15, -0.55]), 5.5, "hepatic_vein"),
        (hv + [0, -8, 0], np.array([-0.2, -0.75, -0.6]), 5.0, "hepatic_vein"),
        (hv + [6, -6, 0], np.array([0.65, -0.6, -0.3]), 4.6, "hepatic_vein"),
    ]
    per_tree = {"portal": 110, "hepatic_vein": 90}
    for start, d, r, system in trees:
        sub: list[Segment] = []
        grow_tree(an, start, d, r, system=system, rng=rng, r_min=1.1, out=sub, max_segments=per_tree[system], generation=2)
        segs.extend(sub)
    an.segments = segs
    # landmarks: liver dome (highest point of the right lobe)
    lo, hi = an.liver_bounds()
    xs = np.linspace(lo[0], -20, 25)
    ys = np.linspace(lo[1], hi[1], 25)
    gx, gy = np.meshgrid(xs, ys)
    zd = np.asarray(an.diaphragm_z(gx.astype(F), gy.astype(F)), dtype=float) - 4.0
    pts = np.stack([gx.ravel(), gy.ravel(), zd.ravel() - 1.0], axis=1)
    inside = an.liver_sdf_points(pts) < 0
    if inside.any():
        k = int(np.argmax(np.where(inside, pts[:, 2], -np.inf)))
        an.landmarks["liver_dome"] = tuple(float(v) for v in pts[k])
    first_branch = [sg for sg in segs if sg.generation == 2 and sg.system == "portal"]
    for i, sg in enumerate(first_branch[:4]):
        an.landmarks[f"portal_branch_{i + 1}"] = tuple(float(v) for v in sg.b)
    hv_first = [sg for sg in segs if sg.generation == 2 and sg.system == "hepatic_vein"]
    for i, sg in enumerate(hv_first[:3]):
        an.landmarks[f"hepatic_vein_branch_{i + 1}"] = tuple(float(v) for v in sg.b)
    an.landmarks["right_kidney_upper_pole"] = tuple(
        float(v) for v in an.kidney_r_c + an.kidney_rot_r @ np.array([0, 0, an.kidney_r[2]])
    )


# --------------------------------------------------------------------------------------
# painting
# --------------------------------------------------------------------------------------


@dataclass
class Canvas:
    """The noise-free image and label maps being painted."""

    grid: Grid
    image: np.ndarray  # float32 HU
    organs: np.ndarray  # uint8
    vessels: np.ndarray  # uint8
    liver_cov: tuple[tuple[slice, slice, slice], np.ndarray] | None = None


def paint(canvas: Canvas, res, hu, *, organ: int | None = None, vessel: int | None = None, keep_liver_label: bool = False) -> None:
    """Blend ``hu`` into the image with the coverage ``res`` = (slices, coverage)."""
    if res is None:
        return
    sl, cov = res
    sub = canvas.image[sl]
    if np.ndim(hu) == 0:
        sub += cov * (F(hu) - sub)
    else:
        sub += cov * (np.asarray(hu, dtype=F) - sub)
    sel = cov >= 0.5
    if organ is not None:
        o = canvas.organs[sl]
        if keep_liver_label:
            o[sel & (o != ORGAN_LABELS["liver"])] = organ
        else:
            o[sel] = organ
    if vessel is not None:
        canvas.vessels[sl][sel] = vessel


def paint_anatomy(canvas: Canvas, an: Anatomy, phase: str, *, before_organs=None, after_vessels=None) -> None:
    """Paint body wall, thorax base, abdominal organs, vessels and spine (noise-free).

    ``before_organs`` and ``after_vessels`` (callables of the canvas) paint optional
    structures (bowel, hepatic arteries) at those points of the painting order.
    """
    g = canvas.grid
    hu = HU_BY_PHASE[phase]
    zmin = g.origin_lps[2] - 400.0
    zmax = g.origin_lps[2] + 400.0 + g.shape_zyx[0] * g.spacing_zyx[0]
    L = ORGAN_LABELS
    # structures constant along z: painted on one slice and copied when the patient does not move
    if not g.moving:
        g1 = Grid((1,) + tuple(g.shape_zyx[1:]), g.spacing_zyx, g.origin_lps, None)  # type: ignore[arg-type]
        shp = g1.shape_zyx
        c1 = Canvas(g1, np.empty(shp, dtype=F), np.zeros(shp, dtype=np.uint8), np.zeros(shp, dtype=np.uint8))
        _paint_columns(c1, an, hu, zmin, zmax)
        canvas.image[...] = c1.image
        canvas.organs[...] = c1.organs
        canvas.vessels[...] = c1.vessels
    else:
        _paint_columns(canvas, an, hu, zmin, zmax)

    # thorax base: diaphragm muscle sheet, lungs above it (outside the mediastinum), heart
    ca = _BODY_A - (_SKIN_MM + _SUBCUT_MM + _MUSCLE_MM)
    cb = _BODY_B - (_SKIN_MM + _SUBCUT_MM + _MUSCLE_MM)
    zlow = min(an.dome_left, an.dome_right) - 60.0
    box_lo, box_hi = np.array([-ca, _BODY_YC - cb, zlow]), np.array([ca, _BODY_YC + cb, zmax])
    ax_, ay_ = an.aorta_xy

    def keep_out(x, y):
        """Positive inside the aorta and the vertebral column (they pass through the diaphragm)."""
        return -np.minimum(ellipse2d_sdf(x, y, ax_, ay_, an.aorta_r + 1.5, an.aorta_r + 1.5), ellipse2d_sdf(x, y, 0.0, 80.0, 24.0, 32.0))

    def diaphragm(x, y, z):
        d = np.maximum(an.cavity_sdf(x, y), np.abs(z - an.diaphragm_z(x, y) - F(2.0)) - F(2.0))
        return np.maximum(d, keep_out(x, y))

    def lungs(x, y, z):
        d = smooth_max(an.cavity_sdf(x, y) + 2.0, an.diaphragm_z(x, y) + 4.0 - z, 2.0)
        mediastinum = ellipse2d_sdf(x, y, 8.0, 50.0, 34.0, 52.0)
        return np.maximum(d, -mediastinum)

    paint(canvas, rasterise(g, diaphragm, box_lo, box_hi, step_mm=1.0), hu["muscle"], organ=L["muscle"])
    paint(canvas, rasterise(g, lungs, box_lo, box_hi, step_mm=1.0), hu["lung"], organ=L["lung"])
    paint(canvas, rasterise(g, lambda x, y, z: np.maximum(an.heart_sdf(x, y, z), keep_out(x, y)), np.array([-55.0, -85.0, an.dome_left - 20]), np.array([100.0, 40.0, an.dome_left + 110])),
          hu["heart"], organ=L["heart"])

    if before_organs is not None:
        before_organs(canvas)
    # abdominal organs
    def organ_box(c, r, pad=6.0):
        m = float(np.max(r)) + pad
        return np.asarray(c) - m, np.asarray(c) + m

    st = an.stomach_sdf
    lo, hi = organ_box(an.stomach_c, an.stomach_r)
    paint(canvas, rasterise(g, st, lo, hi, step_mm=1.0), hu["stomach_wall"], organ=L["stomach"])
    paint(canvas, rasterise(g, lambda x, y, z: st(x, y, z) + 4.0, lo, hi, step_mm=1.0), hu["stomach_content"])
    air_level = float(an.stomach_c[1] - 0.35 * an.stomach_r[1])
    paint(canvas, rasterise(g, lambda x, y, z: smooth_max(st(x, y, z) + 4.0, y - F(air_level), 0.5), lo, hi, step_mm=1.0), hu["air"])
    lo, hi = organ_box(an.spleen_c, an.spleen_r)
    paint(canvas, rasterise(g, an.spleen_sdf, lo, hi, step_mm=1.0), hu["spleen"], organ=L["spleen"])
    for right, lab in ((True, L["kidney_right"]), (False, L["kidney_left"])):
        c = an.kidney_r_c if right else an.kidney_l_c
        lo, hi = organ_box(c, an.kidney_r)
        paint(canvas, rasterise(g, lambda x, y, z, right=right: an.kidney_sdf(x, y, z, right=right), lo, hi, step_mm=1.0), hu["kidney"], organ=lab)
        # renal sinus fat
        paint(canvas, rasterise(g, lambda x, y, z, right=right: an.kidney_sdf(x, y, z, right=right) + 13.0, lo, hi, step_mm=1.0), -40.0)
    lo, hi = organ_box(an.gb_c, an.gb_r)
    paint(canvas, rasterise(g, an.gallbladder_sdf, lo, hi, step_mm=1.0), hu["gallbladder"], organ=L["gallbladder"])

    # liver
    lo, hi = an.liver_bounds()
    res = rasterise(g, an.liver_sdf, lo, hi, step_mm=0.7)
    canvas.liver_cov = res
    paint(canvas, res, hu["liver"], organ=L["liver"])

    # inferior vena cava (ends in the right atrium)
    ix, iy = an.ivc_xy
    rx, ry = an.ivc_r
    ivc_top = max(an.dome_right, an.dome_left) + 25.0
    paint(canvas, rasterise(g, lambda x, y, z: smooth_max(ellipse2d_sdf(x, y, ix, iy, rx, ry), z - F(ivc_top), 3.0), np.array([ix - 16, iy - 16, zmin]), np.array([ix + 16, iy + 16, ivc_top + 5])),
          hu["ivc"], organ=L["ivc"], vessel=VESSEL_LABELS["ivc"])
    # portal system and hepatic veins
    for sg in an.segments:
        lo, hi = sg.bounds()
        step = 0.35 if min(sg.ra, sg.rb) < 2.5 else 0.6
        hu_v = hu["portal"] if sg.system == "portal" else hu["hepatic_vein"]
        lab = VESSEL_LABELS["portal"] if sg.system == "portal" else VESSEL_LABELS["hepatic_vein"]
        paint(canvas, rasterise(g, sg.sdf, lo, hi, step_mm=step), hu_v, organ=L["portal_vein"] if sg.system == "portal" else None,
              vessel=lab, keep_liver_label=True)

    if after_vessels is not None:
        after_vessels(canvas)
    # vertebral bodies (cortical rim, trabecular core) between the discs
    _paint_vertebral_bodies(canvas, an, hu, zmin, zmax)


_SPINE = (0.0, 66.0, 22.0, 16.0)  # vertebral body centre x, y and semi-axes, mm
_SPINE_PERIOD, _DISC, _SPINE_Z0 = 34.0, 8.0, -13.0


def _paint_columns(canvas: Canvas, an: Anatomy, hu: dict[str, float], zmin: float, zmax: float) -> None:
    """Everything constant along z: body wall layers, paraspinal muscles, aorta, spinal column and arch."""
    g = canvas.grid
    L = ORGAN_LABELS

    def zinv(fn2d, lo_xy, hi_xy, step_mm=0.7):
        return rasterise(g, lambda x, y, z: fn2d(x, y), np.array([lo_xy[0], lo_xy[1], zmin]), np.array([hi_xy[0], hi_xy[1], zmax]), z_invariant=True, step_mm=step_mm)

    canvas.image[...] = hu["air"]
    a, b = _BODY_A, _BODY_B
    box = ((-a - 2, _BODY_YC - b - 2), (a + 2, _BODY_YC + b + 2))
    paint(canvas, zinv(lambda x, y: ellipse2d_sdf(x, y, 0, _BODY_YC, a, b), *box), hu["skin"], organ=L["skin"])
    t = _SKIN_MM
    paint(canvas, zinv(lambda x, y, t=t: ellipse2d_sdf(x, y, 0, _BODY_YC, a - t, b - t), *box), hu["fat"], organ=L["fat"])
    t += _SUBCUT_MM
    paint(canvas, zinv(lambda x, y, t=t: ellipse2d_sdf(x, y, 0, _BODY_YC, a - t, b - t), *box), hu["muscle"], organ=L["muscle"])
    t += _MUSCLE_MM
    paint(canvas, zinv(lambda x, y, t=t: ellipse2d_sdf(x, y, 0, _BODY_YC, a - t, b - t), *box), hu["visceral_fat"], organ=L["fat"])
    for sx in (-1.0, 1.0):
        paint(canvas, zinv(lambda x, y, sx=sx: ellipse2d_sdf(x, y, 34.0 * sx, 92.0, 24.0, 20.0), (34 * sx - 26, 70), (34 * sx + 26, 114)), hu["muscle"], organ=L["muscle"])
    ax, ay = an.aorta_xy
    paint(canvas, zinv(lambda x, y: ellipse2d_sdf(x, y, ax, ay, an.aorta_r, an.aorta_r), (ax - 14, ay - 14), (ax + 14, ay + 14)),
          hu["aorta"], organ=L["aorta"], vessel=VESSEL_LABELS["aorta"])
    bx, by, ba, bb = _SPINE
    paint(canvas, zinv(lambda x, y: ellipse2d_sdf(x, y, bx, by, ba - 1, bb - 1), (bx - ba - 3, by - bb - 3), (bx + ba + 3, by + bb + 3)), hu["disc"], organ=L["spine"])
    cy = by + bb + 10.0
    lo2, hi2 = (-20.0, cy - 16), (20.0, cy + 40)
    paint(canvas, zinv(lambda x, y: np.abs(ellipse2d_sdf(x, y, 0.0, cy, 11.5, 10.0)) - F(3.0), lo2, hi2), hu["bone_cortical"] * 0.8, organ=L["spine"])
    paint(canvas, zinv(lambda x, y: ellipse2d_sdf(x, y, 0.0, cy, 8.5, 7.0), lo2, hi2), hu["csf"], organ=L["spine"])
    paint(canvas, zinv(lambda x, y: np.maximum(np.abs(x) - F(3.5), np.abs(y - F(cy + 24.0)) - F(12.0)), lo2, hi2), hu["bone_cortical"] * 0.7, organ=L["spine"])


def _paint_vertebral_bodies(canvas: Canvas, an: Anatomy, hu: dict[str, float], zmin: float, zmax: float) -> None:
    g = canvas.grid
    L = ORGAN_LABELS
    bx, by, ba, bb = _SPINE

    def body(x, y, z, inset=0.0):
        d2 = ellipse2d_sdf(x, y, bx, by, ba - inset, bb - inset)
        u = np.mod(z - F(_SPINE_Z0), F(_SPINE_PERIOD)) - F(_SPINE_PERIOD / 2)
        dz = np.abs(u) - F((_SPINE_PERIOD - _DISC) / 2 - inset)  # > 0 in a disc
        return np.maximum(d2, dz)

    lo = np.array([bx - ba - 3, by - bb - 3, zmin])
    hi = np.array([bx + ba + 3, by + bb + 3, zmax])
    paint(canvas, rasterise(g, body, lo, hi, step_mm=0.7), hu["bone_cortical"], organ=L["spine"])
    paint(canvas, rasterise(g, lambda x, y, z: body(x, y, z, 1.6), lo, hi, step_mm=0.7), an.trabecular_hu, organ=L["spine"])
