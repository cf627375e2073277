"""Description stages: measurements, shape classes, locations and liver-level patterns."""

from ._calcification import describe_calcifications
from ._pattern import calcification_pattern

__all__ = [
    "describe_calcifications",
    "calcification_pattern",
]
