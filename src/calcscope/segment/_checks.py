"""Checks of an automatic liver mask against what the scan says about its own reliability."""

from __future__ import annotations

from ..model import PhaseEstimate

__all__ = ["UNENHANCED_BLOOD_MAX_HU", "automatic_mask_warnings"]

#: an aorta read below this is unenhanced blood (the non-contrast bound of ``classify_phase``)
UNENHANCED_BLOOD_MAX_HU = 90.0


def automatic_mask_warnings(method: str, phase: PhaseEstimate) -> list[str]:
    """Warnings about an automatic (classical) liver mask that the measured attenuations call for.

    The classical recipe tells the liver from its neighbours by attenuation. Without contrast,
    unenhanced blood (aorta, IVC) reads 35-45 HU and a healthy liver a few to 20 HU more; a fatty
    liver reads less, down to the density of blood, kidney and bowel content, and the growth then
    has nothing to stop at. Measured on the real non-contrast example with its liver label lowered
    step by step (``bench/eval_segment_variants.py``): Dice 0.924 at a liver-aorta gap of +6 HU,
    0.918 at +1 HU, 0.906 at -1 HU, 0.86 at -5 HU, 0.80 at -16 HU and 0.56 at -27 HU (the mask runs
    into the aorta, IVC, kidney, gallbladder and bowel). So when the liver reads no denser than
    the unenhanced aorta, the reader is told to check the mask.

    Parameters
    ----------
    method: str
        ``LiverSummary.method`` ("classical", "user_mask", "totalsegmentator").
    phase: PhaseEstimate
        The phase estimate with the aorta and liver readings it used.

    Returns
    -------
    list of str
        Zero or one warning sentence(s).
    """
    if method != "classical":
        return []
    a, liv = phase.aorta_hu, phase.liver_hu
    if a is None or liv is None or a >= UNENHANCED_BLOOD_MAX_HU or liv > a:
        return []
    return [
        f"The liver reads {liv:.0f} HU, no denser than the unenhanced blood in the aorta ({a:.0f} HU), "
        "as a fatty liver does on CT without contrast. The automatic liver mask separates the liver from "
        "its neighbours by attenuation, so it may take in the IVC, the aorta, kidney, gallbladder or bowel "
        "of the same density, and findings there would be reported as liver findings. Check the liver "
        "in segmentation.nii.gz, or give a liver mask (--liver-mask) or use --segmenter totalsegmentator."
    ]
