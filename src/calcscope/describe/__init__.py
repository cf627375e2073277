"""Description stages: measurements, shape classes, locations and liver-level patterns."""

from ._calcification import describe_calcifications
from ._pattern import calcification_pattern
from ._association import associate
from ._duct import describe_ducts
from ._lesion import describe_lesions

__all__ = [
    "describe_calcifications",
    "calcification_pattern",
    "describe_lesions",
    "describe_ducts",
    "associate",
]
