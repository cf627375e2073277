"""Detection stages: calcified foci (and, from other modules, lesions and ducts)."""

from ._calcification import CalcificationDetection, find_calcifications
from ._duct import DuctDetection, duct_components, find_ducts
from ._lesion import LesionDetection, drop_lesions, find_lesions
from ._stage import find_lesions_and_ducts

__all__ = [
    "CalcificationDetection",
    "find_calcifications",
    "LesionDetection",
    "find_lesions",
    "drop_lesions",
    "find_lesions_and_ducts",
    "DuctDetection",
    "find_ducts",
    "duct_components",
]
