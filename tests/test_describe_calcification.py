"""Description of calcified foci (measurements, shape, location) and the liver-level pattern."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from calcscope.describe import calcification_pattern, describe_calcifications
from calcscope.describe._calcification import (
    FocusShape,
    agatston_weight,
    classify_shape,
    depth_class,
    group_shapes,
)
from calcscope.describe._geometry import (
    LiverSurface,
    convex_hull_volume_mm3,
    depth_map_mm,
    equivalent_diameter_mm,
    lobe_of,
    longest_diameter_mm,
    principal_axes,
    voxel_coords,
)
from calcscope.describe._pattern import clark_evans_ratio, units
from calcscope.detect import find_calcifications
from calcscope.model import Finding, Volume

from test_detect_calcification import ball, centre_mm, finish, liver_case, paint, tube  # noqa: E402


# ---------------------------------------------------------------------------------------
# geometry helpers
# ---------------------------------------------------------------------------------------


def test_longest_diameter_of_voxelised_ball_and_single_voxel():
    spacing = (1.0, 0.5, 0.5)
    idx = np.indices((30, 60, 60)).reshape(3, -1).T.astype(float)
    r_mm = 6.0
    # centre-to-centre extent plus one voxel: unbiased on average over positions,
    # at most one voxel off for any single position
    ds = []
    for off in np.linspace(0, 1, 5, endpoint=False):
        c = np.array([15, 30, 30]) + off
        inside = (((idx - c) * spacing) ** 2).sum(1) <= r_mm**2
        ds.append(longest_diameter_mm(idx[inside], spacing))
    assert np.mean(ds) == pytest.approx(12.0, abs=0.5)
    assert max(abs(d - 12.0) for d in ds) <= 0.8
    assert longest_diameter_mm(np.array([[3, 4, 5]]), spacing) == 1.0
    assert longest_diameter_mm(np.zeros((0, 3)), spacing) == 0.0


def test_principal_axes_of_a_rod_and_hull_solidity():
    spacing = (1.0, 1.0, 1.0)
    rod = np.array([[5, 5, x] for x in range(20)])
    ax = principal_axes(rod, spacing)
    assert abs(ax.axes[0][2]) == pytest.approx(1.0, abs=1e-6)
    assert ax.extents_mm[0] == pytest.approx(20.0)
    assert ax.elongation == pytest.approx(20.0)
    cube = voxel_coords(np.ones((4, 4, 4), bool))
    assert convex_hull_volume_mm3(cube, spacing) == pytest.approx(64.0)
    assert equivalent_diameter_mm(4 / 3 * np.pi * 27) == pytest.approx(6.0)


def test_depth_map_and_surface_queries_agree_in_mm():
    spacing = (2.0, 1.0, 1.0)
    liver = np.zeros((30, 60, 60), bool)
    liver[5:25, 10:50, 10:50] = True
    dm = depth_map_mm(liver, spacing)
    # voxel (15, 30, 30): nearest outside voxel 10 slices (20 mm) or 20 columns (20 mm) away
    assert dm[15, 30, 30] == pytest.approx(20.0)
    surf = LiverSurface(liver, spacing)
    d = surf.depth_mm(np.array([[15, 30, 30], [15, 12, 30], [0, 0, 0], [15, 10, 30]]))
    # nearest surface voxel is slice 24 (9 slices = 18 mm) plus half a 2 mm slice
    assert d[0] == pytest.approx(19.0, abs=0.01)
    assert d[1] == pytest.approx(2.5, abs=0.01)
    assert d[2] == 0.0
    assert d[3] == pytest.approx(0.5, abs=0.01)


def test_lobe_of_majority_and_nearest():
    spacing = (1.0, 1.0, 1.0)
    lobes = np.zeros((10, 20, 20), np.uint8)
    lobes[:, :, :10] = 1
    lobes[:, :, 10:18] = 2
    assert lobe_of(lobes, np.array([[5, 5, 8], [5, 5, 9], [5, 5, 10]]), spacing) == 1
    # just outside the left lobe: nearest lobe voxel
    assert lobe_of(lobes, np.array([[5, 5, 19]]), spacing) == 2
    assert lobe_of(None, np.array([[5, 5, 19]]), spacing) == 0


# ---------------------------------------------------------------------------------------
# rules
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("hu,w", [(129.9, 0), (130, 1), (199, 1), (200, 2), (299.5, 2), (300, 3), (399, 3), (400, 4), (1500, 4)])
def test_agatston_weight(hu, w):
    assert agatston_weight(hu) == w


def test_depth_class_thresholds():
    assert depth_class(1.9, in_margin=False) == "capsular"
    assert depth_class(30.0, in_margin=True) == "capsular"
    assert depth_class(5.0, in_margin=False) == "subcapsular"
    assert depth_class(10.0, in_margin=False) == "deep"


def _fs(**kw):
    base = dict(longest_mm=8.0, elongation=1.2, flatness=1.2, thickness_mm=6.0, solidity=0.8, gap_mm=0.0, centre_filled=True)
    base.update(kw)
    return FocusShape(**base)


def test_classify_shape_single_rules():
    assert classify_shape(_fs(longest_mm=30.0, gap_mm=12.0, centre_filled=False)) == "ring"
    assert classify_shape(_fs(elongation=4.0)) == "linear"
    assert classify_shape(_fs(longest_mm=25.0, flatness=5.0, thickness_mm=3.0)) == "linear"
    assert classify_shape(_fs(longest_mm=15.0, flatness=2.0, capsular=True)) == "linear"
    assert classify_shape(_fs(longest_mm=4.0, duct_like=True, equivalent_diameter_mm=3.5)) == "beaded"
    assert classify_shape(_fs(longest_mm=14.0, solidity=0.2)) == "stellate"
    assert classify_shape(_fs(longest_mm=3.0, equivalent_diameter_mm=2.5)) == "punctate"
    assert classify_shape(_fs(longest_mm=9.0, equivalent_diameter_mm=7.5)) == "coarse"


def test_group_shapes_grit_and_beaded():
    rng = np.random.default_rng(0)
    grit = rng.uniform(-4, 4, size=(6, 3)) + [50, 50, 50]
    chain = np.array([[0, 0, 0], [0, 8, 0.5], [0, 16, -0.5], [0, 24, 0.3]], float)
    lone = np.array([[100, 100, 100]], float)
    pts = np.vstack([grit, chain, lone])
    shapes = ["punctate"] * 6 + ["punctate", "coarse", "punctate", "punctate"] + ["coarse"]
    sizes = [1.5] * 6 + [4.0, 5.0, 4.0, 4.0] + [9.0]
    out = group_shapes(shapes, sizes, pts)
    assert out[:6] == ["grit"] * 6
    assert out[6:10] == ["beaded"] * 4
    assert out[10] == "coarse"


# ---------------------------------------------------------------------------------------
# description of hand-made foci
# ---------------------------------------------------------------------------------------


def _describe(arr, liver, margin, spacing, *, phase="non_contrast", lobes=None, noise=10.0):
    vol = finish(arr, spacing, noise=noise)
    det = find_calcifications(vol, liver, phase=phase, margin=margin)
    return vol, det, describe_calcifications(vol, det.labels, liver=liver, lobes=lobes, margin=margin)


def test_ball_volume_size_density_and_identity_at_anisotropic_spacing():
    spacing = (2.5, 0.8, 0.8)
    arr, liver, margin = liver_case(spacing=spacing)
    c = centre_mm(arr.shape, spacing) + [0.7, 0.3, -0.2]
    ball(arr, spacing, c, 4.0, 650.0)
    lobes = np.where(liver, 1, 0).astype(np.uint8)
    vol, det, found = _describe(arr, liver, margin, spacing, lobes=lobes)
    assert len(found) == 1
    f = found[0]
    true_v = 4 / 3 * np.pi * 4.0**3
    assert f.volume_mm3 == pytest.approx(true_v, rel=0.05)
    assert f.longest_diameter_mm == pytest.approx(8.0, abs=1.5)
    assert f.size_mm == f.longest_diameter_mm
    assert f.hu_max == pytest.approx(650.0, abs=40.0)
    assert f.agatston_weight == 4
    assert f.shape == "coarse"
    assert f.id == "calc-001" and f.label == 1001 and f.kind == "calcification"
    assert f.lobe == "right" and "right_lobe" in f.location
    assert f.depth == "deep" and f.depth_mm > 20.0
    assert np.allclose(np.asarray(f.centroid_voxel) * spacing, c, atol=0.3)
    assert np.allclose(f.centroid_mm, vol.voxel_to_mm(f.centroid_voxel), atol=0.01)
    assert f.density is None
    assert f.measurements["volume_threshold_mm3"] > 0


def test_shapes_of_ring_linear_stellate_punctate_and_capsular_depth():
    spacing = (1.0, 0.8, 0.8)
    arr, liver, margin = liver_case(shape=(96, 120, 120), spacing=spacing)
    c = centre_mm(arr.shape, spacing)
    semi = np.asarray(arr.shape) * np.asarray(spacing) * 0.42
    # ring: shell of outer radius 9 mm, 1.6 mm thick
    rc = c + [-18, -14, 0]
    paint(arr, spacing, lambda z, y, x: np.abs(np.sqrt((z - rc[0]) ** 2 + (y - rc[1]) ** 2 + (x - rc[2]) ** 2) - 8.2) <= 0.8, rc - 9, rc + 9, 600.0)
    # linear: 14 mm rod, 1.4 mm thick
    tube(arr, spacing, c + [0, 12, -20], c + [4, 20, -10], 0.7, 550.0)
    # stellate: a small core with six arms
    sc = c + [18, -12, 12]
    ball(arr, spacing, sc, 1.3, 500.0)
    for d in ([1, 0, 0], [-1, 0.2, 0], [0, 1, 0], [0.2, -1, 0], [0, 0.1, 1], [0.3, 0, -1]):
        tube(arr, spacing, sc, sc + 7.0 * np.asarray(d) / np.linalg.norm(d), 0.6, 500.0)
    # punctate, deep
    ball(arr, spacing, c + [10, 8, 18], 1.2, 750.0)
    # capsular: a small focus on the liver surface (+y side)
    ball(arr, spacing, c + [0, semi[1] - 0.8, 0], 1.5, 600.0)
    vol, det, found = _describe(arr, liver, margin, spacing)
    assert len(found) == 5
    by_pos = {}
    for f in found:
        p = np.asarray(f.centroid_voxel) * spacing
        key = min(
            {"ring": rc, "linear": c + [2, 16, -15], "stellate": sc, "punctate": c + [10, 8, 18], "capsular": c + [0, semi[1] - 0.8, 0]}.items(),
            key=lambda kv: np.linalg.norm(p - kv[1]),
        )[0]
        by_pos[key] = f
    assert by_pos["ring"].shape == "ring"
    assert by_pos["ring"].size_mm == pytest.approx(18.0, abs=2.0)
    assert by_pos["linear"].shape == "linear"
    assert by_pos["linear"].size_mm == pytest.approx(14.0, abs=2.0)
    assert by_pos["stellate"].shape == "stellate"
    assert by_pos["punctate"].shape == "punctate"
    assert by_pos["punctate"].depth == "deep"
    assert by_pos["capsular"].depth == "capsular"
    assert "capsular" in by_pos["capsular"].location


def test_stone_in_fluid_tube_is_beaded_and_grit_cluster_is_grit():
    spacing = (1.0, 0.8, 0.8)
    arr, liver, margin = liver_case(shape=(80, 110, 110), spacing=spacing, liver_hu=105.0)
    c = centre_mm(arr.shape, spacing)
    # a dilated duct (bile 12 HU, 7 mm calibre) with two stones
    tube(arr, spacing, c + [-20, -20, -20], c + [20, -10, 10], 3.5, 12.0)
    ball(arr, spacing, c + [-5, -16.25, -8.75], 1.7, 500.0)
    ball(arr, spacing, c + [8, -13.0, 1.0], 1.9, 500.0)
    # a grit cluster: seven 1.6-2 mm particles within 6 mm
    rng = np.random.default_rng(4)
    gc = c + [5, 18, 10]
    pts = []
    while len(pts) < 7:
        p = gc + rng.uniform(-6, 6, 3)
        if all(np.linalg.norm(p - q) > 3.2 for q in pts):
            pts.append(p)
    for p in pts:
        ball(arr, spacing, p, 1.0, 700.0)
    vol, det, found = _describe(arr, liver, margin, spacing, phase="delayed")
    shapes = sorted(f.shape for f in found)
    assert shapes.count("beaded") == 2
    assert shapes.count("grit") >= 5


# ---------------------------------------------------------------------------------------
# pattern
# ---------------------------------------------------------------------------------------


def _f(i, xyz, *, size=9.0, lobe="right", shape="coarse", depth="deep", parent=None, relation=None):
    return Finding(
        id=f"calc-{i:03d}", kind="calcification", size_mm=size, shape=shape, lobe=lobe, depth=depth,
        location=[f"{lobe}_lobe", depth], centroid_mm=tuple(float(v) for v in xyz), parent_id=parent, relation=relation,
    )


def test_pattern_single_scattered_and_empty():
    p = calcification_pattern([])
    assert p.count == 0 and p.distribution is None
    p = calcification_pattern([_f(1, (0, 0, 0), size=3.0, shape="punctate")])
    assert p.distribution == "single" and p.count == 1 and p.size_mm_max == 3.0
    p = calcification_pattern([_f(1, (0, 0, 0)), _f(2, (90, 10, 0), lobe="left"), _f(3, (-20, 60, 50))])
    assert p.distribution == "scattered"
    assert p.right_lobe_count == 2 and p.left_lobe_count == 1


def test_pattern_diffuse_even_in_both_lobes():
    rng = np.random.default_rng(1)
    grid = np.array([[x, y, z] for x in (-60, -20, 20, 60) for y in (-40, 0, 40) for z in (-30, 30)], float)
    pts = grid + rng.uniform(-5, 5, grid.shape)
    calcs = [_f(i + 1, p, lobe="left" if p[0] > 25 else "right") for i, p in enumerate(pts)]
    p = calcification_pattern(calcs, liver_volume_ml=1500.0)
    assert p.distribution == "diffuse_even", p.reason
    assert p.count == 24 and p.left_lobe_count == 6
    # the same number packed in one corner is not even
    packed = [_f(i + 1, (-100 + (i % 4) * 11, (i // 4) * 11, 0), lobe="left" if i % 3 == 0 else "right") for i in range(24)]
    assert calcification_pattern(packed, liver_volume_ml=1500.0).distribution != "diffuse_even"


def test_pattern_capsular_septal_network():
    calcs = [_f(i + 1, (i * 30.0, 0, 0), shape="linear", depth="capsular", size=20.0) for i in range(4)]
    calcs += [_f(i + 5, (i * 30.0, 50, 0), shape="linear", size=25.0) for i in range(4)]
    p = calcification_pattern(calcs)
    assert p.distribution == "capsular_septal_network"
    assert p.capsular_count == 4


def test_pattern_clustered_within_lesions_and_single_lesion():
    calcs = [
        _f(1, (0, 0, 0), parent="lesion-001", relation="centre"),
        _f(2, (80, 0, 0), parent="lesion-002", relation="periphery", lobe="left"),
        _f(3, (0, 90, 0), parent="lesion-003", relation="whole"),
    ]
    p = calcification_pattern(calcs)
    assert p.distribution == "clustered" and p.in_lesion_count == 3
    one = [_f(1, (0, 0, 0), size=2.0, parent="lesion-001", relation="whole"), _f(2, (12, 0, 0), size=2.0, parent="lesion-001", relation="whole")]
    assert calcification_pattern(one).distribution == "single"


def test_pattern_units_merge_grit_and_keep_beads_apart():
    grit = [_f(i + 1, (i * 2.5, 0, 0), size=1.5, shape="grit") for i in range(6)]
    assert len(units(grit)) == 1
    assert calcification_pattern(grit).distribution == "single"
    beads = [_f(i + 1, (0, i * 5.0, 0), size=4.0, shape="beaded", lobe="left") for i in range(4)]
    assert len(units(beads)) == 4
    assert calcification_pattern(beads).distribution == "clustered"


def test_clark_evans_ratio_regular_vs_clustered():
    g = np.array([[x, y, z] for x in range(5) for y in range(5) for z in range(5)], float) * 20.0
    assert clark_evans_ratio(g, 100.0**3) > 1.5
    tight = np.random.default_rng(0).normal(0, 2.0, size=(125, 3))
    assert clark_evans_ratio(tight, 100.0**3) < 0.3


# ---------------------------------------------------------------------------------------
# small phantoms from calcscope.synth
# ---------------------------------------------------------------------------------------

import calcscope.synth as synth  # noqa: E402


def _phantom_run(preset, phase, seed, shape=(56, 128, 128), spacing=(3.0, 2.0, 2.0)):
    ph = synth.generate_phantom(preset, seed=seed, shape_zyx=shape, spacing_zyx=spacing, phase=phase)
    liver = ph.organs == 1
    dt = ndi.distance_transform_edt(~liver, sampling=ph.volume.spacing_zyx)
    margin = (dt > 0) & (dt <= 3.0) & (ph.organs > 0)
    det = find_calcifications(ph.volume, liver, phase=phase, margin=margin)
    found = describe_calcifications(ph.volume, det.labels, liver=liver, lobes=ph.lobes, margin=margin)
    pattern = calcification_pattern(found, liver_volume_ml=ph.truth.liver_volume_ml)
    return ph, det, found, pattern


def test_phantom_normal_arterial_and_portal_have_no_false_positive():
    for phase, seed in (("arterial", 3), ("portal_venous", 4)):
        ph, det, found, pattern = _phantom_run("normal", phase, seed)
        assert det.count == 0, phase
        assert pattern.distribution is None
        if phase == "portal_venous":
            assert det.vessel_hu == pytest.approx(ph.truth.hu_table["portal"], abs=25.0)


def test_phantom_tuberculosis_and_hydatid():
    ph, det, found, pattern = _phantom_run("tuberculosis", "non_contrast", 5)
    truth = ph.truth.calcifications
    assert pattern.distribution == ph.truth.calcification_distribution == "diffuse_even"
    assert abs(det.count - len(truth)) <= 1
    assert sum(f.shape == "coarse" for f in found) >= 0.9 * len(found)
    ph, det, found, pattern = _phantom_run("hydatid_cyst", "portal_venous", 6)
    assert pattern.distribution == ph.truth.calcification_distribution == "single"
    biggest = max(found, key=lambda f: f.volume_mm3)
    assert biggest.shape == "ring"
    ring = ph.truth.calcifications[0]
    assert biggest.size_mm == pytest.approx(ring.size_mm, rel=0.15)


# ---------------------------------------------------------------------------------------
# volume noise SD
# ---------------------------------------------------------------------------------------

_SD_LIVER_HU = 58.0
_SD_CALCIUM_HU = 500.0
_SD_NOISE_HU = 16.0


def _calibration_scene(spacing, shape_kind, size_mm):
    """A liver block (58 HU) with one calcium object (500 HU, exact partial volume) off the grid:
    a ball of diameter ``size_mm`` or a tilted plaque of ``size_mm`` x ``size_mm`` x ``size_mm / 4``.
    Returns (clean image, liver mask, centre mm)."""
    sp = np.asarray(spacing, float)
    shape = tuple(int(np.ceil(44.0 / s)) for s in sp)
    arr = np.full(shape, _SD_LIVER_HU, np.float32)
    liver = np.zeros(shape, bool)
    liver[1:-1, 1:-1, 1:-1] = True
    c = (np.asarray(shape) - 1) / 2.0 * sp + np.array([0.37, 0.21, -0.13]) * sp
    r = size_mm / 2.0
    if shape_kind == "ball":
        def inside(z, y, x):
            return (z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2 <= r**2
    else:
        rot = np.array([[np.cos(0.5), -np.sin(0.5), 0.0], [np.sin(0.5), np.cos(0.5), 0.0], [0.0, 0.0, 1.0]])
        radii = np.array([r / 4.0, r, r])

        def inside(z, y, x):
            p = np.stack([z - c[0], y - c[1], x - c[2]], -1) @ rot
            return ((p / radii) ** 2).sum(-1) <= 1.0
    paint(arr, sp, inside, c - r, c + r, _SD_CALCIUM_HU)
    return arr, liver, c


def _volumes_over_noise_draws(spacing, shape_kind, size_mm, smooth_vox, draws):
    """(volume mm³, reported SD mm³) of the focus nearest the object, one per noise draw, and
    (calcium content HU·mL, its reported SD) as the third and fourth arrays."""
    arr, liver, c = _calibration_scene(spacing, shape_kind, size_mm)
    vols, sds, contents, content_sds = [], [], [], []
    for seed in range(draws):
        noise = np.random.default_rng(seed).normal(0.0, 1.0, arr.shape)
        if smooth_vox:
            # a soft in-plane reconstruction kernel: neighbouring voxels correlate (0.68 at 1 voxel)
            noise = ndi.gaussian_filter(noise, [0.0, smooth_vox, smooth_vox])
            noise /= noise.std()
        vol = Volume(np.round(arr + _SD_NOISE_HU * noise).astype(np.int16), spacing_zyx=spacing)
        lab = find_calcifications(vol, liver, phase="non_contrast").labels
        ids = np.unique(lab[lab > 0])
        cents = np.asarray(ndi.center_of_mass(lab > 0, lab, ids)) * np.asarray(spacing)
        k = ids[int(np.argmin(np.linalg.norm(cents - c, axis=1)))]
        (f,) = describe_calcifications(vol, (lab == k).astype(np.int32), liver=liver, lobes=None)
        vols.append(f.volume_mm3)
        sds.append(f.measurements["volume_sd_mm3"])
        contents.append(f.measurements["calcium_content_hu_ml"])
        content_sds.append(f.measurements["calcium_content_sd_hu_ml"])
    return np.asarray(vols), np.asarray(sds), np.asarray(contents), np.asarray(content_sds)


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (2.5, 1.5, 1.5)])
@pytest.mark.parametrize("smooth_vox", [0.0, 0.8])
def test_reported_calcification_volume_sd_matches_the_spread_over_noise_draws(spacing, smooth_vox):
    """2, 4 and 8 mm calcium balls and an 8 mm plaque (500 HU in 58 HU liver, 16 HU noise), found
    by the detector and described 30 times over fresh noise, white or in-plane smoothed: the
    SD of the volumes over the draws and the mean SD the findings report agree within
    0.6-1.5 (measured 0.67-1.14; the reported SD is conservative for correlated noise
    on large foci, where the calcium level, a maximum over many voxels, moves less than
    modelled).

    The calcium content (summed HU excess, HU·mL) of the same findings: its reported SD
    agrees with its spread as well (measured 0.81-1.23), and its mean is the true content
    (true volume x 442 HU) within 5 % (measured -2.6 to +2.5 %), the 2 mm ball included,
    whose volume reads far too large."""
    for shape_kind, size in (("ball", 2.0), ("ball", 4.0), ("ball", 8.0), ("plaque", 8.0)):
        vols, sds, contents, content_sds = _volumes_over_noise_draws(spacing, shape_kind, size, smooth_vox, draws=30)
        ratio = float(np.std(vols, ddof=1) / np.mean(sds))
        assert 0.6 <= ratio <= 1.5, (shape_kind, size, ratio)
        # each draw's SD is close to the others' (it is a property of the scene, not of the draw)
        assert float(np.std(sds) / np.mean(sds)) < 0.35, (shape_kind, size)
        ratio = float(np.std(contents, ddof=1) / np.mean(content_sds))
        assert 0.6 <= ratio <= 1.5, (shape_kind, size, "content", ratio)
        r = size / 2.0
        true_mm3 = 4.0 / 3.0 * np.pi * r**3 * (0.25 if shape_kind == "plaque" else 1.0)
        true_content = true_mm3 * (_SD_CALCIUM_HU - _SD_LIVER_HU) / 1000.0
        assert float(np.mean(contents)) == pytest.approx(true_content, rel=0.05), (shape_kind, size)


def test_volume_sd_absent_without_noise_and_region_factor():
    from calcscope.describe._calcification import region_sum_factor

    spacing = (2.5, 1.5, 1.5)
    arr, liver, _ = _calibration_scene(spacing, "ball", 6.0)
    vol = Volume(np.round(arr).astype(np.int16), spacing_zyx=spacing)
    det = find_calcifications(vol, liver, phase="non_contrast")
    (f,) = describe_calcifications(vol, det.labels, liver=liver, lobes=None)
    # a noise-free image has no noise model: no SD rather than a false 0
    assert "volume_sd_mm3" not in f.measurements
    assert f.volume_mm3 > 0
    # white noise: a region's summed noise varies like its voxel count; correlated
    # neighbours add their covariances, fewer of them in a thin region than in a block
    block = np.zeros((7, 7, 7), bool)
    block[2:5, 2:5, 2:5] = True
    line = np.zeros((7, 7, 7), bool)
    line[3, 3, :] = True
    assert region_sum_factor(block, np.zeros((3, 2))) == 1.0
    rho = np.array([[0.0, 0.0], [0.5, 0.1], [0.5, 0.1]])
    assert region_sum_factor(line, rho) == pytest.approx(1.0 + (2 * 6 * 0.5 + 2 * 5 * 0.1) / 7)
    assert region_sum_factor(block, rho) > region_sum_factor(line, rho)


def test_calcium_content_does_not_follow_the_grid_position_the_volume_follows():
    """A 4 mm calcium ball (500 HU, scanner blur 0.8 mm) at 12 random sub-voxel positions on
    2.5 x 1.5 x 1.5 mm voxels, 12 HU noise: the volume moves with where the ball lies on the
    grid (its calcium level is a partial-volume peak; measured spread 18 % of its mean), the
    summed HU excess does not (4 %). Follow-up confirms growth on the content for that reason."""
    spacing = (2.5, 1.5, 1.5)
    sp = np.asarray(spacing)
    rng = np.random.default_rng(7)
    vols, contents = [], []
    for _ in range(12):
        shape = tuple(int(np.ceil(44.0 / s)) for s in sp)
        arr = np.full(shape, _SD_LIVER_HU, np.float32)
        liver = np.zeros(shape, bool)
        liver[1:-1, 1:-1, 1:-1] = True
        c = (np.asarray(shape) - 1) / 2.0 * sp + rng.uniform(-0.5, 0.5, 3) * sp

        def inside(z, y, x, c=c):
            return (z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2 <= 2.0**2

        paint(arr, sp, inside, c - 2.0, c + 2.0, _SD_CALCIUM_HU)
        arr = ndi.gaussian_filter(arr - _SD_LIVER_HU, 0.8 / sp) + _SD_LIVER_HU
        vol = Volume(np.round(arr + 12.0 * rng.normal(0.0, 1.0, shape)).astype(np.int16), spacing_zyx=spacing)
        lab = find_calcifications(vol, liver, phase="non_contrast").labels
        assert lab.max() == 1
        (f,) = describe_calcifications(vol, lab, liver=liver, lobes=None)
        vols.append(f.volume_mm3)
        contents.append(f.measurements["calcium_content_hu_ml"])
    cv_volume = float(np.std(vols, ddof=1) / np.mean(vols))
    cv_content = float(np.std(contents, ddof=1) / np.mean(contents))
    assert cv_content < 0.08, cv_content
    assert cv_volume > 2.0 * cv_content, (cv_volume, cv_content)
