"""The typed data model passed along calcscope's pipeline.

Coordinate convention (see ``docs/conventions.md``):

* voxel arrays are indexed ``(z, y, x)`` exactly as ``SimpleITK.GetArrayFromImage``
  returns them; ``Volume.spacing_zyx`` follows that order;
* physical points are millimetres in the patient LPS frame as ITK reports them,
  written ``(x, y, z)`` = (towards patient Left, towards Posterior, towards
  Superior); ``Volume.origin_lps`` is the centre of voxel ``(0, 0, 0)``;
* ``Volume.direction`` is ITK's 3x3 direction matrix, row-major, whose columns
  are the unit vectors of the index axes i (x / column), j (y / row), k (z / slice).

Every finding carries both ``centroid_mm`` (LPS, mm) and ``centroid_voxel``
(z, y, x, fractional index).
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "SCHEMA_VERSION",
    "DISCLAIMER",
    "Phase",
    "Volume",
    "Masks",
    "LABEL_LIVER",
    "LABEL_DUCT",
    "LESION_LABEL_BASE",
    "CALC_LABEL_BASE",
    "Marker",
    "Context",
    "Change",
    "Finding",
    "FindingsDocument",
    "PhaseEstimate",
    "LiverSummary",
    "CalcificationPattern",
    "EvidenceItem",
    "RankedCondition",
    "Recommendation",
    "Differential",
    "InputInfo",
    "Analysis",
]

SCHEMA_VERSION = "1.2.0"

DISCLAIMER = (
    "calcscope is research decision-support software. It is not a diagnostic device and "
    "has not been cleared or approved by any regulator. Its output suggests possibilities "
    "for a qualified physician to weigh against the images and the whole clinical picture; "
    "it never establishes a diagnosis."
)


class Phase(str, Enum):
    """Contrast phase of a CT acquisition; values are the strings used in reports."""

    NON_CONTRAST = "non_contrast"
    ARTERIAL = "arterial"
    PORTAL_VENOUS = "portal_venous"
    DELAYED = "delayed"
    UNKNOWN = "unknown"


# --------------------------------------------------------------------------------------
# Image volume
# --------------------------------------------------------------------------------------


@dataclass(eq=False)
class Volume:
    """A 3-D image in memory with its geometry.

    Attributes
    ----------
    array: (Z, Y, X) ndarray
        Voxel values; Hounsfield units for CT (rescale already applied). int16 when
        every value is integral and fits, float32 otherwise.
    spacing_zyx: tuple of 3 float, mm
        Distance between voxel centres along (z, y, x).
    origin_lps: tuple of 3 float, mm
        LPS position of the centre of voxel (0, 0, 0).
    direction: tuple of 9 float
        ITK direction cosines, row-major 3x3; columns are the index axes (i, j, k).
    modality: str
        DICOM modality code ("CT", "MR", ...); "CT" for NIfTI/NRRD unless told otherwise.
    source: str
        Human description of where the volume came from (file name, series description).
    series_uid, study_uid, frame_of_reference_uid: str | None
        DICOM identifiers when the volume came from DICOM.
    instance_uids: list of str
        SOPInstanceUID of each slice in z order (DICOM only).
    source_files: list of str
        Path of each slice file in z order (DICOM only), for writing DICOM SEG/SR.
    meta: dict
        Further provenance (series description, slice thickness, padding, resampling done).
    """

    array: np.ndarray
    spacing_zyx: tuple[float, float, float]
    origin_lps: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    modality: str = "CT"
    source: str = ""
    series_uid: str | None = None
    study_uid: str | None = None
    frame_of_reference_uid: str | None = None
    instance_uids: list[str] = field(default_factory=list)
    source_files: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.array.ndim != 3:
            raise ValueError(f"Volume.array must be 3-D (z, y, x); got shape {self.array.shape}")
        self.spacing_zyx = tuple(float(s) for s in self.spacing_zyx)  # type: ignore[assignment]
        self.origin_lps = tuple(float(o) for o in self.origin_lps)  # type: ignore[assignment]
        self.direction = tuple(float(d) for d in self.direction)
        if len(self.spacing_zyx) != 3 or any(not (s > 0) for s in self.spacing_zyx):
            raise ValueError(f"spacing_zyx must be three positive numbers; got {self.spacing_zyx}")
        if len(self.direction) != 9:
            raise ValueError("direction must hold 9 numbers (row-major 3x3)")

    # ---- geometry -------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.array.shape)  # type: ignore[return-value]

    @property
    def voxel_volume_mm3(self) -> float:
        return float(np.prod(self.spacing_zyx))

    @property
    def direction_matrix(self) -> np.ndarray:
        return np.asarray(self.direction, dtype=float).reshape(3, 3)

    @property
    def spacing_xyz(self) -> tuple[float, float, float]:
        z, y, x = self.spacing_zyx
        return (x, y, z)

    def affine_lps(self) -> np.ndarray:
        """4x4 matrix mapping (i, j, k, 1) = (x-index, y-index, z-index, 1) to LPS mm."""
        a = np.eye(4)
        a[:3, :3] = self.direction_matrix @ np.diag(self.spacing_xyz)
        a[:3, 3] = self.origin_lps
        return a

    def voxel_to_mm(self, zyx: Any) -> np.ndarray:
        """Convert (z, y, x) indices, shape (3,) or (N, 3), to LPS mm (x, y, z)."""
        idx = np.asarray(zyx, dtype=float)
        ijk = idx[..., ::-1]
        m = self.direction_matrix @ np.diag(self.spacing_xyz)
        return ijk @ m.T + np.asarray(self.origin_lps)

    def mm_to_voxel(self, lps: Any) -> np.ndarray:
        """Convert LPS mm points, shape (3,) or (N, 3), to fractional (z, y, x) indices."""
        p = np.asarray(lps, dtype=float) - np.asarray(self.origin_lps)
        m = self.direction_matrix @ np.diag(self.spacing_xyz)
        ijk = p @ np.linalg.inv(m).T
        return ijk[..., ::-1]

    def orientation_code(self) -> str:
        """Three-letter code of the directions the index axes (i, j, k) point to in LPS, e.g. "LPS"."""
        letters = (("L", "R"), ("P", "A"), ("S", "I"))
        out = []
        d = self.direction_matrix
        for col in range(3):
            v = d[:, col]
            ax = int(np.argmax(np.abs(v)))
            out.append(letters[ax][0] if v[ax] > 0 else letters[ax][1])
        return "".join(out)

    def with_array(self, array: np.ndarray, **changes: Any) -> "Volume":
        """A copy of this volume's geometry and identity around another array of the same shape."""
        if array.shape != self.array.shape:
            raise ValueError(f"array shape {array.shape} differs from volume shape {self.array.shape}")
        return replace(self, array=array, meta=dict(self.meta), **changes)

    def to_sitk(self, array: np.ndarray | None = None):  # -> SimpleITK.Image
        """This volume (or another array on the same grid) as a SimpleITK image."""
        import SimpleITK as sitk

        arr = self.array if array is None else array
        img = sitk.GetImageFromArray(np.ascontiguousarray(arr))
        img.SetSpacing(self.spacing_xyz)
        img.SetOrigin(self.origin_lps)
        img.SetDirection(self.direction)
        return img

    @classmethod
    def from_sitk(cls, image: Any, **kwargs: Any) -> "Volume":
        """Build a Volume from a 3-D SimpleITK image (array copied, geometry read)."""
        import SimpleITK as sitk

        arr = sitk.GetArrayFromImage(image)
        sx, sy, sz = image.GetSpacing()
        return cls(
            array=arr,
            spacing_zyx=(sz, sy, sx),
            origin_lps=tuple(image.GetOrigin()),
            direction=tuple(image.GetDirection()),
            **kwargs,
        )


# Label values of segmentation.nii.gz (documented in docs/conventions.md):
LABEL_LIVER = 1  #: liver parenchyma (including its capsular margin when enabled)
LABEL_DUCT = 2  #: dilated intrahepatic bile ducts
LESION_LABEL_BASE = 100  #: lesion n (1-based) has label 100 + n
CALC_LABEL_BASE = 1000  #: calcification n (1-based) has label 1000 + n


@dataclass(eq=False)
class Masks:
    """Masks on the grid of the analysed volume, filled in stage by stage.

    Attributes
    ----------
    liver: (Z, Y, X) ndarray of bool or None
        Liver mask (parenchyma with vessels, lesions and calcifications inside).
    liver_margin: (Z, Y, X) ndarray of bool or None
        Thin shell outside ``liver`` (capsular margin) searched for capsular calcification.
    lobes: (Z, Y, X) ndarray of uint8 or None
        0 outside, 1 right lobe, 2 left lobe, 3 caudate (when separated).
    calcifications: (Z, Y, X) ndarray of int32 or None
        0 background, n >= 1 the n-th calcification (same order as the findings).
    lesions: (Z, Y, X) ndarray of int32 or None
        0 background, n >= 1 the n-th lesion.
    ducts: (Z, Y, X) ndarray of bool or None
        Dilated intrahepatic bile ducts.
    vessels: (Z, Y, X) ndarray of bool or None
        Enhanced vessels recognised inside the liver (contrast CT).
    """

    liver: np.ndarray | None = None
    liver_margin: np.ndarray | None = None
    lobes: np.ndarray | None = None
    calcifications: np.ndarray | None = None
    lesions: np.ndarray | None = None
    ducts: np.ndarray | None = None
    vessels: np.ndarray | None = None

    def label_map(self) -> np.ndarray:
        """Combined uint16 label map with the values documented above."""
        shapes = [m.shape for m in (self.liver, self.calcifications, self.lesions, self.ducts) if m is not None]
        if not shapes:
            raise ValueError("no mask to combine")
        out = np.zeros(shapes[0], dtype=np.uint16)
        if self.liver is not None:
            out[self.liver] = LABEL_LIVER
        if self.ducts is not None:
            out[self.ducts] = LABEL_DUCT
        if self.lesions is not None:
            sel = self.lesions > 0
            out[sel] = (LESION_LABEL_BASE + self.lesions[sel]).astype(np.uint16)
        if self.calcifications is not None:
            sel = self.calcifications > 0
            out[sel] = (CALC_LABEL_BASE + self.calcifications[sel]).astype(np.uint16)
        return out


# --------------------------------------------------------------------------------------
# Clinical context
# --------------------------------------------------------------------------------------

_Strict = ConfigDict(extra="forbid", validate_assignment=True)


class Marker(BaseModel):
    """A laboratory tumour/liver marker: a value with its unit, or a qualitative status."""

    model_config = _Strict
    value: float | None = Field(default=None, ge=0)
    unit: str | None = None
    status: Literal["normal", "elevated", "markedly_elevated", "low"] | None = None


class Context(BaseModel):
    """Clinical context of the patient; every field optional, unknown fields refused."""

    model_config = _Strict
    age: float | None = Field(default=None, ge=0, le=120, description="years")
    sex: Literal["female", "male", "other"] | None = None
    known_malignancy: bool | None = None
    primary_site: str | None = Field(default=None, description="e.g. breast, colon, stomach")
    markers: dict[Literal["afp", "cea", "alp", "ggt", "ca19_9"], Marker] = Field(default_factory=dict)
    fever: bool | None = None
    leukocytosis: bool | None = None
    hbv: bool | None = None
    hcv: bool | None = None
    cirrhosis: bool | None = None
    collagen_vascular_disease: bool | None = None
    livestock_exposure: bool | None = None
    schistosomiasis_endemic: bool | None = None
    tuberculosis_history: bool | None = None
    biliary_infection_history: bool | None = None
    prior_imaging_dates: list[_dt.date] = Field(default_factory=list)
    notes: str | None = None


# --------------------------------------------------------------------------------------
# Findings (shared by the image pipeline and `calcscope reason`)
# --------------------------------------------------------------------------------------

FindingKind = Literal["calcification", "lesion", "cyst", "duct_dilatation", "duct_stone"]
Shape = Literal[
    "punctate", "coarse", "linear", "ring", "stellate", "grit", "beaded", "pin", "equal_sign"
]
Location = Literal[
    "right_lobe", "left_lobe", "both_lobes", "capsular", "septal", "subcapsular", "deep",
    "along_duct", "in_lesion_centre", "in_lesion_rim", "cyst_wall",
]
Distribution = Literal["single", "scattered", "diffuse_even", "clustered", "capsular_septal_network"]
Density = Literal["hypodense", "isodense", "hyperdense", "cystic", "mixed"]
Margin = Literal["well_defined", "ill_defined", "irregular"]
Enhancement = Literal["none", "rim", "peripheral_nodular_centripetal", "arterial_washout", "homogeneous"]
Echo = Literal["hyperechoic", "hypoechoic", "anechoic", "isoechoic", "mixed"]
Sign = Literal[
    "bulls_eye", "target", "halo", "acoustic_shadow", "duct_dilatation_upstream",
    "central_necrosis", "septa", "daughter_cysts",
]


class Change(BaseModel):
    """Change of a finding since a prior study."""

    model_config = _Strict
    growth_percent: float | None = Field(default=None, ge=-100, description="volume change, %")
    growth_sd_percent: float | None = Field(
        default=None, ge=0, description="noise SD of the volume change (percentage points), from both volumes' SD"
    )
    content_change_percent: float | None = Field(
        default=None, ge=-100,
        description="change of the calcium content (summed HU excess, measurements['calcium_content_hu_ml']), "
                    "%; calcifications only; unlike the volume of a focus of a few voxels it does not depend on "
                    "where the focus lies on the voxel grid",
    )
    content_change_sd_percent: float | None = Field(
        default=None, ge=0, description="noise SD of the content change (percentage points)"
    )
    diameter_change_mm: float | None = None
    volume_change_mm3: float | None = Field(default=None, description="absolute volume change, mm³")
    interval_days: float | None = Field(default=None, gt=0)
    prior_date: _dt.date | None = None
    doubling_time_days: float | None = None


class Finding(BaseModel):
    """One finding (or a group of alike findings when ``count`` > 1).

    Image-derived findings fill the measurement fields (``centroid_*``,
    ``volume_mm3``...); findings written by hand for ``calcscope reason`` may give
    only the descriptive vocabulary.
    """

    model_config = _Strict
    id: str | None = None
    kind: FindingKind
    count: int = Field(default=1, ge=1)
    # descriptive vocabulary (controlled, see docs/findings-vocabulary.md)
    size_mm: float | None = Field(default=None, gt=0, description="longest diameter, mm")
    hu: float | None = Field(default=None, ge=-1100, le=4000, description="mean HU")
    echo: Echo | None = None
    shape: Shape | None = None
    location: list[Location] = Field(default_factory=list)
    distribution: Distribution | None = None
    density: Density | None = None
    margin: Margin | None = None
    enhancement: Enhancement | None = None
    signs: list[Sign] = Field(default_factory=list)
    change: Change | None = None
    # image-derived measurements (physical units)
    label: int | None = Field(default=None, description="value of this finding in segmentation.nii.gz")
    centroid_mm: tuple[float, float, float] | None = Field(default=None, description="LPS (x, y, z), mm")
    centroid_voxel: tuple[float, float, float] | None = Field(default=None, description="(z, y, x) index")
    volume_mm3: float | None = Field(default=None, ge=0)
    longest_diameter_mm: float | None = Field(default=None, ge=0)
    short_axis_mm: float | None = Field(default=None, ge=0, description="longest perpendicular in the axial plane")
    hu_mean: float | None = None
    hu_max: float | None = None
    hu_sd: float | None = None
    agatston_weight: int | None = Field(default=None, ge=0, le=4)
    lobe: Literal["right", "left", "caudate"] | None = None
    segment: str | None = Field(default=None, description="approximate Couinaud segment, e.g. 'S7'")
    depth: Literal["capsular", "subcapsular", "deep"] | None = None
    depth_mm: float | None = Field(default=None, description="distance from the liver surface, mm")
    parent_id: str | None = Field(default=None, description="lesion or duct this finding lies in")
    relation: Literal["centre", "periphery", "wall", "whole", "in_duct"] | None = None
    children: list[str] = Field(default_factory=list)
    measurements: dict[str, float] = Field(default_factory=dict, description="further figures, units in the key")
    confidence: float | None = Field(default=None, ge=0, le=1)


class FindingsDocument(BaseModel):
    """The findings of one study, as produced by the image pipeline or written by hand."""

    model_config = _Strict
    schema_version: str = SCHEMA_VERSION
    modality: Literal["CT", "US"] = "CT"
    phase: Phase | None = None
    findings: list[Finding] = Field(default_factory=list)


# --------------------------------------------------------------------------------------
# Analysis result
# --------------------------------------------------------------------------------------


class PhaseEstimate(BaseModel):
    model_config = _Strict
    phase: Phase
    source: Literal["estimated", "user", "metadata"] = "estimated"
    aorta_hu: float | None = None
    portal_vein_hu: float | None = None
    liver_hu: float | None = None
    spleen_hu: float | None = None
    reason: str = ""


class LiverSummary(BaseModel):
    model_config = _Strict
    method: str
    volume_ml: float
    hu_median: float | None = None
    hu_iqr: tuple[float, float] | None = None
    right_lobe_ml: float | None = None
    left_lobe_ml: float | None = None
    capsular_margin_mm: float = 0.0
    notes: list[str] = Field(default_factory=list)


class CalcificationPattern(BaseModel):
    model_config = _Strict
    count: int = 0
    distribution: Distribution | None = None
    size_mm_min: float | None = None
    size_mm_median: float | None = None
    size_mm_max: float | None = None
    right_lobe_count: int = 0
    left_lobe_count: int = 0
    in_lesion_count: int = 0
    in_duct_count: int = 0
    capsular_count: int = 0
    reason: str = ""


class EvidenceItem(BaseModel):
    model_config = _Strict
    statement: str
    feature: str
    weight: float = Field(description="log-likelihood-ratio contribution (natural log)")
    citation: str


class RankedCondition(BaseModel):
    model_config = _Strict
    condition_id: str
    name: str
    probability: float = Field(ge=0, le=1)
    summary: str
    evidence_for: list[EvidenceItem] = Field(default_factory=list)
    evidence_against: list[EvidenceItem] = Field(default_factory=list)
    citations: list[str] = Field(default_factory=list)
    details: dict[str, Any] = Field(default_factory=dict)


class Recommendation(BaseModel):
    model_config = _Strict
    action: str
    reason: str
    condition_id: str | None = None
    citation: str


class Differential(BaseModel):
    model_config = _Strict
    knowledge_version: str
    method: str
    ranked: list[RankedCondition] = Field(default_factory=list)
    insufficient_evidence: bool = False
    impression: str = ""
    missing_information: list[str] = Field(default_factory=list)
    recommendations: list[Recommendation] = Field(default_factory=list)
    disclaimer: str = DISCLAIMER


class InputInfo(BaseModel):
    model_config = _Strict
    path: str
    sha256: str
    modality: str
    shape_zyx: tuple[int, int, int]
    spacing_zyx_mm: tuple[float, float, float]
    origin_lps_mm: tuple[float, float, float]
    orientation: str
    series_uid: str | None = None
    description: str = ""


class Analysis(BaseModel):
    """Everything calcscope concluded about one study."""

    model_config = ConfigDict(extra="forbid")
    schema_version: str = SCHEMA_VERSION
    software: dict[str, str] = Field(default_factory=dict)
    created: str | None = Field(default=None, description="ISO timestamp; absent with --no-timestamp")
    input: InputInfo | None = None
    context: Context | None = None
    phase: PhaseEstimate | None = None
    liver: LiverSummary | None = None
    findings: list[Finding] = Field(default_factory=list)
    calcification_pattern: CalcificationPattern | None = None
    differential: Differential | None = None
    labels: dict[str, str] = Field(default_factory=dict, description="label id -> name in segmentation.nii.gz")
    timings_s: dict[str, float] = Field(default_factory=dict)
    provenance: list[dict[str, Any]] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    disclaimer: str = DISCLAIMER

    def findings_document(self) -> FindingsDocument:
        """The findings in the form `calcscope reason` consumes."""
        return FindingsDocument(
            modality="CT",
            phase=self.phase.phase if self.phase else None,
            findings=list(self.findings),
        )
