"""CT-like image noise (correlated, band-pass texture) and mild streak artefacts."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ._geometry import F, Grid

__all__ = ["correlated_noise", "add_streaks"]


def correlated_noise(
    shape_zyx: tuple[int, int, int],
    spacing_zyx: tuple[float, float, float],
    *,
    sd_hu: float,
    rng: np.random.Generator,
    fine_mm: float = 0.7,
    coarse_mm: float = 2.0,
    coarse_weight: float = 0.5,
    z_mm: float = 0.6,
) -> np.ndarray:
    """Gaussian noise with a band-pass (CT-like) noise power spectrum, scaled to ``sd_hu``.

    White noise is filtered with a difference of two Gaussians in the axial plane
    (``fine_mm`` minus ``coarse_weight`` x ``coarse_mm``), which removes the lowest
    frequencies and the highest ones like filtered back-projection with a soft kernel,
    and lightly along z (``z_mm``), then rescaled so its standard deviation is ``sd_hu``.
    The texture in mm is the same at any spacing (the filter widths are physical).
    """
    w = rng.standard_normal(size=shape_zyx, dtype=np.float32)
    sz, sy, sx = spacing_zyx
    s1 = (z_mm / sz, fine_mm / sy, fine_mm / sx)
    s2 = (z_mm / sz, coarse_mm / sy, coarse_mm / sx)
    s1 = tuple(v if v >= 0.25 else 0.0 for v in s1)
    out = ndimage.gaussian_filter(w, sigma=s1, mode="wrap", truncate=3.0) if any(s1) else w.copy()
    wide = ndimage.gaussian_filter(w, sigma=s2, mode="wrap", truncate=3.0)
    del w
    wide *= F(coarse_weight)
    out -= wide
    del wide
    # scale from a deterministic subsample (fast on big grids)
    flat = out.reshape(-1)
    step = max(1, flat.size // 2_000_000)
    sd = float(np.std(flat[::step], dtype=np.float64))
    out *= F(sd_hu / sd) if sd > 0 else F(0.0)
    return out


def add_streaks(
    image: np.ndarray,
    grid: Grid,
    sources: list[tuple[np.ndarray, float, float]],
    *,
    rng: np.random.Generator,
    max_amplitude_hu: float = 60.0,
    reach_mm: float = 35.0,
) -> None:
    """Add mild beam-hardening-like streaks through dense objects, in place.

    Parameters
    ----------
    sources: list of (centre_zyx_index, size_mm, hu)
        Dense objects; each produces 3-5 alternating bright/dark thin streaks in the
        axial slices it spans, fading over ``reach_mm``, amplitude growing with its
        size and density (at most ``max_amplitude_hu``).
    """
    sz, sy, sx = grid.spacing_zyx
    for cz, size_mm, hu in sources:
        amp = min(max_amplitude_hu, 0.06 * max(0.0, hu - 150.0) * min(1.0, size_mm / 6.0))
        if amp < 2.0:
            continue
        half_z = max(1, int(np.ceil(size_mm / 2 / sz)))
        z0 = max(0, int(round(cz[0])) - half_z + 1)
        z1 = min(image.shape[0], int(round(cz[0])) + half_z)
        if z1 <= z0:
            continue
        ry, rx = int(reach_mm / sy), int(reach_mm / sx)
        y0, y1 = max(0, int(cz[1]) - ry), min(image.shape[1], int(cz[1]) + ry + 1)
        x0, x1 = max(0, int(cz[2]) - rx), min(image.shape[2], int(cz[2]) + rx + 1)
        if y1 <= y0 or x1 <= x0:
            continue
        yy = ((np.arange(y0, y1) - cz[1]) * sy)[:, None].astype(F)
        xx = ((np.arange(x0, x1) - cz[2]) * sx)[None, :].astype(F)
        r = np.sqrt(xx * xx + yy * yy)
        pattern = np.zeros_like(r)
        n = int(rng.integers(3, 6))
        for k in range(n):
            th = rng.uniform(0, np.pi)
            perp = np.abs(-np.sin(th) * xx + np.cos(th) * yy)
            sign = 1.0 if k % 2 == 0 else -1.0
            pattern += F(sign) * np.exp(-(perp * perp) / F(2 * 0.9**2))
        fade = np.exp(-r / F(reach_mm / 2.5)) * (r > size_mm / 2)
        image[z0:z1, y0:y1, x0:x1] += (F(amp) * pattern * fade)[None]
