"""Lesions and ducts found together, as every caller needs them."""

from __future__ import annotations

from typing import Any

from ..model import Volume
from ._duct import DuctDetection, find_ducts
from ._lesion import LesionDetection, drop_lesions, find_lesions

__all__ = ["find_lesions_and_ducts"]


def find_lesions_and_ducts(
    volume: Volume, liver: Any, *, phase: Any = None, calcifications: Any = None, vessels: Any = None
) -> tuple[LesionDetection, DuctDetection]:
    """Hypodense lesions, then dilated ducts, then the lesions that are stretches of a duct dropped.

    The order matters: the duct search reuses the lesion detection grid and leaves lesion
    voxels out, and a small "lesion" lying in a found duct is handed to it
    (:attr:`DuctDetection.lesions_in_duct`). The pipeline and the benchmarks call this one
    function so they cannot drift apart.
    """
    les = find_lesions(volume, liver, phase=phase, calcifications=calcifications, vessels=vessels)
    ducts = find_ducts(volume, liver, phase=phase, lesions=les, calcifications=calcifications)
    return drop_lesions(les, ducts.lesions_in_duct), ducts
