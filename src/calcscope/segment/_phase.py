"""Contrast phase estimate from measured aorta, portal/hepatic vessel and liver attenuation."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from ..model import Phase, PhaseEstimate, Volume
from ._classical import _body_mask, coarse_image
from ._grid import _bbox, block_reduce_mask, erode_mm
from ._landmarks import find_aorta

__all__ = ["estimate_phase", "classify_phase"]

#: a voxel this bright is calcium (or dense contrast), not the blood of the liver's veins in any
#: phase; the blocks of the working grid holding one, and their neighbours, do not count for the
#: liver-vessel reading: the partial-volume rim of a calcified capsule and septa (schistosomiasis)
#: or of many calcified granulomas would read as "enhanced vessels" on a non-contrast scan
CALCIUM_HU = 300.0


def classify_phase(aorta_hu: float | None, vessel_hu: float | None, liver_hu: float | None) -> tuple[Phase, str]:
    """Rule-based phase from three attenuations (HU); returns the phase and a short reason.

    * non-contrast: aorta below 90 HU and liver vessels no brighter than parenchyma + 30 HU;
    * arterial: aorta at least 140 HU and liver vessels more than 60 HU below the aorta
      (portal system not yet filled) with the parenchyma barely enhanced;
    * portal-venous: aorta at least 140 HU with liver vessels within 60 HU of it;
    * delayed: aorta 90-140 HU, vessels and aorta alike (equilibrium).
    """
    if aorta_hu is None and vessel_hu is None:
        return Phase.UNKNOWN, "neither the aorta nor liver vessels could be measured"
    a = aorta_hu
    v = vessel_hu
    liv = liver_hu
    enhanced_vessels = v is not None and liv is not None and v > liv + 30.0
    if a is None:
        if not enhanced_vessels:
            return Phase.NON_CONTRAST, f"aorta not found; liver vessels ({v:.0f} HU) not brighter than parenchyma"
        return Phase.UNKNOWN, "aorta not found; liver vessels enhanced but phase cannot be told without the aorta"
    if a < 90.0 and not enhanced_vessels:
        return Phase.NON_CONTRAST, f"aorta {a:.0f} HU (< 90) and no vessel enhancement in the liver"
    if a >= 140.0:
        if v is not None and a - v > 60.0 and (liv is None or liv < 95.0):
            return Phase.ARTERIAL, f"aorta {a:.0f} HU bright while liver vessels ({v:.0f} HU) lag by more than 60 HU"
        return Phase.PORTAL_VENOUS, f"aorta {a:.0f} HU with liver vessels ({v:.0f} HU) filled to within 60 HU"
    if a >= 90.0:
        if not enhanced_vessels and liv is not None and liv < 70.0:
            return Phase.NON_CONTRAST, (
                f"liver {liv:.0f} HU unenhanced and liver vessels not brighter than parenchyma; "
                f"the aorta reading ({a:.0f} HU) was discounted"
            )
        return Phase.DELAYED, f"aorta {a:.0f} HU (90-140) with vessels and parenchyma at equilibrium"
    # aorta read below 90 HU, yet liver vessels 30 HU or more above the parenchyma: the two
    # readings conflict (the aorta finder took another structure, e.g. on a cropped field of
    # view); guessing "non-contrast" would let enhanced vessels pass as calcium
    return Phase.UNKNOWN, (
        f"the aorta reading ({a:.0f} HU, unenhanced) conflicts with enhanced liver vessels "
        f"({v:.0f} HU against parenchyma {liv:.0f} HU); the phase cannot be told"
    )


def _near_calcium(volume: Volume, liver_mask: np.ndarray, can, factors: tuple[int, int, int]) -> np.ndarray:
    """Working-grid blocks holding a voxel above :data:`CALCIUM_HU` in the liver, grown by one block."""
    native = np.zeros(liver_mask.shape, bool)
    box = _bbox(liver_mask, [0, 0, 0])
    if box is not None:
        native[box] = (volume.array[box] > CALCIUM_HU) & liver_mask[box]
    coarse = block_reduce_mask(can.from_native(native), factors, level=0.0)
    return ndi.binary_dilation(coarse, structure=np.ones((3, 3, 3), bool)) if coarse.any() else coarse


def estimate_phase(volume: Volume, liver_mask: np.ndarray | None, *, work_spacing_mm: float = 2.5) -> PhaseEstimate:
    """Estimate the contrast phase from the image.

    Parameters
    ----------
    volume: Volume
        CT in HU.
    liver_mask: (Z, Y, X) bool ndarray or None
        Liver mask on the volume's grid (from :func:`segment_liver`).
    work_spacing_mm: float
        Spacing of the down-sampled grid used for the measurements.

    Returns
    -------
    PhaseEstimate
        Phase with the aorta, liver-vessel ("portal_vein_hu": the brightest tubular structures in
        the liver, which are the portal and hepatic veins once contrast arrives) and liver HU
        used, and the reason.
    """
    can, img, sp, f = coarse_image(volume, work_spacing_mm)
    body = _body_mask(img, -400.0)
    lm = None
    if liver_mask is not None and liver_mask.any():
        lm = block_reduce_mask(can.from_native(liver_mask), f)
        zs = np.nonzero(lm.any(axis=(1, 2)))[0]
        if zs.size:
            # the aorta is measured at the levels of the liver (upper abdominal aorta)
            keep = np.zeros(body.shape[0], bool)
            keep[zs.min():zs.max() + 1] = True
            body = body & keep[:, None, None]
    aorta = find_aorta(img, body, sp)
    aorta_hu = None if aorta is None else round(aorta.hu, 1)
    liver_hu = vessel_hu = None
    if lm is not None and lm.any():
        core = erode_mm(lm, 5.0, sp)
        if core.sum() < 50:
            core = lm
        core = core & ~_near_calcium(volume, liver_mask, can, f)
        sm = ndi.gaussian_filter(img, [1.5 / s for s in sp])
        vals = sm[core]
        vals = vals[vals < 400.0]  # calcifications are not vessels
        if vals.size:
            liver_hu = round(float(np.median(vals)), 1)
            hi = np.percentile(vals, 99.0)
            vessel_hu = round(float(np.mean(vals[vals >= hi])), 1)
    phase, reason = classify_phase(aorta_hu, vessel_hu, liver_hu)
    return PhaseEstimate(
        phase=phase,
        source="estimated",
        aorta_hu=aorta_hu,
        portal_vein_hu=vessel_hu,
        liver_hu=liver_hu,
        reason=reason,
    )
