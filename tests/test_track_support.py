"""Small analytic phantom pairs for the follow-up tests (and their own sanity tests).

A study is rendered from an analytic "anatomy" (an asymmetric ellipsoidal liver with
vessels, bright spheres for calcifications and dark spheres for lesions, a spine and
a kidney outside it). The current study sees the same anatomy through a known
motion ``q = R (p + u(p) - c) + c + t``: a rigid rotation about the liver centre ``c``
plus a translation, optionally after a smooth sinusoidal deformation ``u``.
Every voxel of the current study is rendered at the anatomy point it shows, so the
truth is exact; corresponding landmarks are the anatomy points mapped by the motion.
Findings are measured from the rendered label maps (voxel count x voxel volume,
longest diameter between voxel centres on the convex hull).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial import ConvexHull
from scipy.spatial.distance import pdist

from calcscope.model import (
    CALC_LABEL_BASE,
    LESION_LABEL_BASE,
    Analysis,
    Finding,
    InputInfo,
    Masks,
    Volume,
)


@dataclass(frozen=True)
class Ball:
    """A spherical finding in anatomy coordinates (LPS mm)."""

    key: str
    kind: str  # "calcification" | "lesion"
    centre_mm: tuple[float, float, float]
    radius_mm: float
    hu: float


@dataclass(frozen=True)
class Motion:
    rotation_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)
    translation_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    deform_mm: float = 0.0


LIVER_CENTRE = np.array([-20.0, 10.0, 0.0])
LIVER_AXES = np.array([70.0, 55.0, 45.0])


def rotation_matrix(deg: tuple[float, float, float]) -> np.ndarray:
    ax, ay, az = (math.radians(a) for a in deg)
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _deformation(p: np.ndarray, amplitude_mm: float) -> np.ndarray:
    if amplitude_mm == 0:
        return np.zeros_like(p)
    q = (p - LIVER_CENTRE) / 60.0
    return amplitude_mm * np.stack(
        [np.sin(q[..., 1] * 1.3), np.sin(q[..., 2] * 1.1 + 0.4), np.sin(q[..., 0] * 1.2 + 0.8)], axis=-1
    )


def apply_motion(p: np.ndarray, motion: Motion) -> np.ndarray:
    """Anatomy point(s) -> position in the current study."""
    p = np.asarray(p, dtype=float)
    r = rotation_matrix(motion.rotation_deg)
    d = p + _deformation(p, motion.deform_mm)
    return (d - LIVER_CENTRE) @ r.T + LIVER_CENTRE + np.asarray(motion.translation_mm)


def invert_motion(q: np.ndarray, motion: Motion, *, iterations: int = 30) -> np.ndarray:
    """Position in the current study -> anatomy point (fixed-point iteration for u)."""
    r = rotation_matrix(motion.rotation_deg)
    d = (np.asarray(q, dtype=float) - LIVER_CENTRE - np.asarray(motion.translation_mm)) @ r + LIVER_CENTRE
    if motion.deform_mm == 0:
        return d
    p = d.copy()
    for _ in range(iterations):
        p = d - _deformation(p, motion.deform_mm)
    return p


@dataclass
class RenderedStudy:
    volume: Volume
    labels: np.ndarray  # uint16 label map (conventions of segmentation.nii.gz)
    findings: list[Finding]
    key_of: dict[str, str] = field(default_factory=dict)  # finding id -> ball key


def _in_liver(p: np.ndarray) -> np.ndarray:
    q = (p - LIVER_CENTRE) / LIVER_AXES
    main = (q**2).sum(-1) <= 1.0
    lobe = (((p - (LIVER_CENTRE + np.array([55.0, -10.0, 10.0]))) / np.array([40.0, 30.0, 22.0])) ** 2).sum(-1) <= 1.0
    return main | lobe


def measure(labels: np.ndarray, value: int, volume: Volume) -> tuple[float, float, np.ndarray]:
    """(volume mm3, longest diameter mm, centroid zyx) of one label."""
    idx = np.argwhere(labels == value)
    vol = idx.shape[0] * volume.voxel_volume_mm3
    pts = volume.voxel_to_mm(idx.astype(float))
    if pts.shape[0] >= 5:
        try:
            pts_h = pts[ConvexHull(pts).vertices]
        except Exception:
            pts_h = pts
        diam = float(pdist(pts_h).max()) if pts_h.shape[0] > 1 else 0.0
    else:
        diam = float(pdist(pts).max()) if pts.shape[0] > 1 else 0.0
    diam = max(diam, min(volume.spacing_zyx))
    return vol, diam, idx.mean(axis=0)


def render_study(
    balls: list[Ball],
    *,
    motion: Motion = Motion(),
    shape_zyx: tuple[int, int, int] = (48, 80, 80),
    spacing_zyx: tuple[float, float, float] = (3.0, 2.0, 2.0),
    noise_hu: float = 10.0,
    seed: int = 0,
) -> RenderedStudy:
    """Render a study of the anatomy seen through ``motion`` (identity = prior)."""
    shape = np.asarray(shape_zyx)
    sp = np.asarray(spacing_zyx)
    centre_zyx = (shape - 1) / 2.0
    origin = LIVER_CENTRE + np.array([10.0, 0.0, 0.0]) - centre_zyx[::-1] * sp[::-1]
    geom = Volume(array=np.zeros(shape_zyx, np.int16), spacing_zyx=spacing_zyx, origin_lps=tuple(origin))
    zz, yy, xx = np.meshgrid(*[np.arange(n, dtype=float) for n in shape_zyx], indexing="ij")
    q = geom.voxel_to_mm(np.stack([zz, yy, xx], axis=-1))
    p = invert_motion(q, motion)
    img = np.full(shape_zyx, -80.0)  # fat
    body = ((p[..., 0] + 10.0) / 140.0) ** 2 + ((p[..., 1] - 5.0) / 95.0) ** 2 <= 1.0
    img[body] = 30.0
    img[~body] = -1000.0
    liver = _in_liver(p) & body
    img[liver] = 60.0
    # a few vessels (tubes) inside the liver give it texture
    for cx, cy, r in ((-40.0, 0.0, 4.0), (0.0, 20.0, 3.0), (20.0, -15.0, 3.5)):
        tube = ((p[..., 0] - cx) ** 2 + (p[..., 1] - cy) ** 2 <= r * r) & liver
        img[tube] = 140.0
    spine = ((p[..., 0] - 5.0) ** 2 + (p[..., 1] - 75.0) ** 2) <= 15.0**2
    img[spine & body] = 500.0
    kidney = ((((p - np.array([-50.0, 60.0, -25.0])) / np.array([22.0, 18.0, 28.0])) ** 2).sum(-1) <= 1.0) & body
    img[kidney & ~liver] = 150.0
    labels = np.zeros(shape_zyx, np.uint16)
    labels[liver] = 1
    lesion_n = calc_n = 0
    ids: list[tuple[str, int, Ball]] = []
    for b in sorted(balls, key=lambda b: (b.kind != "lesion", b.key)):
        inside = ((p - np.asarray(b.centre_mm)) ** 2).sum(-1) <= b.radius_mm**2
        if not inside.any():
            continue
        img[inside] = b.hu
        if b.kind == "lesion":
            lesion_n += 1
            value = LESION_LABEL_BASE + lesion_n
            ids.append((f"lesion-{lesion_n:03d}", value, b))
        else:
            calc_n += 1
            value = CALC_LABEL_BASE + calc_n
            ids.append((f"calc-{calc_n:03d}", value, b))
        labels[inside] = value
    rng = np.random.default_rng(seed)
    img = img + rng.normal(0.0, noise_hu, size=img.shape)
    volume = geom.with_array(np.round(img).astype(np.int16))
    findings: list[Finding] = []
    key_of: dict[str, str] = {}
    for fid, value, b in ids:
        if not (labels == value).any():
            continue
        vol, diam, c_zyx = measure(labels, value, volume)
        findings.append(
            Finding(
                id=fid,
                kind=b.kind,
                label=value,
                size_mm=diam,
                longest_diameter_mm=diam,
                volume_mm3=vol,
                hu=float(b.hu),
                centroid_voxel=tuple(float(v) for v in c_zyx),
                centroid_mm=tuple(float(v) for v in volume.voxel_to_mm(c_zyx)),
                lobe="right",
            )
        )
        key_of[fid] = b.key
    return RenderedStudy(volume=volume, labels=labels, findings=findings, key_of=key_of)


def masks_of(study: RenderedStudy) -> Masks:
    lab = study.labels
    les = np.where((lab >= LESION_LABEL_BASE) & (lab < CALC_LABEL_BASE), lab.astype(np.int32) - LESION_LABEL_BASE, 0)
    calc = np.where(lab >= CALC_LABEL_BASE, lab.astype(np.int32) - CALC_LABEL_BASE, 0)
    return Masks(liver=lab > 0, lesions=les.astype(np.int32), calcifications=calc.astype(np.int32))


def write_study_folder(study: RenderedStudy, folder: Path, *, keep_ct: bool = True, ct_name: str = "ct.nii.gz") -> Path:
    """Write an analysed-study folder (analysis.json + segmentation.nii.gz) and, beside it, the CT."""
    import SimpleITK as sitk

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ct_path = folder.parent / f"{folder.name}_{ct_name}"
    if keep_ct:
        sitk.WriteImage(study.volume.to_sitk(), str(ct_path))
    sitk.WriteImage(study.volume.to_sitk(study.labels), str(folder / "segmentation.nii.gz"))
    v = study.volume
    analysis = Analysis(
        input=InputInfo(
            path=ct_path.name,
            sha256="0" * 64,
            modality="CT",
            shape_zyx=v.shape,
            spacing_zyx_mm=v.spacing_zyx,
            origin_lps_mm=v.origin_lps,
            orientation=v.orientation_code(),
        ),
        findings=study.findings,
    )
    (folder / "analysis.json").write_text(analysis.model_dump_json(indent=2))
    return folder


# ---- sanity tests of the generator itself ----------------------------------------------


def test_motion_round_trip_is_exact() -> None:
    m = Motion(rotation_deg=(3.0, -2.0, 5.0), translation_mm=(4.0, -3.0, 2.0), deform_mm=2.0)
    p = np.array([[-20.0, 10.0, 0.0], [10.0, -30.0, 15.0], [-60.0, 30.0, -20.0]])
    back = invert_motion(apply_motion(p, m), m)
    assert np.abs(back - p).max() < 1e-6


def test_rendered_ball_measurements_match_geometry() -> None:
    ball = Ball("a", "lesion", (-20.0, 10.0, 0.0), 9.0, 10.0)
    st = render_study([ball], noise_hu=0.0)
    (f,) = st.findings
    true_vol = 4.0 / 3.0 * math.pi * 9.0**3
    assert f.volume_mm3 == pytest.approx(true_vol, rel=0.12)
    assert f.longest_diameter_mm == pytest.approx(18.0, abs=3.0)
    assert np.allclose(f.centroid_mm, ball.centre_mm, atol=1.0)
    assert json.loads(Finding.model_validate(f.model_dump()).model_dump_json())["kind"] == "lesion"
