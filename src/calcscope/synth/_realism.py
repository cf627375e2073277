"""Optional realism of the phantom: slice thickness, through-slice noise correlation,
parenchymal texture, hepatic arteries and bowel loops.

All of it is off by default (``generate_phantom(realism=None)`` gives the same bytes as
before these options existed); ``realism=True`` turns every item on with the typical
values of :class:`Realism`. Each item draws from its own random stream, so switching one
on never moves the anatomy or the findings.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from ._anatomy import ORGAN_LABELS, VESSEL_LABELS, Anatomy, Canvas, Segment, capsule_sdf, paint
from ._geometry import F, Grid, rasterise, smooth_max

__all__ = ["Realism", "resolve_realism", "build_arteries", "paint_arteries", "paint_bowel", "add_texture", "thicken_slices", "noise_z_sigma_mm"]

#: fluid in bowel loops (no oral contrast), HU
BOWEL_FLUID_HU = 15.0
#: colonic content (stool mixed with gas), HU
BOWEL_STOOL_HU = -20.0
#: bowel wall by phase (enhancing mucosa and muscle), HU
BOWEL_WALL_HU = {"non_contrast": 38.0, "arterial": 95.0, "portal_venous": 90.0, "delayed": 70.0}


@dataclass(frozen=True)
class Realism:
    """Realism options (typical values as defaults; see ``docs/phantoms.md``).

    Attributes
    ----------
    slice_thickness_mm: float or None
        Reconstructed slice thickness; None = the slice spacing. A thickness larger than
        the spacing (overlapping reconstruction, e.g. 3 mm slices every 2 mm) blurs the
        image along z by the extra width of the slice profile.
    noise_z_fwhm_factor: float
        Through-slice noise correlation: the noise is smoothed along z by a Gaussian whose
        FWHM is this factor times the slice thickness (0 = independent slices). 1.0 gives an
        adjacent-slice noise correlation of about 0.25 for contiguous slices and about 0.55
        for 3 mm slices at 2 mm spacing.
    texture_hu: float
        Standard deviation of a smooth, zero-mean parenchymal texture inside the liver (0 = none).
    texture_mm: float
        Correlation length (Gaussian sigma) of that texture.
    hepatic_arteries: bool
        Common/proper hepatic artery from the aorta to the hilum and intrahepatic arteries of
        3-5 mm beside the portal branches, with the phase's arterial HU (280 HU arterial).
    bowel: bool
        Hepatic flexure of the colon (gas above stool) and fluid-filled small-bowel loops
        against the liver's inferior surface.
    """

    slice_thickness_mm: float | None = None
    noise_z_fwhm_factor: float = 1.0
    texture_hu: float = 4.0
    texture_mm: float = 3.0
    hepatic_arteries: bool = True
    bowel: bool = True

    def as_dict(self) -> dict:
        return asdict(self)


def resolve_realism(realism: "Realism | bool | None") -> Realism | None:
    """None/False -> None (off); True -> :class:`Realism` defaults; a Realism is checked and returned."""
    if realism is None or realism is False:
        return None
    if realism is True:
        return Realism()
    if not isinstance(realism, Realism):
        raise ValueError(f"realism must be a Realism, True, False or None; got {type(realism).__name__}")
    if realism.slice_thickness_mm is not None and not 0 < realism.slice_thickness_mm <= 10:
        raise ValueError("Realism.slice_thickness_mm must be in (0, 10] mm")
    if realism.noise_z_fwhm_factor < 0 or realism.texture_hu < 0 or realism.texture_mm <= 0:
        raise ValueError("Realism: noise_z_fwhm_factor and texture_hu must be >= 0, texture_mm > 0")
    return realism


def noise_z_sigma_mm(realism: Realism | None, spacing_z_mm: float) -> float:
    """Gaussian sigma (mm) of the through-slice noise correlation."""
    if realism is None:
        return 0.0
    t = realism.slice_thickness_mm or spacing_z_mm
    return realism.noise_z_fwhm_factor * t / 2.3548


def thicken_slices(image: np.ndarray, spacing_z_mm: float, thickness_mm: float) -> None:
    """Blur along z, in place, so each slice averages ``thickness_mm`` instead of its spacing.

    Rasterisation already averages every voxel over its own z extent (a box of the
    spacing); the extra Gaussian has the variance that the wider box adds,
    ``(thickness^2 - spacing^2) / 12``.
    """
    extra = (thickness_mm**2 - spacing_z_mm**2) / 12.0
    if extra <= 0:
        return
    sigma = float(np.sqrt(extra)) / spacing_z_mm
    if sigma >= 0.05:
        ndimage.gaussian_filter1d(image, sigma, axis=0, output=image, mode="nearest", truncate=3.0)


# --------------------------------------------------------------------------------------
# hepatic arteries
# --------------------------------------------------------------------------------------


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return np.asarray(v, float) / n if n > 0 else np.asarray(v, float)


def build_arteries(an: Anatomy, rng: np.random.Generator) -> list[Segment]:
    """Hepatic artery tree (anatomy frame): extrahepatic trunk plus one artery beside each portal branch.

    The common hepatic artery leaves the aorta's front about 95 mm below the liver centre
    and runs to the hilum in front of the portal bifurcation (radius 2.8 -> 2.4 mm); each
    portal segment of 2-5.5 mm radius inside the liver gets an artery of radius
    0.45 x the portal radius clipped to 1.5-2.5 mm (3-5 mm calibre), running parallel to it
    1 mm outside its wall on the anterior side (offset direction varied by up to 25 degrees).
    """
    ax, ay = an.aorta_xy
    origin = np.array([ax, ay - an.aorta_r + 1.0, -95.0 + rng.normal(0, 3)])
    bif = np.asarray(an.landmarks["portal_bifurcation"], float)
    hilum = bif + np.array([2.0, -11.0, -3.0])
    mid = np.array([(origin[0] + hilum[0]) / 2 + 6.0, min(origin[1], hilum[1]) - 6.0, (origin[2] + hilum[2]) / 2])
    segs = [Segment(tuple(origin), tuple(mid), 2.8, 2.6, "hepatic_artery", 0), Segment(tuple(mid), tuple(hilum), 2.6, 2.4, "hepatic_artery", 0)]
    ref = np.array([0.0, -1.0, 0.0])  # anterior
    for sg in an.segments:
        if sg.system != "portal" or sg.generation < 1:
            continue
        rp = max(sg.ra, sg.rb)
        if not 2.0 <= rp <= 5.5:
            continue
        a, b = np.asarray(sg.a), np.asarray(sg.b)
        if an.liver_sdf_point(a) > -3.0 or an.liver_sdf_point(b) > -3.0:
            continue
        d = _unit(b - a)
        n = ref - ref.dot(d) * d
        if np.linalg.norm(n) < 0.2:
            n = np.cross(d, np.array([1.0, 0.0, 0.0]))
        n = _unit(n + rng.normal(0, 0.22, size=3))
        n = _unit(n - n.dot(d) * d)
        ra = float(np.clip(0.45 * sg.ra, 1.5, 2.5))
        rb = float(np.clip(0.45 * sg.rb, 1.5, 2.5))
        off_a, off_b = n * (sg.ra + ra + 1.0), n * (sg.rb + rb + 1.0)
        pa, pb = a + off_a, b + off_b
        if an.liver_sdf_point(pa) > -(ra + 1.0) or an.liver_sdf_point(pb) > -(rb + 1.0):
            continue
        segs.append(Segment(tuple(pa), tuple(pb), ra, rb, "hepatic_artery", sg.generation))
    return segs


def paint_arteries(canvas: Canvas, segments: list[Segment], hu: float) -> None:
    """Paint artery segments (inside the liver the organ label stays liver)."""
    for sg in segments:
        lo, hi = sg.bounds()
        paint(canvas, rasterise(canvas.grid, sg.sdf, lo, hi, step_mm=0.35), hu,
              organ=ORGAN_LABELS["hepatic_artery"], vessel=VESSEL_LABELS["hepatic_artery"], keep_liver_label=True)


# --------------------------------------------------------------------------------------
# bowel
# --------------------------------------------------------------------------------------


def _liver_floor(an: Anatomy, x: float, y: float) -> float | None:
    """Lowest z (mm) of the liver above (x, y), or None when the column misses it."""
    lo, hi = an.liver_bounds()
    zs = np.arange(lo[2], hi[2], 2.0)
    pts = np.stack([np.full_like(zs, x), np.full_like(zs, y), zs], axis=1)
    inside = an.liver_sdf_points(pts) < 0
    return float(zs[np.argmax(inside)]) if inside.any() else None


def _chain(points: list[np.ndarray], radius: list[float]) -> list[tuple[np.ndarray, np.ndarray, float, float]]:
    return [(points[i], points[i + 1], radius[i], radius[i + 1]) for i in range(len(points) - 1)]


def _chain_sdf(chain):
    def f(x, y, z):
        d = None
        for a, b, ra, rb in chain:
            v = capsule_sdf(x, y, z, a, b, ra, rb)
            d = v if d is None else np.minimum(d, v)
        return d

    return f


def paint_bowel(canvas: Canvas, an: Anatomy, phase: str, rng: np.random.Generator) -> None:
    """Colon (hepatic flexure: gas over stool) and small-bowel loops (fluid) under the liver.

    Painted before the abdominal organs, so kidneys, gallbladder, liver and IVC (painted
    later) lie over them, and kept out of the retroperitoneum (x > -20 mm near the aorta,
    y > 20 mm) so the aorta, IVC and spine stay intact. Wall 2.5 mm (colon) / 2 mm (small bowel).
    """
    g = canvas.grid
    wall_hu = BOWEL_WALL_HU[phase]
    # anchor: the liver's inferior surface under the right lobe
    xa, ya = -72.0 + rng.normal(0, 4), -18.0 + rng.normal(0, 4)
    floor = _liver_floor(an, xa, ya)
    if floor is None:
        return
    cav = an.cavity_sdf

    def keep_in(x, y, z, d):
        """Inside the abdominal cavity, in front of the retroperitoneum."""
        d = smooth_max(d, cav(x, y) + F(3.0), 2.0)
        return np.maximum(d, y - F(24.0))

    # colon: ascending limb up the right flank, hepatic flexure under the liver, transverse limb medially
    rc = float(rng.uniform(19.0, 24.0))
    z0 = floor - rc + 8.0  # tucked 8 mm into the inferior surface: the liver, painted later, lies over it
    pts = [
        np.array([xa - 32.0, ya + 18.0, z0 - 70.0]),
        np.array([xa - 30.0, ya + 10.0, z0 - 30.0]),
        np.array([xa - 18.0, ya, z0]),
        np.array([xa + 14.0, ya - 22.0, z0 - 4.0]),
        np.array([xa + 52.0, ya - 40.0, z0 - 14.0]),
        np.array([xa + 100.0, ya - 46.0, z0 - 22.0]),
    ]
    pts = [p + rng.normal(0, 2.5, size=3) for p in pts]
    rads = [rc * float(rng.uniform(0.85, 1.05)) for _ in pts]
    colon = _chain(pts, rads)
    f_out = _chain_sdf(colon)
    lo = np.min([p for p in pts], axis=0) - max(rads) - 4
    hi = np.max([p for p in pts], axis=0) + max(rads) + 4
    outer = lambda x, y, z: keep_in(x, y, z, f_out(x, y, z))  # noqa: E731
    inner = lambda x, y, z: outer(x, y, z) + F(2.5)  # noqa: E731
    paint(canvas, rasterise(g, outer, lo, hi, step_mm=1.0), wall_hu, organ=ORGAN_LABELS["bowel"])
    paint(canvas, rasterise(g, inner, lo, hi, step_mm=1.0), BOWEL_STOOL_HU)
    # gas rises anteriorly (supine patient: smaller y): in each limb, above a level 0.25 x the
    # calibre in front of the limb's axis
    for a, b, ra, rb in colon:
        level = F(0.5 * (a[1] + b[1]) - 0.25 * (ra + rb))
        seg = lambda x, y, z, a=a, b=b, ra=ra, rb=rb: keep_in(x, y, z, capsule_sdf(x, y, z, a, b, ra, rb)) + F(2.5)  # noqa: E731
        gas = lambda x, y, z, seg=seg, level=level: smooth_max(seg(x, y, z), y - level, 0.5)  # noqa: E731
        slo, shi = np.minimum(a, b) - max(ra, rb) - 2, np.maximum(a, b) + max(ra, rb) + 2
        paint(canvas, rasterise(g, gas, slo, shi, step_mm=1.0), -1000.0)

    # small bowel: a few fluid-filled loops medial to the flexure, just under the liver
    for k in range(int(rng.integers(2, 4))):
        r = float(rng.uniform(10.0, 13.0))
        cx, cy = xa + 22.0 + 16.0 * k + rng.normal(0, 4), ya - 8.0 + rng.normal(0, 6)
        f2 = _liver_floor(an, cx, cy)
        c = np.array([cx, cy, (floor if f2 is None else f2) - r + 3.0 - 5.0 * k + rng.normal(0, 2)])
        u = _unit(rng.normal(size=3) * np.array([1.0, 0.6, 0.3]))
        a, b = c - u * 22.0, c + u * 22.0
        mid = c + _unit(np.cross(u, [0.0, 0.0, 1.0])) * rng.uniform(6, 12)
        loop = [(a, mid, r, r), (mid, b, r, r)]
        f_loop = _chain_sdf(loop)
        lo2 = np.minimum(a, b) - r - 14
        hi2 = np.maximum(a, b) + r + 14
        outer2 = lambda x, y, z, f=f_loop: keep_in(x, y, z, f(x, y, z))  # noqa: E731
        paint(canvas, rasterise(g, outer2, lo2, hi2, step_mm=1.0), wall_hu, organ=ORGAN_LABELS["bowel"])
        paint(canvas, rasterise(g, lambda x, y, z, f=outer2: f(x, y, z) + F(2.0), lo2, hi2, step_mm=1.0), BOWEL_FLUID_HU)


# --------------------------------------------------------------------------------------
# parenchymal texture
# --------------------------------------------------------------------------------------


def add_texture(image: np.ndarray, grid: Grid, parenchyma: np.ndarray, *, sd_hu: float, corr_mm: float, rng: np.random.Generator) -> None:
    """Add a smooth zero-mean texture of ``sd_hu`` to the ``parenchyma`` voxels, in place.

    White noise on a coarse lattice of about ``corr_mm`` / 1.5 mm over the liver's box is
    Gaussian-smoothed by ``corr_mm``, rescaled to ``sd_hu`` and interpolated (linear) to the
    voxels, so the cost does not grow with the fine grid.
    """
    if sd_hu <= 0 or not parenchyma.any():
        return
    idx = np.nonzero(parenchyma.any(axis=(1, 2)))[0], np.nonzero(parenchyma.any(axis=(0, 2)))[0], np.nonzero(parenchyma.any(axis=(0, 1)))[0]
    sl = tuple(slice(int(i[0]), int(i[-1]) + 1) for i in idx)
    sub_shape = tuple(s.stop - s.start for s in sl)
    coarse_mm = max(corr_mm / 1.5, 1.0)
    cshape = tuple(max(2, int(np.ceil(n * s / coarse_mm)) + 1) for n, s in zip(sub_shape, grid.spacing_zyx))
    step_mm = [n * s / c for n, s, c in zip(sub_shape, grid.spacing_zyx, cshape)]  # coarse lattice step, mm
    w = rng.standard_normal(cshape).astype(F)
    w = ndimage.gaussian_filter(w, [corr_mm / st for st in step_mm], mode="wrap")
    sd = float(w.std())
    if sd > 0:
        w *= F(sd_hu / sd)
    field = ndimage.zoom(w, [n / c for n, c in zip(sub_shape, cshape)], order=1, mode="nearest", grid_mode=True)
    sub = image[sl]
    m = parenchyma[sl]
    sub[m] += field[m]
