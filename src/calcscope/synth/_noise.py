"""CT-like image noise (correlated, band-pass texture) and mild streak artefacts."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ._geometry import F, Grid

__all__ = ["correlated_noise", "add_streaks", "z_kernel", "adjacent_correlation"]


def adjacent_correlation(kernel: np.ndarray) -> float:
    """Correlation of neighbouring samples of white noise filtered by ``kernel``."""
    k = np.asarray(kernel, float)
    return float((k[1:] * k[:-1]).sum() / (k * k).sum())


def z_kernel(sigma_mm: float, spacing_mm: float) -> np.ndarray:
    """Discrete Gaussian kernel along z whose adjacent-slice noise correlation is
    ``exp(-spacing^2 / (4 sigma^2))`` (the continuous-profile value; a Gaussian sampled at
    sub-voxel sigma would correlate much less), found by bisection on the kernel's sigma."""
    target = float(np.exp(-(spacing_mm**2) / (4.0 * sigma_mm**2))) if sigma_mm > 0 else 0.0
    if target < 1e-3:
        return np.ones(1)

    def kern(sig: float) -> np.ndarray:
        r = max(1, int(np.ceil(3.0 * sig)))
        x = np.arange(-r, r + 1, dtype=float)
        k = np.exp(-0.5 * (x / sig) ** 2)
        return k / k.sum()

    lo, hi = 0.05, 50.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if adjacent_correlation(kern(mid)) < target:
            lo = mid
        else:
            hi = mid
    return kern(0.5 * (lo + hi)).astype(np.float32)


def correlated_noise(
    shape_zyx: tuple[int, int, int],
    spacing_zyx: tuple[float, float, float],
    *,
    sd_hu: float,
    rng: np.random.Generator,
    fine_mm: float = 0.7,
    coarse_mm: float = 4.5,
    coarse_weight: float = 0.6,
    z_sigma_mm: float = 0.0,
) -> np.ndarray:
    """Noise with a band-pass (CT-like) noise power spectrum, scaled to ``sd_hu``.

    Uniform white noise is smoothed in the axial plane by a Gaussian of ``fine_mm``
    (removes the highest frequencies, like a soft reconstruction kernel); a box average
    over ``coarse_mm`` times ``coarse_weight`` is then subtracted (removes the lowest
    frequencies, as filtered back-projection does), giving the mid-frequency peaked
    spectrum and the grainy texture of CT noise; the result is rescaled so its standard
    deviation is ``sd_hu``.  After smoothing over about ten samples the amplitude
    distribution is Gaussian to a close approximation.  Filter widths are in mm, so the
    texture is the same at any spacing.  With ``z_sigma_mm`` = 0 slices are independent;
    otherwise the noise is first filtered along z by :func:`z_kernel`, so that adjacent
    slices correlate as white noise seen through a Gaussian slice sensitivity profile of
    sigma ``z_sigma_mm`` would: ``exp(-spacing^2 / (4 sigma^2))``.
    """
    w = rng.random(size=shape_zyx, dtype=np.float32)
    w -= F(0.5)
    sz, sy, sx = spacing_zyx
    if z_sigma_mm > 0:
        k = z_kernel(z_sigma_mm, sz)
        if k.size > 1:
            ndimage.correlate1d(w, k, axis=0, output=w, mode="wrap")
    for axis, s in ((1, sy), (2, sx)):
        sig = fine_mm / s
        if sig >= 0.3:
            ndimage.gaussian_filter1d(w, sig, axis=axis, output=w, mode="wrap", truncate=2.5)
    wide = np.empty_like(w)
    ndimage.uniform_filter1d(w, max(3, int(round(coarse_mm / sy)) | 1), axis=1, output=wide, mode="wrap")
    ndimage.uniform_filter1d(wide, max(3, int(round(coarse_mm / sx)) | 1), axis=2, output=wide, mode="wrap")
    wide *= F(coarse_weight)
    w -= wide
    del wide
    flat = w.reshape(-1)
    step = max(1, flat.size // 2_000_000)
    sd = float(np.std(flat[::step], dtype=np.float64))
    w *= F(sd_hu / sd) if sd > 0 else F(0.0)
    return w


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
