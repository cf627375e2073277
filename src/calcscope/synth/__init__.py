"""Synthetic abdominal CT phantoms with ground truth, insertion of findings into real CT.

Public API
----------
generate_phantom(preset, *, seed, shape_zyx, spacing_zyx, phase, noise_hu, streaks, objects, motion, ...) -> Phantom
write_phantom(phantom, out) -> dict of written paths
insert_objects(volume, liver_mask, specs, *, seed) -> (Volume, labels, list[TruthObject])
PRESETS, ORGAN_LABELS, VESSEL_LABELS, ObjectSpec, Motion, Realism, Phantom, Truth, TruthObject,
UnplacedObject (Truth.unplaced), PlacementError
"""

from ._anatomy import ORGAN_LABELS, VESSEL_LABELS
from ._geometry import Motion
from ._hu import HU_BY_PHASE, PHASES
from ._insert import estimate_noise_hu, insert_objects, insertion_truth
from ._phantom import Phantom, generate_phantom, write_phantom
from ._presets import PRESET_PHASE, PRESETS, preset_phases
from ._realism import Realism
from ._objects import PlacementError
from ._truth import CALCIFICATION_SUBTYPES, LESION_SUBTYPES, Landmark, ObjectSpec, Truth, TruthObject, UnplacedObject

__all__ = [
    "generate_phantom",
    "write_phantom",
    "insert_objects",
    "insertion_truth",
    "estimate_noise_hu",
    "Phantom",
    "Truth",
    "TruthObject",
    "UnplacedObject",
    "PlacementError",
    "ObjectSpec",
    "Landmark",
    "Motion",
    "Realism",
    "PRESETS",
    "PRESET_PHASE",
    "preset_phases",
    "PHASES",
    "HU_BY_PHASE",
    "ORGAN_LABELS",
    "VESSEL_LABELS",
    "CALCIFICATION_SUBTYPES",
    "LESION_SUBTYPES",
]
