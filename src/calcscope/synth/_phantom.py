"""``generate_phantom``: a synthetic abdominal CT with known findings, and ``write_phantom``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..model import Volume
from ._anatomy import ORGAN_LABELS, VESSEL_LABELS, Anatomy, Canvas, build_anatomy, paint, paint_anatomy
from ._geometry import F, Grid, Motion
from ._hu import HU_BY_PHASE, PHASES
from ._noise import add_streaks, correlated_noise
from ._objects import EXPECTED_KIND, children_of, SHAPE_WORD, Built, build_objects, rasterise_object, rasterise_part
from ._realism import Realism, add_texture, build_arteries, noise_z_sigma_mm, paint_arteries, paint_bowel, resolve_realism, thicken_slices
from ._presets import PRESET_PHASE, PRESETS, derive_distribution, fov_scale, preset_specs
from ._truth import Landmark, ObjectSpec, Truth, TruthObject, UnplacedObject

__all__ = ["Phantom", "generate_phantom", "write_phantom", "MAX_SHAPE_ZYX"]

#: the largest grid the generator is tuned for (larger works, needs memory: about 16 bytes per voxel)
MAX_SHAPE_ZYX = (300, 512, 512)
_BODY_HALF_X, _BODY_HALF_Y, _BODY_CY = 160.0, 112.0, 4.0


@dataclass(eq=False)
class Phantom:
    """A generated case.

    Attributes
    ----------
    volume: Volume
        The CT (int16 HU, identity direction, LPS).
    organs: (Z, Y, X) uint8
        Organ labels, values in :data:`ORGAN_LABELS` (liver = 1, intrahepatic vessels included in the liver).
    lobes: (Z, Y, X) uint8
        0 outside the liver, 1 right lobe, 2 left lobe (Cantlie's plane).
    objects: (Z, Y, X) int32
        Findings; value = ``TruthObject.label`` (calcifications drawn over lesions and ducts).
    vessels: (Z, Y, X) uint8
        Vessel labels, values in :data:`VESSEL_LABELS` (portal, hepatic veins, IVC, aorta; hepatic arteries with ``realism``).
    truth: Truth
        Everything placed, with measurements.
    """

    volume: Volume
    organs: np.ndarray
    lobes: np.ndarray
    objects: np.ndarray
    vessels: np.ndarray
    truth: Truth

    @property
    def liver_mask(self) -> np.ndarray:
        return self.organs == ORGAN_LABELS["liver"]


def _fov_centre(n: int, spacing: float, body_half: float, body_c: float, lo: float, hi: float, margin: float = 6.0) -> float:
    """Centre of the field of view along one axis: on the body when it fits, else shifted to keep the liver."""
    half = (n - 1) * spacing / 2.0
    if half >= body_half + 5.0:
        return body_c
    a, b = hi + margin - half, lo - margin + half  # feasible centres keep [lo, hi] inside
    if a <= b:
        return float(np.clip(body_c, a, b))
    return (lo + hi) / 2.0


def choose_origin(an: Anatomy, shape_zyx: tuple[int, int, int], spacing_zyx: tuple[float, float, float]) -> tuple[float, float, float]:
    """LPS origin (centre of voxel 0) that centres the body, keeping the liver in view when the FOV is small."""
    lo, hi = an.liver_bounds()
    nz, ny, nx = shape_zyx
    sz, sy, sx = spacing_zyx
    cx = _fov_centre(nx, sx, _BODY_HALF_X, 0.0, lo[0] + 8, hi[0] - 8)
    cy = _fov_centre(ny, sy, _BODY_HALF_Y, _BODY_CY, lo[1] + 8, hi[1] - 8)
    cz = (lo[2] + hi[2]) / 2.0 + 4.0
    return (cx - (nx - 1) * sx / 2.0, cy - (ny - 1) * sy / 2.0, cz - (nz - 1) * sz / 2.0)


def generate_phantom(
    preset: str = "normal",
    *,
    seed: int = 0,
    shape_zyx: tuple[int, int, int] = (80, 160, 160),
    spacing_zyx: tuple[float, float, float] = (2.5, 1.5, 1.5),
    phase: str | None = "portal_venous",
    noise_hu: float = 12.0,
    streaks: bool = False,
    objects: list[ObjectSpec] | None = None,
    motion: Motion | None = None,
    anatomy_seed: int | None = None,
    noise_seed: int | None = None,
    strict: bool | None = None,
    realism: Realism | bool | None = None,
) -> Phantom:
    """Generate a synthetic abdominal CT with known findings.

    Parameters
    ----------
    preset: str
        One of :data:`PRESETS`; gives the findings when ``objects`` is None.
    seed: int
        Seeds everything (anatomy, placement, shapes, noise): same seed, same bytes.
    shape_zyx, spacing_zyx:
        Grid size (voxels) and spacing (mm); the anatomy is defined in mm, so another
        spacing gives the same anatomy sampled differently.
    phase: str or None
        non_contrast, arterial, portal_venous or delayed; None = the preset's default phase.
    noise_hu: float
        Standard deviation of the correlated noise, HU (0 = noise-free).
    streaks: bool
        Add mild streaks through dense findings.
    objects: list of ObjectSpec, optional
        The findings to place instead of the preset's.
    motion: Motion, optional
        Rotation, translation and smooth deformation of the patient (follow-up pairs).
    anatomy_seed, noise_seed: int, optional
        Seed the anatomy or the noise apart from ``seed`` (default: ``seed``).
    strict: bool, optional
        What to do with a finding that cannot be placed after the placement rules have
        relaxed its constraints (see ``docs/phantoms.md``): True raises ``ValueError``;
        False leaves it (and its children) out and lists it in ``Truth.unplaced``.
        Default: strict for ``objects`` given by the caller, lenient for presets, so
        every preset generates for every seed.
    realism: Realism, bool or None
        Optional realism (slice thickness, through-slice noise correlation, parenchymal
        texture, hepatic arteries, bowel loops); True = :class:`Realism` defaults, None or
        False = off (the output is then identical to earlier versions).

    Returns
    -------
    Phantom
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; expected one of {', '.join(PRESETS)}")
    phase = PRESET_PHASE[preset] if phase is None else str(getattr(phase, "value", phase))
    if phase not in PHASES:
        raise ValueError(f"unknown phase {phase!r}; expected one of {', '.join(PHASES)}")
    shape = tuple(int(v) for v in shape_zyx)
    spacing = tuple(float(v) for v in spacing_zyx)
    if len(shape) != 3 or min(shape) < 8:
        raise ValueError(f"shape_zyx must be three sizes of at least 8 voxels; got {shape_zyx}")
    if len(spacing) != 3 or min(spacing) <= 0 or max(spacing) > 10:
        raise ValueError(f"spacing_zyx must be three positive spacings up to 10 mm; got {spacing_zyx}")
    if noise_hu < 0:
        raise ValueError("noise_hu must be >= 0")
    a_seed = int(seed if anatomy_seed is None else anatomy_seed)
    an = build_anatomy(a_seed)
    origin = choose_origin(an, shape, spacing)  # type: ignore[arg-type]
    grid = Grid(shape, spacing, origin, motion)  # type: ignore[arg-type]

    specs = list(objects) if objects is not None else preset_specs(preset, seed=seed, scale=fov_scale(shape, spacing))  # type: ignore[arg-type]

    canvas = Canvas(
        grid=grid,
        image=np.empty(shape, dtype=F),
        organs=np.zeros(shape, dtype=np.uint8),
        vessels=np.zeros(shape, dtype=np.uint8),
    )
    real = resolve_realism(realism)
    hooks: dict = {}
    if real is not None and real.bowel:
        hooks["before_organs"] = lambda cv: paint_bowel(cv, an, phase, np.random.default_rng([a_seed, 22]))
    if real is not None and real.hepatic_arteries:
        arteries = build_arteries(an, np.random.default_rng([a_seed, 21]))
        hooks["after_vessels"] = lambda cv: paint_arteries(cv, arteries, HU_BY_PHASE[phase]["hepatic_artery"])
    paint_anatomy(canvas, an, phase, **hooks)
    if real is not None and real.texture_hu > 0:
        parenchyma = (canvas.organs == ORGAN_LABELS["liver"]) & (canvas.vessels == 0)
        add_texture(canvas.image, grid, parenchyma, sd_hu=real.texture_hu, corr_mm=real.texture_mm, rng=np.random.default_rng([a_seed, 23]))
        del parenchyma
    unplaced: list[UnplacedObject] = []
    strict = objects is not None if strict is None else bool(strict)
    built = build_objects(specs, an=an, grid=grid, phase=phase, seed=seed, strict=strict, unplaced=unplaced)
    objects_map = np.zeros(shape, dtype=np.int32)
    own = _paint_objects(canvas, built, objects_map)

    thickness = spacing[0] if real is None or real.slice_thickness_mm is None else float(real.slice_thickness_mm)
    if thickness > spacing[0]:
        thicken_slices(canvas.image, spacing[0], thickness)
    truth_objects = _truth_objects(grid, an, built, own, canvas.image, objects_map)
    image = canvas.image
    if streaks:
        srcs = [(np.asarray(o.centre_voxel), o.size_mm, o.hu) for o in truth_objects if o.type == "calcification" and o.hu >= 300 and o.size_mm >= 2]
        add_streaks(image, grid, srcs, rng=np.random.default_rng([int(seed), 6]))
    if noise_hu > 0:
        n_seed = int(seed if noise_seed is None else noise_seed)
        image += correlated_noise(shape, spacing, sd_hu=noise_hu, rng=np.random.default_rng([n_seed, 5]),  # type: ignore[arg-type]
                                  z_sigma_mm=noise_z_sigma_mm(real, spacing[0]))
    np.rint(image, out=image)
    np.clip(image, -1024, 3071, out=image)
    arr = image.astype(np.int16)
    del image

    liver = canvas.organs == ORGAN_LABELS["liver"]
    lobes = _lobes(grid, an, liver)
    vox_ml = float(np.prod(spacing)) / 1000.0
    hu = HU_BY_PHASE[phase]
    calcs = [(o.subtype, o.lobe, o.parent, np.asarray(o.centre_mm)) for o in truth_objects if o.type == "calcification"]
    truth = Truth(
        preset=preset if objects is None else "custom",
        seed=int(seed),
        anatomy_seed=a_seed,
        phase=phase,
        shape_zyx=shape,  # type: ignore[arg-type]
        spacing_zyx=spacing,  # type: ignore[arg-type]
        origin_lps=tuple(float(v) for v in origin),  # type: ignore[arg-type]
        noise_hu=float(noise_hu),
        streaks=bool(streaks),
        motion=None if motion is None else {
            "rotation_deg": list(motion.rotation_deg), "translation_mm": list(motion.translation_mm),
            "deform_mm": motion.deform_mm, "deform_wavelength_mm": motion.deform_wavelength_mm,
            "centre_mm": list(motion.centre_mm), "seed": motion.seed,
        },
        objects=truth_objects,
        unplaced=unplaced,
        realism=None if real is None else real.as_dict(),
        slice_thickness_mm=thickness,
        calcification_distribution=derive_distribution(calcs),  # type: ignore[arg-type]
        has_duct_dilatation=any(o.type == "duct" for o in truth_objects),
        landmarks=_landmarks(grid, an),
        organ_labels=dict(ORGAN_LABELS),
        vessel_labels=dict(VESSEL_LABELS),
        liver_volume_ml=round(float(liver.sum()) * vox_ml, 2),
        right_lobe_ml=round(float((lobes == 1).sum()) * vox_ml, 2),
        left_lobe_ml=round(float((lobes == 2).sum()) * vox_ml, 2),
        liver_hu=hu["liver"],
        hu_table={k: float(v) for k, v in hu.items()},
    )
    volume = Volume(
        array=arr,
        spacing_zyx=spacing,  # type: ignore[arg-type]
        origin_lps=origin,
        modality="CT",
        source=f"calcscope synthetic phantom ({truth.preset}, seed {seed})",
        meta={"synthetic": True, "preset": truth.preset, "seed": int(seed), "phase": phase, "slice_thickness_mm": thickness},
    )
    return Phantom(volume=volume, organs=canvas.organs, lobes=lobes, objects=objects_map, vessels=canvas.vessels, truth=truth)


def _paint_objects(canvas: Canvas, built: list[Built], objects_map: np.ndarray) -> list:
    """Paint lesions and ducts, then calcifications; returns each object's own (slices, coverage)."""
    own: list = [None] * len(built)
    order = [i for i, b in enumerate(built) if b.spec.type != "calcification"] + [i for i, b in enumerate(built) if b.spec.type == "calcification"]
    for i in order:
        b = built[i]
        res = rasterise_object(canvas.grid, b)
        if res is None:
            continue
        sl, cov = res
        paint(canvas, res, b.base_hu)
        for piece, hu in b.parts:
            pres = rasterise_part(canvas.grid, piece, b.step_mm())
            if pres is None:
                continue
            psl, pcov = pres
            # restrict the part to the object
            tgt = tuple(slice(max(p.start, s.start), min(p.stop, s.stop)) for p, s in zip(psl, sl))
            if any(t.stop <= t.start for t in tgt):
                continue
            pc = pcov[tuple(slice(t.start - p.start, t.stop - p.start) for t, p in zip(tgt, psl))]
            oc = cov[tuple(slice(t.start - s.start, t.stop - s.start) for t, s in zip(tgt, sl))]
            paint(canvas, (tgt, np.minimum(pc, oc)), hu)
        mask = cov >= 0.5
        if not mask.any() and cov.max() > 0:
            mask = cov == cov.max()
        objects_map[sl][mask] = i + 1
        own[i] = (sl, cov, mask)
    return own


def _depth_class(subtype: str, depth_mm: float, radius: float) -> str:
    if subtype == "capsular" or depth_mm - radius <= 1.0:
        return "capsular"
    if depth_mm - radius <= 10.0:
        return "subcapsular"
    return "deep"


def _truth_objects(grid: Grid, an: Anatomy, built: list[Built], own: list, image: np.ndarray, objects_map: np.ndarray) -> list[TruthObject]:
    vox = float(np.prod(grid.spacing_zyx))
    children = children_of(built)
    out = []
    for i, b in enumerate(built):
        sp = b.spec
        c_scan = grid.anatomy_to_scanner(b.centre)
        c_idx = grid.scanner_to_index(c_scan)
        if own[i] is not None:
            sl, cov, mask = own[i]
            n = int(mask.sum())
            vol_pv = float(cov.sum(dtype=np.float64)) * vox
            vals = image[sl][mask]
            hu_meas = float(vals.mean()) if vals.size else None
            hu_peak = float(vals.max()) if vals.size else None
        else:
            n, vol_pv, hu_meas, hu_peak = 0, 0.0, None, None
        depth_mm = -an.liver_sdf_point(b.centre)
        lobe = "left" if bool(an.is_left_lobe(F(b.centre[0]), F(b.centre[1]), F(b.centre[2]))) else "right"
        expected = "calcification" if sp.type == "calcification" else EXPECTED_KIND[sp.subtype]
        out.append(
            TruthObject(
                id=sp.id,  # type: ignore[arg-type]
                label=i + 1,
                type=sp.type,
                subtype=sp.subtype,
                expected_kind=expected,  # type: ignore[arg-type]
                centre_mm=tuple(round(float(v), 3) for v in c_scan),  # type: ignore[arg-type]
                centre_voxel=tuple(round(float(v), 3) for v in c_idx),  # type: ignore[arg-type]
                size_mm=round(float(sp.size_mm), 3),
                volume_mm3=round(n * vox, 3),
                volume_pv_mm3=round(vol_pv, 3),
                volume_analytic_mm3=round(float(b.analytic_volume_mm3 if b.analytic_volume_mm3 is not None else vol_pv), 3),
                voxel_count=n,
                hu=float(sp.hu),  # type: ignore[arg-type]
                hu_measured=None if hu_meas is None else round(hu_meas, 2),
                hu_peak=None if hu_peak is None else round(hu_peak, 2),
                lobe=lobe,  # type: ignore[arg-type]
                depth=_depth_class(sp.subtype, depth_mm, b.radius_mm),  # type: ignore[arg-type]
                depth_mm=round(float(depth_mm), 2),
                parent=sp.parent,
                relation=sp.relation,
                children=children.get(sp.id, []),  # type: ignore[arg-type]
                shape=SHAPE_WORD.get(sp.subtype) if sp.type == "calcification" else None,
                n_components=b.n_components,
                spec=sp,
            )
        )
    return out


def _lobes(grid: Grid, an: Anatomy, liver: np.ndarray) -> np.ndarray:
    lobes = np.zeros(liver.shape, dtype=np.uint8)
    lo, hi = an.liver_bounds()
    sl = grid.bbox(lo, hi)
    if sl is None:
        return lobes
    x, y, z = grid.bbox_coords(sl)
    left = np.broadcast_to(an.is_left_lobe(x, y, z), liver[sl].shape)
    sub = liver[sl]
    lob = lobes[sl]
    lob[sub] = 1
    lob[sub & left] = 2
    return lobes


def _landmarks(grid: Grid, an: Anatomy) -> dict[str, Landmark]:
    out = {}
    for name, q in sorted(an.landmarks.items()):
        p = grid.anatomy_to_scanner(np.asarray(q))
        v = grid.scanner_to_index(p)
        out[name] = Landmark(mm=tuple(round(float(a), 3) for a in p), voxel=tuple(round(float(a), 3) for a in v))  # type: ignore[arg-type]
    return out


def write_phantom(phantom: Phantom, out: str | os.PathLike, *, truth: str | os.PathLike | None = None) -> dict[str, Path]:
    """Write the CT, label maps (objects, organs, lobes, vessels) as NIfTI, and the truth JSON.

    Parameters
    ----------
    out: path
        A ``.nii``/``.nii.gz`` file for the CT (label maps beside it as ``<stem>_objects.nii.gz``
        etc., truth as ``<stem>_truth.json``) or a folder (``ct.nii.gz``, ``objects.nii.gz``,
        ``organs.nii.gz``, ``lobes.nii.gz``, ``vessels.nii.gz``, ``truth.json``).
    truth: path, optional
        Where to write the truth JSON instead.

    Returns
    -------
    dict of name -> written path.
    """
    from ..io import save_nifti

    p = Path(out)
    name = p.name.lower()
    if name.endswith(".nii.gz") or name.endswith(".nii"):
        stem = p.name[: -len(".nii.gz")] if name.endswith(".nii.gz") else p.name[: -len(".nii")]
        folder = p.parent
        paths = {"ct": p}
        for k in ("objects", "organs", "lobes", "vessels"):
            paths[k] = folder / f"{stem}_{k}.nii.gz"
        paths["truth"] = Path(truth) if truth is not None else folder / f"{stem}_truth.json"
    else:
        folder = p
        paths = {"ct": p / "ct.nii.gz"}
        for k in ("objects", "organs", "lobes", "vessels"):
            paths[k] = p / f"{k}.nii.gz"
        paths["truth"] = Path(truth) if truth is not None else p / "truth.json"
    folder.mkdir(parents=True, exist_ok=True)
    v = phantom.volume
    save_nifti(v.array, v, paths["ct"])
    save_nifti(phantom.objects, v, paths["objects"])
    save_nifti(phantom.organs, v, paths["organs"])
    save_nifti(phantom.lobes, v, paths["lobes"])
    save_nifti(phantom.vessels, v, paths["vessels"])
    phantom.truth.save(paths["truth"])
    return paths
