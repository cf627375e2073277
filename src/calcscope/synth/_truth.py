"""Ground-truth data model of synthetic phantoms and inserted findings (pydantic, JSON)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "TRUTH_SCHEMA_VERSION",
    "CALCIFICATION_SUBTYPES",
    "LESION_SUBTYPES",
    "DUCT_SUBTYPES",
    "ObjectSpec",
    "TruthObject",
    "Landmark",
    "UnplacedObject",
    "Truth",
]

TRUTH_SCHEMA_VERSION = "1.0.0"

CALCIFICATION_SUBTYPES = ("punctate", "coarse", "linear", "ring", "grit", "stellate", "capsular", "septal", "beaded")
LESION_SUBTYPES = ("metastasis", "cyst", "abscess", "hemangioma", "fibrolamellar", "hydatid")
DUCT_SUBTYPES = ("dilated",)

ObjectType = Literal["calcification", "lesion", "duct"]
Relation = Literal["centre", "periphery", "wall", "whole", "in_duct"]
Depth = Literal["capsular", "subcapsular", "deep"]
Lobe = Literal["right", "left"]

_SUBTYPES = {"calcification": CALCIFICATION_SUBTYPES, "lesion": LESION_SUBTYPES, "duct": DUCT_SUBTYPES}


class ObjectSpec(BaseModel):
    """What to place: one finding with its size, attenuation and (optionally) position.

    Unset fields are drawn from the seed (position) or from the phase tables (HU).
    ``centre_mm`` is in the *anatomy* frame (LPS mm before any :class:`Motion`), so a
    follow-up phantom with motion keeps the finding at the same anatomical place.

    Attributes
    ----------
    id: str, optional
        Identifier; children refer to it in ``parent``. Default: ``"<subtype>-<n>"``.
    type: "calcification" | "lesion" | "duct"
    subtype: str
        calcification: punctate, coarse, linear, ring, grit, stellate, capsular, septal, beaded;
        lesion: metastasis, cyst, abscess, hemangioma, fibrolamellar, hydatid; duct: dilated.
    size_mm: float
        Longest diameter (linear: length; ring: outer diameter; grit: cluster diameter;
        capsular/septal: extent of the plaque or sheet; duct: largest duct calibre).
    hu: float, optional
        Material HU before partial volume (calcification) or base HU (lesion, duct).
    centre_mm: (x, y, z), optional
        Anatomy-frame LPS centre; None = random placement in the liver.
    lobe, depth: optional placement constraints.
    parent, relation: the lesion or duct the finding belongs to, and where in it.
    thickness_mm: wall/sheet/line thickness (ring, capsular, septal, linear).
    count: number of particles (grit) or of branches (stellate, duct).
    rim: "none" | "target" (bull's-eye: enhancing rim, necrotic centre) | "enhancing" (abscess-like).
    arc_fraction: fraction of the sphere covered by a ring (1 = complete shell).
    shape_seed: seed of the object's own irregularity (drawn when None; recorded in the truth).
    """

    model_config = ConfigDict(extra="forbid")
    id: str | None = None
    type: ObjectType
    subtype: str
    size_mm: float = Field(gt=0, le=200)
    hu: float | None = Field(default=None, ge=-1000, le=3000)
    centre_mm: tuple[float, float, float] | None = None
    lobe: Lobe | None = None
    depth: Depth | None = None
    parent: str | None = None
    relation: Relation | None = None
    thickness_mm: float | None = Field(default=None, gt=0, le=20)
    count: int | None = Field(default=None, ge=1, le=200)
    rim: Literal["none", "target", "enhancing"] = "none"
    arc_fraction: float = Field(default=1.0, gt=0, le=1)
    shape_seed: int | None = None

    @model_validator(mode="after")
    def _check_subtype(self) -> "ObjectSpec":
        allowed = _SUBTYPES[self.type]
        if self.subtype not in allowed:
            raise ValueError(f"subtype {self.subtype!r} is not a {self.type} subtype; expected one of {', '.join(allowed)}")
        return self


class TruthObject(BaseModel):
    """One placed finding as it lies in the generated volume.

    Volumes: ``volume_mm3`` counts the voxels whose coverage by the object is at least
    one half (its own mask, before later objects are drawn over it; a lesion's volume
    includes the calcification inside it), times the voxel volume; ``volume_pv_mm3`` is
    the partial-volume integral (sum of coverage x voxel volume); ``volume_analytic_mm3``
    is the closed-form volume where the shape has one (sphere, ellipsoid, shell,
    capsule), otherwise the partial-volume integral.
    """

    model_config = ConfigDict(extra="forbid")
    id: str
    label: int = Field(description="value of this object in the objects label map")
    type: ObjectType
    subtype: str
    expected_kind: Literal["calcification", "lesion", "cyst", "duct_dilatation", "duct_stone"]
    centre_mm: tuple[float, float, float] = Field(description="scanner LPS (x, y, z), mm")
    centre_voxel: tuple[float, float, float] = Field(description="(z, y, x) fractional index")
    size_mm: float
    volume_mm3: float
    volume_pv_mm3: float
    volume_analytic_mm3: float
    voxel_count: int
    hu: float = Field(description="nominal material/base HU before partial volume and noise")
    hu_measured: float | None = Field(default=None, description="noise-free mean HU over the object's mask")
    hu_peak: float | None = Field(default=None, description="noise-free maximum HU over the object's mask")
    lobe: Lobe | None = None
    depth: Depth | None = None
    depth_mm: float | None = Field(default=None, description="distance of the centre from the liver surface, mm")
    parent: str | None = None
    relation: Relation | None = None
    children: list[str] = Field(default_factory=list)
    shape: str | None = Field(default=None, description="expected shape word (model.Shape vocabulary)")
    n_components: int = 1
    spec: ObjectSpec


class UnplacedObject(BaseModel):
    """A requested finding that could not be placed, so it is absent from the volume and the label map."""

    model_config = ConfigDict(extra="forbid")
    id: str
    type: ObjectType
    subtype: str
    size_mm: float
    parent: str | None = None
    reason: str


class Landmark(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mm: tuple[float, float, float]
    voxel: tuple[float, float, float]


class Truth(BaseModel):
    """Everything known about a synthetic or insertion case.

    Saved as JSON by :meth:`save`; the schema is documented in ``docs/phantoms.md``.
    """

    model_config = ConfigDict(extra="forbid")
    schema_version: str = TRUTH_SCHEMA_VERSION
    generator: str = "calcscope.synth"
    source: Literal["phantom", "insertion"] = "phantom"
    preset: str | None = None
    seed: int
    anatomy_seed: int | None = None
    phase: str
    shape_zyx: tuple[int, int, int]
    spacing_zyx: tuple[float, float, float]
    origin_lps: tuple[float, float, float]
    direction: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    noise_hu: float
    streaks: bool = False
    realism: dict | None = Field(default=None, description="Realism options used (None: off)")
    slice_thickness_mm: float | None = Field(default=None, description="reconstructed slice thickness, mm (None: the slice spacing)")
    motion: dict | None = None
    objects: list[TruthObject] = Field(default_factory=list)
    unplaced: list[UnplacedObject] = Field(
        default_factory=list, description="requested findings that could not be placed (not in the volume, not in objects)"
    )
    calcification_distribution: Literal["single", "scattered", "diffuse_even", "clustered", "capsular_septal_network"] | None = None
    has_duct_dilatation: bool = False
    landmarks: dict[str, Landmark] = Field(default_factory=dict)
    organ_labels: dict[str, int] = Field(default_factory=dict)
    vessel_labels: dict[str, int] = Field(default_factory=dict)
    liver_volume_ml: float | None = None
    right_lobe_ml: float | None = None
    left_lobe_ml: float | None = None
    liver_hu: float | None = None
    hu_table: dict[str, float] = Field(default_factory=dict)

    # ---- convenience ----------------------------------------------------------------
    @property
    def calcifications(self) -> list[TruthObject]:
        return [o for o in self.objects if o.type == "calcification"]

    @property
    def lesions(self) -> list[TruthObject]:
        return [o for o in self.objects if o.type == "lesion"]

    @property
    def ducts(self) -> list[TruthObject]:
        return [o for o in self.objects if o.type == "duct"]

    def by_id(self, object_id: str) -> TruthObject:
        for o in self.objects:
            if o.id == object_id:
                return o
        raise KeyError(object_id)

    def specs(self) -> list[ObjectSpec]:
        """The resolved specs (fixed centres and shape seeds) that regenerate these objects."""
        return [o.spec.model_copy() for o in self.objects]

    def save(self, path: str | os.PathLike) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(self.model_dump(mode="json"), indent=2) + "\n", encoding="utf-8")
        return p

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Truth":
        return cls.model_validate_json(Path(path).read_text(encoding="utf-8"))
