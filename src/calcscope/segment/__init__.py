"""Liver segmentation without learned weights, user masks, TotalSegmentator backend, phase, lobes.

Public API
----------
segment_liver(volume, *, method="auto", user_mask=None, user_label=None, capsular_margin_mm=3.0)
    -> LiverSegmentation (mask, margin, lobes, summary)
estimate_phase(volume, liver_mask) -> model.PhaseEstimate
split_lobes(volume, liver_mask) -> (uint8 lobes, notes)
automatic_mask_warnings(method, phase_estimate) -> list[str] (checks of a classical mask)
load_user_liver_mask(path, volume, *, label=None) -> bool ndarray
run_totalsegmentator(volume, *, fast=False, device="cpu") -> bool ndarray

See ``docs/segmentation.md`` for the method, measured accuracy and failure modes.
"""

from ._api import LiverSegmentation, capsular_margin, segment_liver
from ._checks import automatic_mask_warnings
from ._classical import ClassicalParams, segment_classical
from ._lobes import split_lobes
from ._phase import classify_phase, estimate_phase
from ._totalseg import run_totalsegmentator, totalsegmentator_weights_dir
from ._user import check_liver_mask, load_user_liver_mask

__all__ = [
    "segment_liver",
    "automatic_mask_warnings",
    "LiverSegmentation",
    "capsular_margin",
    "estimate_phase",
    "classify_phase",
    "split_lobes",
    "load_user_liver_mask",
    "check_liver_mask",
    "run_totalsegmentator",
    "totalsegmentator_weights_dir",
    "segment_classical",
    "ClassicalParams",
]
