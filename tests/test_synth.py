"""Phantom generator: truth against the volume, determinism, presets, spacing, motion, DICOM."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from calcscope.synth import (
    ORGAN_LABELS,
    PRESETS,
    Motion,
    ObjectSpec,
    Truth,
    generate_phantom,
    write_phantom,
)

SMALL = dict(shape_zyx=(64, 128, 128), spacing_zyx=(2.5, 2.0, 2.0))
TINY = dict(shape_zyx=(48, 96, 96), spacing_zyx=(3.5, 2.8, 2.8))


def _custom_specs() -> list[ObjectSpec]:
    return [
        ObjectSpec(id="cyst", type="lesion", subtype="cyst", size_mm=22.0, hu=8.0, lobe="right"),
        ObjectSpec(id="met", type="lesion", subtype="metastasis", size_mm=26.0, lobe="right"),
        ObjectSpec(id="calc", type="calcification", subtype="coarse", size_mm=9.0, hu=600.0, parent="met", relation="centre"),
        ObjectSpec(id="dot", type="calcification", subtype="punctate", size_mm=3.0, hu=800.0, lobe="left"),
        ObjectSpec(id="line", type="calcification", subtype="linear", size_mm=10.0, thickness_mm=2.0, hu=500.0, lobe="right"),
    ]


@pytest.fixture(scope="module")
def clean() -> "object":
    """A noise-free phantom with known objects."""
    return generate_phantom("normal", seed=5, objects=_custom_specs(), noise_hu=0.0, **SMALL)


@pytest.fixture(scope="module")
def noisy() -> "object":
    return generate_phantom("normal", seed=5, objects=_custom_specs(), noise_hu=12.0, **SMALL)


def test_truth_hu_matches_volume(clean, noisy):
    t = clean.truth
    a = clean.volume.array.astype(float)
    n = noisy.volume.array.astype(float)
    cyst = t.by_id("cyst")
    core = ndimage.binary_erosion(clean.objects == cyst.label, iterations=2)
    assert core.sum() > 50
    assert abs(a[core].mean() - 8.0) <= 0.6
    assert abs(n[core].mean() - 8.0) <= 3.0  # 12 HU noise over > 50 voxels
    met = t.by_id("met")
    m = ndimage.binary_erosion(clean.objects == met.label, iterations=2)
    assert abs(np.median(a[m]) - met.hu) <= 1.0
    # liver parenchyma away from everything: nominal portal-venous HU, noise SD 12
    liver = ndimage.binary_erosion(clean.organs == ORGAN_LABELS["liver"], iterations=3)
    par = liver & (np.abs(a - 105.0) < 0.5)
    assert par.sum() > 5000
    assert abs(n[par].mean() - 105.0) <= 1.0
    assert abs(n[par].std() - 12.0) <= 1.0
    # the noise-free measured mean recorded in the truth is what the volume holds
    calc = t.by_id("calc")
    assert calc.hu_measured == pytest.approx(float(a[clean.objects == calc.label].mean()), abs=1.5)
    assert 350.0 <= calc.hu_measured <= 600.0


def test_truth_volumes_and_sizes(clean):
    t = clean.truth
    vox = float(np.prod(clean.volume.spacing_zyx))
    for oid, tol in (("cyst", 0.03), ("dot", 0.08), ("line", 0.08)):
        o = t.by_id(oid)
        assert o.volume_pv_mm3 == pytest.approx(o.volume_analytic_mm3, rel=tol), oid
    cyst = t.by_id("cyst")
    assert cyst.volume_mm3 == pytest.approx(cyst.volume_analytic_mm3, rel=0.12)
    # the label map holds exactly the recorded voxels of objects nothing is drawn over
    assert int((clean.objects == cyst.label).sum()) == cyst.voxel_count
    assert cyst.volume_mm3 == pytest.approx(cyst.voxel_count * vox)
    # longest extent of the cyst mask is its size within one voxel diagonal
    zz, yy, xx = np.nonzero(clean.objects == cyst.label)
    pts = np.stack([zz, yy, xx], 1) * np.asarray(clean.volume.spacing_zyx)
    extent = max(np.ptp(pts[:, i]) for i in range(3))
    assert abs(extent - cyst.size_mm) <= 3.5
    # truth centre is the centroid of the mask (voxel units)
    assert np.allclose(np.mean(np.stack([zz, yy, xx], 1), 0), cyst.centre_voxel, atol=0.5)
    # centre_mm and centre_voxel agree through the volume's geometry
    for o in t.objects:
        assert np.allclose(clean.volume.voxel_to_mm(o.centre_voxel), o.centre_mm, atol=0.01)


def test_objects_inside_liver_and_parent_relations(clean):
    t = clean.truth
    liver = clean.organs == ORGAN_LABELS["liver"]
    for o in t.objects:
        idx = tuple(int(round(v)) for v in o.centre_voxel)
        assert liver[idx], o.id
        assert (clean.objects == o.label).any(), o.id
    calc, met = t.by_id("calc"), t.by_id("met")
    assert calc.parent == "met" and calc.relation == "centre" and "calc" in met.children
    assert np.linalg.norm(np.subtract(calc.centre_mm, met.centre_mm)) < met.size_mm * 0.2
    assert t.by_id("dot").lobe == "left"
    assert t.by_id("cyst").lobe == "right"
    assert (clean.lobes[liver] > 0).all() and not clean.lobes[~liver].any()
    assert t.right_lobe_ml > t.left_lobe_ml > 0


def test_enhanced_vessels_in_liver(clean):
    a = clean.volume.array
    liver = clean.organs == ORGAN_LABELS["liver"]
    ves = (clean.vessels > 0) & liver
    assert ves.sum() * np.prod(clean.volume.spacing_zyx) > 10_000  # mm3 of portal/hepatic veins
    assert np.median(a[ves]) >= 150  # portal-venous phase: 150-180 HU
    assert clean.truth.landmarks["portal_bifurcation"].mm is not None


def test_determinism_same_seed_same_bytes():
    a = generate_phantom("calcified_metastases", seed=3, **TINY)
    b = generate_phantom("calcified_metastases", seed=3, **TINY)
    c = generate_phantom("calcified_metastases", seed=4, **TINY)
    assert a.volume.array.tobytes() == b.volume.array.tobytes()
    assert a.objects.tobytes() == b.objects.tobytes()
    assert a.truth.model_dump_json() == b.truth.model_dump_json()
    assert a.volume.array.tobytes() != c.volume.array.tobytes()
    assert [o.centre_mm for o in a.truth.objects] != [o.centre_mm for o in c.truth.objects]


EXPECTED = {
    "normal": (0, None, False),
    "calcified_metastases": (4, "clustered", False),
    "liver_metastases": (0, None, False),
    "isolated_calcification": (1, "single", False),
    "duct_stones": (3, "clustered", True),
    "hydatid_cyst": (1, "single", False),
    "schistosomiasis": (5, "capsular_septal_network", False),
    "tuberculosis": (7, "diffuse_even", False),
    "healed_abscess": (1, "single", False),
    "hemangioma": (1, "single", False),
    "fibrolamellar": (1, "single", False),
    "simple_cyst": (0, None, False),
}


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_generates(preset):
    ph = generate_phantom(preset, seed=2, phase=None, **TINY)
    t = ph.truth
    n_calc, dist, duct = EXPECTED[preset]
    assert len(t.calcifications) >= n_calc
    assert t.calcification_distribution == dist
    assert t.has_duct_dilatation is duct
    assert ph.volume.array.dtype == np.int16 and ph.volume.shape == TINY["shape_zyx"]
    for o in t.objects:
        assert (ph.objects == o.label).any() or any((ph.objects == t.by_id(c).label).any() for c in o.children), o.id
        if o.type == "calcification":
            assert o.shape is not None
    if preset == "simple_cyst":
        assert all(o.expected_kind == "cyst" and o.hu <= 20 for o in t.lesions)
    if preset == "liver_metastases":
        assert len(t.lesions) >= 4 and not t.calcifications
        assert {o.lobe for o in t.lesions} == {"right", "left"}
    if preset == "tuberculosis":
        assert {o.lobe for o in t.calcifications} == {"right", "left"}
        assert all(8.0 <= o.size_mm <= 12.0 for o in t.calcifications)
    if preset == "schistosomiasis":
        assert any(o.depth == "capsular" for o in t.calcifications)
    if preset == "duct_stones":
        assert all(o.parent == "duct-1" and o.relation == "in_duct" for o in t.calcifications)
        assert t.ducts[0].lobe == "left"


def test_spacing_gives_the_same_anatomy():
    thin = generate_phantom("simple_cyst", seed=7, shape_zyx=(160, 96, 96), spacing_zyx=(1.0, 2.8, 2.8), noise_hu=0)
    thick = generate_phantom("simple_cyst", seed=7, shape_zyx=(54, 96, 96), spacing_zyx=(3.0, 2.8, 2.8), noise_hu=0)
    assert thin.truth.liver_volume_ml == pytest.approx(thick.truth.liver_volume_ml, rel=0.02)
    for a, b in zip(thin.truth.objects, thick.truth.objects):
        assert np.allclose(a.centre_mm, b.centre_mm, atol=1e-3)
        assert a.volume_pv_mm3 == pytest.approx(b.volume_pv_mm3, rel=0.05)
    # the 3 mm phantom's big cyst keeps its nominal HU in its core
    big = max(thick.truth.lesions, key=lambda o: o.size_mm)
    core = ndimage.binary_erosion(thick.objects == big.label, iterations=1)
    assert abs(thick.volume.array[core].mean() - big.hu) < 1.0


def test_motion_moves_truth_and_landmarks():
    specs = [ObjectSpec(id="cyst", type="lesion", subtype="cyst", size_mm=24.0, hu=8.0, lobe="right")]
    base = generate_phantom("normal", seed=9, objects=specs, noise_hu=0, **SMALL)
    spec = base.truth.specs()
    mot = Motion(rotation_deg=(0.0, 0.0, 4.0), translation_mm=(6.0, -4.0, 5.0), deform_mm=2.0)
    moved = generate_phantom("normal", seed=9, objects=spec, noise_hu=0, motion=mot, **SMALL)
    a, b = base.truth.by_id("cyst"), moved.truth.by_id("cyst")
    expected = mot.forward(np.asarray(a.centre_mm))
    assert np.allclose(b.centre_mm, expected, atol=1e-3)
    assert np.linalg.norm(np.subtract(b.centre_mm, a.centre_mm)) > 5.0
    # the rendered cyst sits where the truth says
    zz, yy, xx = np.nonzero(moved.objects == b.label)
    assert np.allclose(np.mean(np.stack([zz, yy, xx], 1), 0), b.centre_voxel, atol=0.8)
    assert b.volume_pv_mm3 == pytest.approx(a.volume_pv_mm3, rel=0.05)
    for name, lm in base.truth.landmarks.items():
        assert np.allclose(moved.truth.landmarks[name].mm, mot.forward(np.asarray(lm.mm)), atol=1e-3)
    # growth: the same spec enlarged keeps its place
    grown = [s.model_copy(update={"size_mm": 30.0}) for s in spec]
    g = generate_phantom("normal", seed=9, objects=grown, noise_hu=0, **SMALL)
    assert np.allclose(g.truth.by_id("cyst").centre_mm, a.centre_mm)
    assert g.truth.by_id("cyst").volume_pv_mm3 > a.volume_pv_mm3 * 1.8


def test_write_phantom_and_truth_roundtrip(tmp_path, clean):
    import SimpleITK as sitk

    paths = write_phantom(clean, tmp_path / "case.nii.gz")
    assert set(paths) == {"ct", "objects", "organs", "lobes", "vessels", "truth"}
    img = sitk.ReadImage(str(paths["ct"]))
    assert np.array_equal(sitk.GetArrayFromImage(img), clean.volume.array)
    assert np.allclose(img.GetOrigin(), clean.volume.origin_lps, atol=1e-4)
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(paths["objects"]))), clean.objects)
    t = Truth.load(paths["truth"])
    assert t == clean.truth
    doc = json.loads(paths["truth"].read_text())
    assert {"preset", "seed", "phase", "shape_zyx", "spacing_zyx", "objects", "calcification_distribution", "has_duct_dilatation"} <= set(doc)


def test_synth_cli_dicom_roundtrip_and_determinism(tmp_path):
    import pydicom

    from calcscope.cli import main
    from calcscope.io import load_ct

    args = ["synth", "--preset", "isolated_calcification", "--seed", "4", "--shape", "40", "96", "96", "--spacing", "3", "2.8", "2.8", "--dicom", "-q"]
    assert main(args + ["--out", str(tmp_path / "a")]) == 0
    assert main(args + ["--out", str(tmp_path / "b")]) == 0
    files_a = sorted((tmp_path / "a" / "dicom").glob("*.dcm"))
    files_b = sorted((tmp_path / "b" / "dicom").glob("*.dcm"))
    assert len(files_a) == 40
    assert all(fa.read_bytes() == fb.read_bytes() for fa, fb in zip(files_a, files_b))
    ds = pydicom.dcmread(files_a[0])
    assert ds.Modality == "CT" and float(ds.RescaleIntercept) == -1024.0 and float(ds.RescaleSlope) == 1.0
    assert ds.FrameOfReferenceUID and ds.StudyInstanceUID and ds.SeriesInstanceUID
    assert [float(v) for v in ds.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
    # one writer (calcscope.io.save_dicom_series) with the phantom's key-derived UIDs and header
    from calcscope.synth._dicom import deterministic_uid

    key = "isolated_calcification-seed4-non_contrast-40x96x96-3x2.8x2.8"
    assert [f.name for f in files_a[:2]] == ["IM0001.dcm", "IM0002.dcm"]
    assert ds.SeriesInstanceUID == deterministic_uid(key, "series") and ds.StudyInstanceUID == deterministic_uid(key, "study")
    assert ds.SOPInstanceUID == deterministic_uid(key, "instance", 0) == ds.file_meta.MediaStorageSOPInstanceUID
    assert ds.PatientID == f"SYN-{key}" and ds.StudyDate == "20000101" and int(ds.KVP) == 120 and ds.ContrastBolusAgent == ""
    assert ds.SeriesDescription == "calcscope phantom isolated_calcification seed 4 (non_contrast)" and ds.Manufacturer == "calcscope"
    v = load_ct(tmp_path / "a" / "dicom")
    ref = generate_phantom("isolated_calcification", seed=4, phase=None, shape_zyx=(40, 96, 96), spacing_zyx=(3.0, 2.8, 2.8))
    assert np.array_equal(v.array, ref.volume.array)
    assert np.allclose(v.spacing_zyx, (3.0, 2.8, 2.8)) and np.allclose(v.origin_lps, ref.volume.origin_lps, atol=1e-4)
    t = Truth.load(tmp_path / "a" / "truth.json")
    assert t.preset == "isolated_calcification" and len(t.objects) == 1 and t.objects[0].lobe == "right"
    # unknown preset: usage error, exit code 2
    assert main(["synth", "--preset", "nope", "--out", str(tmp_path / "c")]) == 2
    # existing output without --force: output error, exit 13
    assert main(args + ["--out", str(tmp_path / "a")]) == 13


def test_unknown_inputs_are_refused():
    with pytest.raises(ValueError, match="unknown preset"):
        generate_phantom("nope")
    with pytest.raises(ValueError, match="unknown phase"):
        generate_phantom("normal", phase="venous")
    with pytest.raises(ValueError, match="subtype"):
        ObjectSpec(type="lesion", subtype="punctate", size_mm=3)


@pytest.mark.shared
def test_insert_objects_into_real_ct(shared_data):
    from calcscope.io import load_ct, load_mask_like
    from calcscope.synth import estimate_noise_hu, insert_objects

    d = shared_data / "totalseg-example-ct"
    v = load_ct(d / "example_ct.nii.gz")
    liver = load_mask_like(d / "example_seg_fast_force_split.nii.gz", v) == 5
    noise = estimate_noise_hu(v, liver)
    assert 5.0 <= noise <= 25.0
    specs = [
        ObjectSpec(id="c1", type="lesion", subtype="cyst", size_mm=24.0, hu=8.0),
        ObjectSpec(type="calcification", subtype="coarse", size_mm=9.0, hu=650.0),
        ObjectSpec(type="calcification", subtype="punctate", size_mm=3.0, hu=800.0),
    ]
    v2, labels, objs = insert_objects(v, liver, specs, seed=3, phase="non_contrast")
    assert v2.shape == v.shape and v2.direction == v.direction and v2.array.dtype == np.int16
    a = v2.array.astype(float)
    cyst = objs[0]
    core = ndimage.binary_erosion(labels == cyst.label, iterations=1)
    assert abs(a[core].mean() - 8.0) <= 4.0 * noise / np.sqrt(core.sum()) + 3.0
    for o in objs:
        assert liver[tuple(int(round(x)) for x in o.centre_voxel)]
        assert np.allclose(v2.voxel_to_mm(o.centre_voxel), o.centre_mm, atol=0.01)
    coarse = objs[1]
    assert a[labels == coarse.label].max() > 400
    # outside the inserted objects (and their blur margin) the scan is untouched
    far = ~ndimage.binary_dilation(labels > 0, iterations=3)
    assert np.array_equal(v2.array[far], v.array[far])


# --------------------------------------------------------------------------------------
# placement robustness: every preset, every seed, both reference grids
# --------------------------------------------------------------------------------------

SWEEP_GRIDS = {
    "default": ((80, 160, 160), (2.5, 1.5, 1.5)),
    "1mm": ((160, 160, 160), (1.0, 1.5, 1.5)),
}


def _expected_counts(preset: str, seed: int, shape, spacing) -> dict[str, int]:
    from collections import Counter

    from calcscope.synth._presets import fov_scale, preset_specs

    return dict(Counter(s.type for s in preset_specs(preset, seed=seed, scale=fov_scale(shape, spacing))))


def _check_generated(preset: str, seed: int, phase: str | None, shape, spacing) -> None:
    """Generates without error, places every requested object, and each one is in the label map."""
    from collections import Counter

    ph = generate_phantom(preset, seed=seed, phase=phase, shape_zyx=shape, spacing_zyx=spacing)
    t = ph.truth
    where = f"{preset} seed {seed} {phase} {shape}"
    assert t.unplaced == [], (where, t.unplaced)
    assert dict(Counter(o.type for o in t.objects)) == _expected_counts(preset, seed, shape, spacing), where
    labels, counts = np.unique(ph.objects, return_counts=True)
    in_map = dict(zip(labels.tolist(), counts.tolist()))
    for o in t.objects:
        assert o.voxel_count >= 1, (where, o.id)
        # a calcification keeps all its voxels; a lesion or duct loses at most the calcifications drawn over it
        min_frac = 1.0 if o.type == "calcification" else 0.5
        assert in_map.get(o.label, 0) >= min_frac * o.voxel_count, (where, o.id, in_map.get(o.label, 0), o.voxel_count)
    assert t.has_duct_dilatation is (preset == "duct_stones"), where


def _check_placement(preset: str, seed: int, shape, spacing) -> None:
    """Placement only (no rasterisation): every requested object placed in view, none dropped."""
    from calcscope.synth._anatomy import build_anatomy
    from calcscope.synth._geometry import Grid
    from calcscope.synth._objects import build_objects
    from calcscope.synth._phantom import choose_origin
    from calcscope.synth._presets import fov_scale, preset_specs

    an = build_anatomy(seed)
    grid = Grid(shape, spacing, choose_origin(an, shape, spacing), None)
    specs = preset_specs(preset, seed=seed, scale=fov_scale(shape, spacing))
    built = build_objects(specs, an=an, grid=grid, phase="portal_venous", seed=seed, strict=True)
    assert len(built) == len(specs)
    for b in built:
        idx = grid.anatomy_to_index(b.centre)
        assert np.all(idx >= 0) and np.all(idx <= np.asarray(shape) - 1), (preset, seed, b.spec.id)


@pytest.mark.parametrize(("seed", "grid"), [(0, "default"), (1, "1mm"), (2, "default"), (3, "1mm")])
def test_every_preset_places_all_objects_fast(seed, grid):
    shape, spacing = SWEEP_GRIDS[grid]
    for preset in PRESETS:
        _check_placement(preset, seed, shape, spacing)


def test_duct_stones_seed1_regression():
    """Reported: duct_stones seed 1 failed to place a stone (before duct growth retried, the tree was
    short); every stone must be placed and painted, and a duct too short for its stones keeps what fits."""
    _check_generated("duct_stones", 1, None, *SWEEP_GRIDS["default"])
    specs = [ObjectSpec(id="d", type="duct", subtype="dilated", size_mm=7.0, lobe="left", count=2)]
    specs += [ObjectSpec(id=f"s{i}", type="calcification", subtype="beaded", size_mm=5.0, parent="d", relation="in_duct") for i in range(8)]
    ph = generate_phantom("normal", seed=1, objects=specs, strict=False, noise_hu=0, shape_zyx=SWEEP_GRIDS["default"][0], spacing_zyx=SWEEP_GRIDS["default"][1])
    t = ph.truth
    stones = t.calcifications
    assert 1 <= len(stones) < 8 and len(stones) + len(t.unplaced) == 8
    assert all(u.parent == "d" and "no room" in u.reason for u in t.unplaced)
    for o in stones:
        assert int((ph.objects == o.label).sum()) == o.voxel_count >= 1
    with pytest.raises(ValueError, match="could not place stone"):
        generate_phantom("normal", seed=1, objects=specs, noise_hu=0, shape_zyx=SWEEP_GRIDS["default"][0], spacing_zyx=SWEEP_GRIDS["default"][1])


def test_unplaceable_objects_are_left_out_and_reported():
    specs = [
        ObjectSpec(id="huge", type="lesion", subtype="metastasis", size_mm=150.0, lobe="left"),
        ObjectSpec(id="huge-calc", type="calcification", subtype="coarse", size_mm=8.0, parent="huge", relation="centre"),
        ObjectSpec(id="dot", type="calcification", subtype="punctate", size_mm=3.0, lobe="right"),
    ]
    from calcscope.synth import PlacementError

    with pytest.raises(PlacementError, match="left lobe"):
        generate_phantom("normal", seed=3, objects=specs, noise_hu=0, **TINY)
    ph = generate_phantom("normal", seed=3, objects=specs, noise_hu=0, strict=False, **TINY)
    t = ph.truth
    assert [o.id for o in t.objects] == ["dot"] and t.objects[0].label == 1
    assert [(u.id, u.parent) for u in t.unplaced] == [("huge", None), ("huge-calc", "huge")]
    assert "left lobe" in t.unplaced[0].reason and "parent" in t.unplaced[1].reason
    assert set(np.unique(ph.objects).tolist()) == {0, 1}
    assert t.calcification_distribution == "single"
    # a field of view too small for a preset: fewer objects, never an error, truth matches the map
    grid = dict(shape_zyx=(12, 24, 24), spacing_zyx=(4.0, 3.0, 3.0))
    small = generate_phantom("duct_stones", seed=0, phase=None, noise_hu=0, **grid)
    st = small.truth
    assert len(st.objects) + len(st.unplaced) == sum(_expected_counts("duct_stones", 0, *grid.values()).values())
    assert len(st.unplaced) >= 1 and all("no room in view" in u.reason and u.parent == "duct-1" for u in st.unplaced)
    assert st.has_duct_dilatation and {o.id for o in st.calcifications}.isdisjoint(u.id for u in st.unplaced)
    assert sorted(np.unique(small.objects).tolist()) == list(range(len(st.objects) + 1))


@pytest.mark.slow
@pytest.mark.parametrize("grid", sorted(SWEEP_GRIDS))
@pytest.mark.parametrize("phase", ["non_contrast", "arterial", "portal_venous", "delayed"])
@pytest.mark.parametrize("preset", PRESETS)
def test_sweep_every_preset_seed_phase_grid(preset, phase, grid):
    """Every preset x seeds 0..24 x four phases x both grids: generates, all objects placed and painted."""
    shape, spacing = SWEEP_GRIDS[grid]
    for seed in range(25):
        _check_generated(preset, seed, phase, shape, spacing)


def test_save_dicom_series_instance_uids_and_extra_attributes(tmp_path):
    import pydicom

    from calcscope.io import save_dicom_series

    vol = generate_phantom("normal", seed=0, noise_hu=0, shape_zyx=(8, 32, 32), spacing_zyx=(5.0, 6.0, 6.0)).volume
    uids = [f"1.2.826.0.1.3680043.99.7.{k + 1}" for k in range(8)]
    files = save_dicom_series(vol, tmp_path / "s", instance_uids=uids, series_uid="1.2.826.0.1.3680043.99.7", study_uid="1.2.826.0.1.3680043.99.8",
                              frame_of_reference_uid="1.2.826.0.1.3680043.99.9", extra_attributes={"KVP": 100, "PatientID": "X"}, first_file_number=1, file_prefix="IM")
    assert [f.name for f in files][:2] == ["IM0001.dcm", "IM0002.dcm"]
    again = save_dicom_series(vol, tmp_path / "t", instance_uids=uids, series_uid="1.2.826.0.1.3680043.99.7", study_uid="1.2.826.0.1.3680043.99.8",
                              frame_of_reference_uid="1.2.826.0.1.3680043.99.9", extra_attributes={"KVP": 100, "PatientID": "X"}, first_file_number=1, file_prefix="IM")
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(files, again))
    ds = pydicom.dcmread(files[3])
    assert ds.SOPInstanceUID == uids[3] and int(ds.KVP) == 100 and ds.PatientID == "X"
    with pytest.raises(ValueError, match="instance_uids"):
        save_dicom_series(vol, tmp_path / "u", instance_uids=uids[:3])
    with pytest.raises(ValueError, match="NotAKeyword"):
        save_dicom_series(vol, tmp_path / "v", extra_attributes={"NotAKeyword": 1})


# --------------------------------------------------------------------------------------
# optional realism
# --------------------------------------------------------------------------------------

REAL_GRID = dict(shape_zyx=(56, 128, 128), spacing_zyx=(3.0, 2.0, 2.0))


def _adjacent_slice_corr(noise: np.ndarray, mask: np.ndarray) -> float:
    m = mask[1:] & mask[:-1]
    a, b = noise[1:][m], noise[:-1][m]
    return float(np.corrcoef(a, b)[0, 1])


def test_realism_off_is_the_default_and_noise_thickness_texture():
    from calcscope.synth import Realism

    quiet = Realism(texture_hu=0.0, hepatic_arteries=False, bowel=False)
    clean = generate_phantom("normal", seed=2, noise_hu=0, **REAL_GRID)
    from calcscope.synth._realism import resolve_realism

    assert resolve_realism(False) is None and resolve_realism(None) is None and resolve_realism(True) == Realism()
    plain = generate_phantom("normal", seed=2, **REAL_GRID)
    assert plain.truth.realism is None and plain.truth.slice_thickness_mm == 3.0
    corr = generate_phantom("normal", seed=2, realism=quiet, **REAL_GRID)
    liver = ndimage.binary_erosion(clean.organs == ORGAN_LABELS["liver"], iterations=2) & (clean.vessels == 0)
    base = clean.volume.array.astype(float)
    n_plain = plain.volume.array - base
    n_corr = corr.volume.array - base
    assert abs(_adjacent_slice_corr(n_plain, liver)) < 0.05
    assert 0.18 <= _adjacent_slice_corr(n_corr, liver) <= 0.34  # Gaussian profile, FWHM = thickness: 0.25
    assert n_corr[liver].std() == pytest.approx(12.0, abs=1.0)
    # 4 mm slices every 2 mm: stronger correlation, z-blurred image, lower peak of a small calcification
    thin_grid = dict(shape_zyx=(84, 128, 128), spacing_zyx=(2.0, 2.0, 2.0))
    dot = [ObjectSpec(id="dot", type="calcification", subtype="punctate", size_mm=3.0, hu=800.0, lobe="right")]
    contig = generate_phantom("normal", seed=2, objects=dot, realism=quiet, **thin_grid)
    thick = generate_phantom("normal", seed=2, objects=dot, realism=Realism(slice_thickness_mm=4.0, texture_hu=0.0, hepatic_arteries=False, bowel=False), **thin_grid)
    assert thick.truth.slice_thickness_mm == 4.0 and thick.volume.meta["slice_thickness_mm"] == 4.0
    assert thick.truth.by_id("dot").hu_peak < 0.92 * contig.truth.by_id("dot").hu_peak  # 433 -> 376 HU measured
    clean_thick = generate_phantom("normal", seed=2, objects=dot, noise_hu=0, realism=Realism(slice_thickness_mm=4.0, texture_hu=0.0, hepatic_arteries=False, bowel=False), **thin_grid)
    liver2 = ndimage.binary_erosion(clean_thick.organs == ORGAN_LABELS["liver"], iterations=3) & (clean_thick.vessels == 0) & (clean_thick.objects == 0)
    assert 0.45 <= _adjacent_slice_corr(thick.volume.array - clean_thick.volume.array.astype(float), liver2) <= 0.75
    # texture: smooth, zero mean, about texture_hu inside the parenchyma (noise-free image)
    tex = generate_phantom("normal", seed=2, noise_hu=0, realism=Realism(texture_hu=5.0, hepatic_arteries=False, bowel=False), **REAL_GRID)
    d = tex.volume.array[liver].astype(float) - base[liver]
    assert abs(d.mean()) < 1.0 and 3.5 <= d.std() <= 6.0
    assert np.array_equal(tex.volume.array[~(tex.organs == ORGAN_LABELS["liver"])], clean.volume.array[~(clean.organs == ORGAN_LABELS["liver"])])


def test_realism_hepatic_arteries_and_bowel():
    from calcscope.synth import VESSEL_LABELS

    art = generate_phantom("normal", seed=3, phase="arterial", noise_hu=0, realism=True, **REAL_GRID)
    pre = generate_phantom("normal", seed=3, phase="non_contrast", noise_hu=0, realism=True, **REAL_GRID)
    a = art.volume.array
    arteries = art.vessels == VESSEL_LABELS["hepatic_artery"]
    liver = art.organs == ORGAN_LABELS["liver"]
    assert (arteries & liver).sum() * 12.0 > 500  # mm3 of intrahepatic artery (3x2x2 mm voxels)
    core = ndimage.binary_erosion(arteries)
    assert np.percentile(a[arteries], 90) >= 230 and (core.sum() == 0 or np.median(a[core]) >= 240)  # 280 HU, partial volume
    assert abs(np.median(pre.volume.array[pre.vessels == VESSEL_LABELS["hepatic_artery"]]) - 40) <= 25  # unenhanced blood
    bowel = art.organs == ORGAN_LABELS["bowel"]
    assert bowel.sum() * 12.0 > 50_000
    b = a[bowel]
    assert (b < -900).sum() > 200 and ((b > 0) & (b < 40)).sum() > 200  # gas and fluid/stool
    assert not (bowel & liver).any()
    # loops touch the liver's inferior surface: some bowel within 6 mm of the liver
    dist = ndimage.distance_transform_edt(~liver, sampling=art.volume.spacing_zyx)
    assert (dist[bowel] <= 6.0).sum() > 20
    # aorta and IVC untouched by the bowel
    for organ in ("aorta", "ivc"):
        assert (art.organs == ORGAN_LABELS[organ]).sum() == (generate_phantom("normal", seed=3, phase="arterial", noise_hu=0, **REAL_GRID).organs == ORGAN_LABELS[organ]).sum()
