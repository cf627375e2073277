"""Detection stages: calcified foci (and, from other modules, lesions and ducts)."""

from ._calcification import CalcificationDetection, find_calcifications

__all__ = [
    "CalcificationDetection",
    "find_calcifications",
]
