"""Dilated bile duct detection on hand-made volumes: tubes of bile in a noisy liver."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi

from calcscope.describe import describe_ducts
from calcscope.detect import duct_components, find_ducts, find_lesions
from calcscope.detect._duct import skeleton_length_mm
from calcscope.model import Volume

SPACING = (2.5, 1.5, 1.5)


def _points(shape, sp):
    z, y, x = np.indices(shape).astype(float)
    return np.stack([z * sp[0], y * sp[1], x * sp[2]], -1)


def _tube(pts, p0, p1, d):
    a, b = np.asarray(p0, float), np.asarray(p1, float)
    ab = b - a
    t = np.clip(((pts - a) @ ab) / (ab @ ab), 0, 1)
    q = a + t[..., None] * ab
    return ((pts - q) ** 2).sum(-1) <= (d / 2) ** 2


def _liver_with(tubes, *, shape=(48, 110, 110), sp=SPACING, liver_hu=58.0, noise_hu=12.0, seed=0, spheres=()):
    pts = _points(shape, sp)
    c = np.array([(n - 1) * s / 2 for n, s in zip(shape, sp)])
    liver = (((pts - c) / (0.85 * c)) ** 2).sum(-1) <= 1
    img = np.full(shape, -100.0)
    img[liver] = liver_hu
    truth = np.zeros(shape, bool)
    for p0, p1, d, hu in tubes:
        m = _tube(pts, p0, p1, d) & liver
        img[m] = hu
        truth |= m
    for cen, d, hu in spheres:
        m = (((pts - np.asarray(cen)) ** 2).sum(-1) <= (d / 2) ** 2) & liver
        img[m] = hu
    img = ndi.gaussian_filter(img, [0.7 / s for s in sp])
    img += np.random.default_rng(seed).normal(0, noise_hu, shape)
    return Volume(array=np.round(img).astype(np.int16), spacing_zyx=sp), liver, truth


# a branching tree of bile (10 HU) in the mid-liver plane
TREE = [((60, 85, 85), (60, 35, 35), 6.0, 10.0), ((60, 85, 85), (60, 35, 125), 5.0, 10.0), ((60, 60, 60), (30, 35, 55), 4.0, 10.0)]
# unenhanced portal/hepatic veins on non-contrast CT (40 HU against liver 58 HU)
VEINS = [((75, 150, 40), (75, 55, 130), 8.0, 40.0), ((75, 105, 85), (40, 140, 120), 6.0, 40.0)]


def test_branching_duct_tree_found_and_measured():
    vol, liver, truth = _liver_with(TREE)
    det = find_ducts(vol, liver, phase="non_contrast")
    dice = 2 * (det.mask & truth).sum() / (det.mask.sum() + truth.sum())
    assert dice >= 0.8
    assert len(det.components) == 1
    assert det.lengths_mm[0] == pytest.approx(175.0, rel=0.2)  # 70.7 + 64.0 + 39.4 mm of centre line
    assert 4.0 <= det.diameters_mm[0] <= 6.5
    assert det.components[0]["branch_points"] >= 1
    (f,) = describe_ducts(vol, det.mask, liver=liver, lobes=None)
    assert f.kind == "duct_dilatation" and f.id == "duct-001" and f.label == 2
    assert f.measurements["length_mm"] == pytest.approx(det.lengths_mm[0], rel=0.05)
    assert f.hu_mean == pytest.approx(10.0, abs=10.0)


@pytest.mark.parametrize("diameter_mm", [4.0, 8.0])
def test_straight_duct_calibre(diameter_mm):
    vol, liver, truth = _liver_with([((60, 40, 25), (60, 40, 135), diameter_mm, 10.0)], seed=1)
    det = find_ducts(vol, liver)
    assert len(det.components) == 1
    assert det.diameters_mm[0] == pytest.approx(diameter_mm, abs=1.5)
    # centre line of a 110 mm capped tube: about 110 mm less one calibre
    assert det.lengths_mm[0] == pytest.approx(110.0 - diameter_mm, rel=0.15)


def test_unenhanced_veins_and_round_lesions_are_not_ducts():
    vol, liver, _ = _liver_with(VEINS, spheres=[((40, 110, 110), 15.0, 10.0), ((70, 50, 50), 20.0, 30.0)], seed=2)
    # as in the pipeline: lesions first; the lesion detector rejects the veins as tubular
    les = find_lesions(vol, liver, phase="non_contrast")
    assert les.labels.max() == 2
    assert les.rejected["tubular"] >= 1
    det = find_ducts(vol, liver, phase="non_contrast", lesions=les.labels)
    assert not det.mask.any()
    assert det.components == [] and describe_ducts(vol, det.mask, liver=liver, lobes=None) == []


def test_skeleton_length_and_components_order():
    line = np.zeros((3, 3, 30), bool)
    line[1, 1, 2:28] = True
    length, branches = skeleton_length_mm(line, (1.0, 1.0, 2.0))
    assert length == pytest.approx(50.0) and branches == 0
    m = np.zeros((10, 10, 10), bool)
    m[7, 1:4, 1] = True
    m[2, 5:9, 8] = True
    lab = duct_components(m)
    assert lab[2, 6, 8] == 1 and lab[7, 2, 1] == 2


def test_fat_band_in_the_liver_is_not_a_duct_but_bile_is():
    # a fissure of fat (-100 HU) crossing the liver: dark, tubular and branching-free like a
    # duct, but fat, which bile never is; the same tube filled with bile is kept
    fat = [((60, 40, 25), (60, 40, 135), 6.0, -100.0)]
    vol, liver, _ = _liver_with(fat, seed=3)
    det = find_ducts(vol, liver, phase="non_contrast")
    assert not det.mask.any()
    assert det.rejected.get("fat", 0) >= 1
    vol, liver, _ = _liver_with([((60, 40, 25), (60, 40, 135), 6.0, 10.0)], seed=3)
    assert len(find_ducts(vol, liver, phase="non_contrast").components) == 1


def test_fat_fraction_line_follows_the_noise():
    from calcscope.detect._lesion import fat_fraction

    rng = np.random.default_rng(0)
    water = rng.normal(5.0, 12.0, 20000)
    assert fat_fraction(water, noise_hu=12.0) < 0.002
    noisy_water = rng.normal(5.0, 25.0, 20000)
    assert fat_fraction(noisy_water, noise_hu=25.0) < 0.003  # line moves to -75 HU
    mixed = np.concatenate([water[:800], rng.normal(-100.0, 12.0, 200)])
    assert fat_fraction(mixed, noise_hu=12.0) == pytest.approx(0.2, abs=0.02)


REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "totalseg-example-ct"


@pytest.mark.skipif(not REAL.is_dir(), reason="../shared/data is absent (real test data lives beside the repository)")
@pytest.mark.parametrize("name", ["example_ct_dicom", "example_ct.nii.gz"])
def test_real_scans_without_lesions_or_ducts(name):
    """Negative controls: the two example CTs have no liver lesion and no dilated duct.

    With the automatic liver mask, the fat of the fissures and porta hepatis that the mask
    takes in used to be reported as a dilated duct (contrast DICOM) and as two subcapsular
    'lesions' and two ducts (non-contrast NIfTI).
    """
    from calcscope.detect import find_calcifications
    from calcscope.io import load_ct
    from calcscope.segment import estimate_phase, segment_liver

    vol = load_ct(REAL / name)
    seg = segment_liver(vol)
    phase = estimate_phase(vol, seg.mask).phase
    calc = find_calcifications(vol, seg.mask, phase=phase, margin=seg.margin)
    les = find_lesions(vol, seg.mask, phase=phase, calcifications=calc.labels, vessels=calc.vessels)
    det = find_ducts(vol, seg.mask, phase=phase, lesions=les, calcifications=calc.labels)
    assert les.count == 0
    assert not det.mask.any() and det.components == []
    assert det.rejected.get("fat", 0) >= 1  # the fissure / hilar fat was the candidate


def _stones_on(vol, pts, centres, d=4.5, hu=700.0):
    """Paint stones (spheres of ``hu``) into ``vol`` and return their label map 1..n."""
    img = vol.array.astype(np.float32)
    lab = np.zeros(img.shape, np.int32)
    for n, c in enumerate(centres, start=1):
        m = ((pts - np.asarray(c, float)) ** 2).sum(-1) <= (d / 2) ** 2
        img[m] = hu
        lab[m] = n
    return Volume(array=np.round(img).astype(np.int16), spacing_zyx=vol.spacing_zyx), lab


def test_row_of_stones_does_not_cut_the_duct_into_short_pieces():
    # a 6 mm duct of bile plugged by three stones 15 mm apart: the bile between them is a
    # set of stretches each shorter than a duct must be; the known stones join them
    duct = [((60, 40, 45), (60, 40, 115), 6.0, 10.0)]
    vol, liver, truth = _liver_with(duct, seed=4)
    pts = _points(vol.shape, vol.spacing_zyx)
    vol, stones = _stones_on(vol, pts, [(60, 40, 60), (60, 40, 80), (60, 40, 100)], d=6.5)
    without = find_ducts(vol, liver, phase="non_contrast")
    with_stones = find_ducts(vol, liver, phase="non_contrast", calcifications=stones)
    assert len(with_stones.components) == 1
    assert with_stones.lengths_mm[0] >= 50.0
    # every stone lies in the duct found
    for n in (1, 2, 3):
        assert (with_stones.mask & (stones == n)).any()
    assert sum(without.lengths_mm) < with_stones.lengths_mm[0]


def test_calcified_mass_does_not_bridge_into_a_duct(monkeypatch):
    # grit in a portal-phase metastasis of the metastasis phantom: the rim of the mass left
    # outside its lesion label is dark, and with the grit as a bridge it once passed as a
    # 40 mm duct; calcifications beside a mass belong to the mass
    import calcscope.detect._duct as duct_mod
    from calcscope.synth import generate_phantom

    ph = generate_phantom("calcified_metastases", seed=0, phase="portal_venous")
    liver = ph.organs == 1
    calcs = [o for o in ph.truth.objects if o.type == "calcification"]
    lab = np.zeros(ph.objects.shape, np.int32)
    for n, o in enumerate(calcs, start=1):
        lab[ph.objects == o.label] = n
    les = find_lesions(ph.volume, liver, phase="portal_venous", calcifications=lab)
    assert find_ducts(ph.volume, liver, phase="portal_venous", lesions=les, calcifications=lab).components == []
    monkeypatch.setattr(duct_mod, "MASS_MIN_DIAMETER_MM", 1e6)  # no lesion owns its calcifications
    assert find_ducts(ph.volume, liver, phase="portal_venous", lesions=les, calcifications=lab).components != []


def test_small_lesion_in_a_duct_is_handed_to_the_duct():
    from calcscope.detect import drop_lesions

    duct = [((60, 40, 25), (60, 40, 135), 6.0, 10.0)]
    vol, liver, truth = _liver_with(duct, seed=6)
    fake = np.zeros(vol.shape, np.int32)
    pts = _points(vol.shape, vol.spacing_zyx)
    fake[(((pts - np.array([60, 40, 80])) ** 2).sum(-1) <= 3.0**2) & truth] = 1  # a stretch of the duct
    fake[((pts - np.array([60, 110, 80])) ** 2).sum(-1) <= 6.0**2] = 2  # a lesion far from it
    det = find_ducts(vol, liver, phase="non_contrast", lesions=fake)
    assert det.lesions_in_duct == [1]
    les = find_lesions(vol, liver, phase="non_contrast")
    les = type(les)(labels=fake, parenchyma_hu=les.parenchyma_hu, noise_hu=les.noise_hu)
    kept = drop_lesions(les, det.lesions_in_duct)
    assert kept.count == 1 and (kept.labels == 1).sum() == (fake == 2).sum()
    assert drop_lesions(les, []) is les


def test_find_lesions_and_ducts_hands_duct_stretches_to_the_duct():
    # duct-stone phantom (seed 1, arterial): the lesion detector takes stretches of the
    # plugged duct for small lesions; the combined stage gives them to the duct
    from calcscope.detect import find_lesions_and_ducts
    from calcscope.synth import generate_phantom

    ph = generate_phantom("duct_stones", seed=1, phase="arterial")
    liver = ph.organs == 1
    calcs = [o for o in ph.truth.objects if o.type == "calcification"]
    lab = np.zeros(ph.objects.shape, np.int32)
    for n, o in enumerate(calcs, start=1):
        lab[ph.objects == o.label] = n
    alone = find_lesions(ph.volume, liver, phase="arterial", calcifications=lab)
    les, ducts = find_lesions_and_ducts(ph.volume, liver, phase="arterial", calcifications=lab)
    assert ducts.lesions_in_duct and len(ducts.components) == 1
    assert les.count == alone.count - len(ducts.lesions_in_duct)
    assert not (les.labels.astype(bool) & ducts.mask).any()
