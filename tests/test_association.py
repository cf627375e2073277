"""Calcification-to-lesion/duct association on a hand-made volume of known layout."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from calcscope.describe import associate, describe_ducts, describe_lesions
from calcscope.detect import find_ducts, find_lesions
from calcscope.model import Finding, Volume

SP = (2.5, 1.5, 1.5)


def _pts(shape, sp):
    z, y, x = np.indices(shape).astype(float)
    return np.stack([z * sp[0], y * sp[1], x * sp[2]], -1)


def _ball(pts, c, d):
    return ((pts - np.asarray(c, float)) ** 2).sum(-1) <= (d / 2) ** 2


def _seg(pts, p0, p1, d):
    a, b = np.asarray(p0, float), np.asarray(p1, float)
    t = np.clip(((pts - a) @ (b - a)) / ((b - a) @ (b - a)), 0, 1)
    return ((pts - (a + t[..., None] * (b - a))) ** 2).sum(-1) <= (d / 2) ** 2


@pytest.fixture(scope="module")
def scene():
    shape = (44, 120, 120)
    pts = _pts(shape, SP)
    c = np.array([(n - 1) * s / 2 for n, s in zip(shape, SP)])
    liver = (((pts - c) / (0.88 * c)) ** 2).sum(-1) <= 1
    img = np.full(shape, -100.0)
    img[liver] = 105.0  # portal venous parenchyma
    met_c, cyst_c = (55, 50, 50), (55, 50, 125)
    met = _ball(pts, met_c, 30.0)
    img[met] = 60.0  # solid hypodense mass
    cyst = _ball(pts, cyst_c, 24.0)
    img[cyst] = 8.0
    shell = _ball(pts, cyst_c, 28.0) & ~cyst & (pts[..., 1] < 122)  # calcified wall arc
    duct = _seg(pts, (55, 125, 40), (55, 125, 140), 7.0)
    img[duct] = 10.0
    small = _ball(pts, (55, 125, 150), 12.0)  # not a lesion: only the liver test case
    del small
    calcs = [
        _ball(pts, met_c, 4.5),  # centre of the metastasis
        _ball(pts, (55, 50, 50 + 11.0), 3.5),  # periphery of the metastasis
        shell,  # wall of the cyst
        _ball(pts, (55, 125, 70), 4.0),  # stone 1 in the duct
        _ball(pts, (55, 125, 105), 4.0),  # stone 2 in the duct
        _ball(pts, (30, 150, 80), 3.0),  # isolated parenchymal focus
    ]
    labels = np.zeros(shape, np.int32)
    for i, m in enumerate(calcs, start=1):
        m = m & liver
        img[m] = 500.0
        labels[m] = i
    img = ndi.gaussian_filter(img, [0.7 / s for s in SP]) + np.random.default_rng(0).normal(0, 12, shape)
    vol = Volume(array=np.round(img).astype(np.int16), spacing_zyx=SP)
    les = find_lesions(vol, liver, phase="portal_venous", calcifications=labels)
    ducts = find_ducts(vol, liver, phase="portal_venous", lesions=les.labels, calcifications=labels)
    lf = describe_lesions(
        vol, les.labels, liver=liver, lobes=None, parenchyma_hu=les.parenchyma_hu, noise_hu=les.noise_hu,
        phase="portal_venous",
    )
    df = describe_ducts(vol, ducts.mask, liver=liver, lobes=None)
    cf = [Finding(kind="calcification", id=f"calc-{n:03d}", label=1000 + n) for n in range(1, len(calcs) + 1)]
    associate(cf, lf, df, volume=vol, calc_labels=labels, lesion_labels=les.labels, duct_mask=ducts.mask)
    return lf, df, cf


def test_lesions_and_duct_found(scene):
    lf, df, _ = scene
    kinds = sorted(f.kind for f in lf)
    assert kinds == ["cyst", "lesion"]
    assert len(df) == 1


def test_relations(scene):
    lf, df, cf = scene
    met = next(f for f in lf if f.kind == "lesion")
    cyst = next(f for f in lf if f.kind == "cyst")
    duct = df[0]
    expect = [
        (met.id, "centre", "in_lesion_centre"),
        (met.id, "periphery", "in_lesion_rim"),
        (cyst.id, "wall", "cyst_wall"),
        (duct.id, "in_duct", "along_duct"),
        (duct.id, "in_duct", "along_duct"),
        (None, None, None),
    ]
    for c, (parent, rel, loc) in zip(cf, expect):
        assert (c.parent_id, c.relation) == (parent, rel), c.id
        if loc:
            assert loc in c.location
        else:
            assert c.location == []
    assert sorted(met.children) == ["calc-001", "calc-002"]
    assert cyst.children == ["calc-003"]
    assert duct.children == ["calc-004", "calc-005"]
    assert cf[3].shape == "beaded" and cf[4].shape == "beaded"
    assert "duct_dilatation_upstream" in duct.signs


def test_whole_lesion_calcification():
    shape = (24, 60, 60)
    pts = _pts(shape, SP)
    lesion = np.zeros(shape, np.int32)
    lesion[_ball(pts, (30, 45, 45), 8.0)] = 1
    calc = np.zeros(shape, np.int32)
    calc[_ball(pts, (30, 45, 45), 7.0)] = 1
    vol = Volume(array=np.zeros(shape, np.int16), spacing_zyx=SP)
    lf = [Finding(kind="lesion", id="lesion-001", label=101)]
    cf = [Finding(kind="calcification", id="calc-001", label=1001)]
    associate(cf, lf, [], volume=vol, calc_labels=calc, lesion_labels=lesion, duct_mask=None)
    assert cf[0].relation == "whole" and cf[0].parent_id == "lesion-001"


def _assoc_labels(les_lab, calc_lab, sp, volumes):
    vol = Volume(array=np.zeros(les_lab.shape, np.int16), spacing_zyx=sp)
    lf = [
        Finding(kind="lesion", id=f"lesion-{k:03d}", label=100 + k, volume_mm3=v) for k, v in enumerate(volumes, start=1)
    ]
    cf = [Finding(kind="calcification", id="calc-001", label=1001)]
    associate(cf, lf, [], volume=vol, calc_labels=calc_lab, lesion_labels=les_lab, duct_mask=None)
    return cf[0]


def test_focus_between_a_mass_and_a_fleck_goes_to_the_mass():
    # equal reach to both: the larger lesion wins, whatever the label order
    sp = (1.0, 1.0, 1.0)
    les = np.zeros((30, 30, 60), np.int32)
    les[12:18, 12:18, 10:14] = 1  # a small fleck (label 1, found first)
    les[5:25, 5:25, 18:45] = 2  # the mass
    calc = np.zeros(les.shape, np.int32)
    calc[14:16, 14:16, 15:17] = 1
    f = _assoc_labels(les, calc, sp, [150.0, 10800.0])
    assert f.parent_id == "lesion-002"


def test_reach_grows_with_slice_thickness():
    # a focus on the first 3 mm slice past a lesion's segmented edge and 2 mm to the side
    # (3.6 mm away) is linked, within the reach of 1.5 slices (4.5 mm) though beyond the
    # 3 mm floor; a gap of 4 mm on 1 mm slices (reach 3 mm) is not
    les = np.zeros((20, 30, 30), np.int32)
    les[4:10, 10:20, 10:20] = 1
    calc = np.zeros(les.shape, np.int32)
    calc[10, 21, 14:16] = 1  # the next slice, 2 mm beside the edge: 3.6 mm
    f = _assoc_labels(les, calc, (3.0, 1.0, 1.0), [1800.0])
    assert f.parent_id == "lesion-001"
    calc2 = np.zeros(les.shape, np.int32)
    calc2[11, 14:16, 14:16] = 1  # two slices past: 6 mm, beyond the reach
    assert _assoc_labels(les, calc2, (3.0, 1.0, 1.0), [1800.0]).parent_id is None
    calc_far = np.zeros(les.shape, np.int32)
    calc_far[13, 14:16, 14:16] = 1  # four 1 mm slices past the edge
    g = _assoc_labels(les, calc_far, (1.0, 1.0, 1.0), [600.0])
    assert g.parent_id is None


def test_grit_spread_through_a_mass_is_whole_and_a_speck_at_its_edge_is_periphery():
    sp = (1.0, 1.0, 1.0)
    z, y, x = np.indices((40, 40, 40))
    les = (((z - 20) ** 2 + (y - 20) ** 2 + (x - 20) ** 2) <= 14**2).astype(np.int32)
    grit = np.zeros(les.shape, np.int32)
    # five particles, off-centre as a group, spread over most of the mass
    for c in [(20, 8, 20), (20, 14, 28), (26, 20, 12), (14, 26, 22), (20, 30, 16)]:
        grit[c[0] - 1 : c[0] + 1, c[1] - 1 : c[1] + 1, c[2] - 1 : c[2] + 1] = 1
    les[grit > 0] = 0  # dense voxels are not in the hypodense lesion label
    f = _assoc_labels(les, grit, sp, [11000.0])
    assert f.parent_id == "lesion-001" and f.relation == "whole"
    speck = np.zeros(les.shape, np.int32)
    speck[20, 20, 35] = 1  # one voxel just outside the segmented edge
    g = _assoc_labels(les, speck, sp, [11000.0])
    assert g.parent_id == "lesion-001" and g.relation == "periphery"
