"""Enhancement pattern of a lesion read from one contrast phase, and its features."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from calcscope.describe import describe_lesions
from calcscope.model import Finding, FindingsDocument, Volume
from calcscope.reason import reason
from calcscope.reason._features import extract_features

SPACING = (2.0, 1.5, 1.5)
SHAPE = (36, 80, 80)
CENTRE_MM = np.array([36.0, 60.0, 60.0])
RADIUS_MM = 18.0


def _grid_mm():
    zz, yy, xx = np.indices(SHAPE, dtype=np.float32)
    return zz * SPACING[0], yy * SPACING[1], xx * SPACING[2]


def _phantom(*, liver_hu=105.0, lesion_hu=72.0, rim="nodules", rim_hu=165.0, noise_hu=10.0, seed=0):
    """A block of liver with a spherical lesion; 'nodules': 6 enhancing balls in its outer rim,
    'ring': a continuous 3 mm shell, None: neither."""
    z, y, x = _grid_mm()
    r = np.sqrt((z - CENTRE_MM[0]) ** 2 + (y - CENTRE_MM[1]) ** 2 + (x - CENTRE_MM[2]) ** 2)
    img = np.full(SHAPE, liver_hu, np.float32)
    lesion = r <= RADIUS_MM
    img[lesion] = lesion_hu
    if rim == "nodules":
        dirs = [(0, 1, 0), (0, -1, 0), (0, 0, 1), (0.7, 0.7, 0), (-0.7, 0, 0.7), (0, -0.7, -0.7)]
        for d in dirs:
            d = np.asarray(d) / np.linalg.norm(d)
            c = CENTRE_MM + d * (RADIUS_MM - 4.5)
            img[np.sqrt((z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2) <= 3.2] = rim_hu
    elif rim == "ring":
        img[lesion & (r > RADIUS_MM - 3.0)] = rim_hu
    img += np.random.default_rng(seed).normal(0.0, noise_hu, SHAPE).astype(np.float32)
    vol = Volume(array=np.round(img).astype(np.int16), spacing_zyx=SPACING)
    liver = np.zeros(SHAPE, bool)
    liver[2:-2, 4:-4, 4:-4] = True
    return vol, liver, lesion.astype(np.int32)


def _describe(vol, liver, labels, *, phase="portal_venous", blood_pool_hu=164.0, parenchyma_hu=105.0):
    (f,) = describe_lesions(
        vol, labels, liver=liver, lobes=None, parenchyma_hu=parenchyma_hu, noise_hu=10.0, phase=phase,
        blood_pool_hu=blood_pool_hu,
    )
    return f


def test_peripheral_nodules_following_the_blood_pool():
    vol, liver, labels = _phantom()
    f = _describe(vol, liver, labels)
    assert f.enhancement == "peripheral_nodular_centripetal"
    m = f.measurements
    assert m["peripheral_nodules"] == pytest.approx(6, abs=1)
    assert m["peripheral_nodule_peak_hu"] == pytest.approx(165.0, abs=15.0)
    assert 0.05 <= m["peripheral_coverage"] < 0.5
    assert m["enhancement_reference_is_blood_pool"] == 1.0
    # without the blood pool the brightest peripheral nodule is the reference
    g = _describe(vol, liver, labels, blood_pool_hu=None)
    assert g.enhancement == "peripheral_nodular_centripetal"
    assert g.measurements["enhancement_reference_is_blood_pool"] == 0.0


def test_nodules_far_below_the_blood_pool_are_not_vascular():
    vol, liver, labels = _phantom()
    # arterial-phase aorta of 300 HU: 165 HU nodules do not follow it
    f = _describe(vol, liver, labels, phase="arterial", blood_pool_hu=300.0)
    assert f.enhancement != "peripheral_nodular_centripetal"


def test_no_enhancement_claim_without_contrast():
    vol, liver, labels = _phantom()
    assert _describe(vol, liver, labels, phase="non_contrast").enhancement is None


def test_continuous_ring_is_rim_not_nodular():
    vol, liver, labels = _phantom(rim="ring")
    f = _describe(vol, liver, labels)
    assert f.enhancement == "rim"
    assert f.measurements["peripheral_coverage"] >= 0.7


def test_plain_hypodense_lesion_has_no_peripheral_pattern():
    vol, liver, labels = _phantom(rim=None)
    f = _describe(vol, liver, labels)
    assert f.enhancement is None
    assert "peripheral_nodules" not in f.measurements


def test_hyperdense_homogeneous_lesion_in_contrast_phase():
    vol, liver, labels = _phantom(rim=None, lesion_hu=140.0)
    f = _describe(vol, liver, labels)
    assert f.density == "hyperdense"
    assert f.enhancement == "homogeneous"


def _doc(lesion: Finding, calc: Finding) -> FindingsDocument:
    return FindingsDocument(modality="CT", phase="portal_venous", findings=[lesion, calc])


def test_wall_calcification_of_a_solid_lesion_is_peripheral_not_cyst_wall():
    lesion = Finding(id="lesion-001", kind="lesion", size_mm=35.0, density="hypodense")
    calc = Finding(id="calc-001", kind="calcification", size_mm=6.0, parent_id="lesion-001", relation="wall")
    obs = extract_features(_doc(lesion, calc))
    assert obs["calc_lesion_rim"].present is True
    assert obs["calc_cyst_wall"].present is False
    cyst = Finding(id="lesion-001", kind="cyst", size_mm=50.0, density="cystic")
    obs = extract_features(_doc(cyst, calc))
    assert obs["calc_cyst_wall"].present is True


def test_peripheral_nodular_enhancement_favours_hemangioma_with_citation():
    lesion = Finding(
        id="lesion-001", kind="lesion", size_mm=36.0, density="mixed", margin="well_defined",
        enhancement="peripheral_nodular_centripetal",
    )
    calc = Finding(id="calc-001", kind="calcification", size_mm=7.5, shape="coarse", parent_id="lesion-001", relation="centre")
    obs = extract_features(_doc(lesion, calc))
    assert obs["enh_peripheral_nodular"].present is True
    d = reason(_doc(lesion, calc), None)
    assert not d.insufficient_evidence
    assert d.ranked[0].condition_id == "hemangioma"
    items = [e for e in d.ranked[0].evidence_for if e.feature == "enh_peripheral_nodular"]
    assert items and all("seed004" in e.citation or e.citation.startswith("seeds/004") for e in items)


def _supersampled_ball(shape, spacing, centre_mm, radius_mm, *, liver_hu, lesion_hu, noise_hu, seed, k=4):
    """Liver block with a ball voxelised by k^3 supersampling (true partial volume) plus noise."""
    sub = [(np.arange(n * k) + 0.5) / k * s for n, s in zip(shape, spacing)]
    zz, yy, xx = np.meshgrid(*sub, indexing="ij")
    inside = ((zz - centre_mm[0]) ** 2 + (yy - centre_mm[1]) ** 2 + (xx - centre_mm[2]) ** 2) <= radius_mm**2
    frac = inside.reshape(shape[0], k, shape[1], k, shape[2], k).mean(axis=(1, 3, 5))
    img = liver_hu + (lesion_hu - liver_hu) * frac
    img = img + np.random.default_rng(seed).normal(0.0, noise_hu, shape)
    return img.astype(np.float32)


@pytest.mark.parametrize("radius_mm, dz_mm", [(4.0, 3.0), (5.0, 1.0), (6.0, 3.0)])
def test_partial_volume_volume_is_unbiased_on_coarse_grids(radius_mm, dz_mm):
    """Small balls on 1-3 mm slices: the occupancy integral is within 8 % of the analytic
    volume, the half-way-threshold voxel count is not better, and it is kept separately."""
    from calcscope.describe._lesion import partial_volume

    spacing = (dz_mm, 1.5, 1.5)
    shape = (int(round(36 / dz_mm)), 24, 24)
    centre = np.array([18.2, 18.3, 17.6])
    truth = 4.0 / 3.0 * np.pi * radius_mm**3
    errs_pv, errs_thr = [], []
    for seed in range(4):
        img = _supersampled_ball(shape, spacing, centre, radius_mm, liver_hu=105.0, lesion_hu=45.0,
                                 noise_hu=10.0, seed=seed)
        lesion = img < 75.0
        from scipy import ndimage as ndi

        lab, _ = ndi.label(lesion)
        c = tuple(int(v) for v in np.round(centre / np.asarray(spacing) - 0.5))
        lesion = lab == lab[c]
        v_pv = partial_volume(img, lesion, np.ones(shape, bool), spacing, parenchyma_hu=105.0,
                              lesion_hu=45.0, noise_hu=10.0).volume_mm3
        errs_pv.append(v_pv / truth - 1.0)
        errs_thr.append(lesion.sum() * np.prod(spacing) / truth - 1.0)
    assert abs(np.mean(errs_pv)) <= 0.08
    assert max(abs(e) for e in errs_pv) <= 0.15
    assert abs(np.mean(errs_pv)) <= abs(np.mean(errs_thr)) + 0.02


def test_partial_volume_interior_makes_the_volume_robust_to_the_lesion_reference():
    """With the interior counted whole, a lesion reference 3 HU off (the noise of a small
    lesion's mean) moves the volume of a 20 mm ball by clearly less than when every voxel
    is weighed against it (about 3/60 = 5 %); the gain grows with the lesion."""
    from scipy import ndimage as ndi

    from calcscope.describe._lesion import partial_volume

    spacing = (2.5, 1.5, 1.5)
    shape = (20, 36, 36)
    centre = np.array([25.1, 27.2, 26.7])
    radius = 10.0
    truth = 4.0 / 3.0 * np.pi * radius**3
    img = _supersampled_ball(shape, spacing, centre, radius, liver_hu=105.0, lesion_hu=45.0, noise_hu=0.0, seed=0)
    lesion = img < 75.0
    d_in = ndi.distance_transform_edt(lesion, sampling=spacing)
    interior = lesion & (d_in > max(spacing))
    ones = np.ones(shape, bool)
    for off in (-3.0, 3.0):
        whole = partial_volume(img, lesion, ones, spacing, parenchyma_hu=105.0, lesion_hu=45.0 + off, noise_hu=10.0).volume_mm3
        edge = partial_volume(img, lesion, ones, spacing, parenchyma_hu=105.0, lesion_hu=45.0 + off, noise_hu=10.0,
                              interior=interior).volume_mm3
        assert abs(whole / truth - 1.0) >= 0.04
        assert abs(edge / truth - 1.0) <= 0.7 * abs(whole / truth - 1.0)
    exact = partial_volume(img, lesion, ones, spacing, parenchyma_hu=105.0, lesion_hu=45.0, noise_hu=10.0,
                           interior=interior).volume_mm3
    assert exact == pytest.approx(truth, rel=0.03)


def test_partial_volume_capsule_voxels_count_at_most_whole():
    """A voxel of the liver's outer layer that also holds fat reads darker than the lesion:
    it counts at most one voxel, not two."""
    from calcscope.describe._lesion import partial_volume

    img = np.full((3, 3, 3), 100.0, np.float32)
    lesion = np.zeros((3, 3, 3), bool)
    lesion[1, 1, 1] = True
    img[1, 1, 1] = -20.0  # lesion (40 HU) mixed with fat
    capsule = lesion.copy()
    args = dict(parenchyma_hu=100.0, lesion_hu=40.0, noise_hu=5.0)
    assert partial_volume(img, lesion, np.ones_like(lesion), (1.0, 1.0, 1.0), **args).volume_mm3 == pytest.approx(2.0)
    assert partial_volume(img, lesion, np.ones_like(lesion), (1.0, 1.0, 1.0), capsule=capsule, **args).volume_mm3 == pytest.approx(1.0)


def test_partial_volume_without_contrast_falls_back_to_voxel_count():
    from calcscope.describe._lesion import partial_volume

    img = np.full((5, 5, 5), 100.0, np.float32)
    lesion = np.zeros((5, 5, 5), bool)
    lesion[2, 2, 2] = True
    v = partial_volume(img, lesion, np.ones_like(lesion), (2.0, 1.0, 1.0), parenchyma_hu=100.0,
                       lesion_hu=98.0, noise_hu=5.0).volume_mm3
    assert v == pytest.approx(2.0)
    pv = partial_volume(img, lesion, np.ones_like(lesion), (2.0, 1.0, 1.0), parenchyma_hu=100.0,
                        lesion_hu=98.0, noise_hu=5.0)
    assert pv.sd_mm3 is None  # no noise model without contrast: no SD rather than a false 0


def test_describe_reports_partial_volume_and_thresholded_volume():
    """The finding's volume is the occupancy integral; the thresholded count is kept."""
    vol, liver, labels = _phantom(rim=None)
    f = _describe(vol, liver, labels)
    truth = 4.0 / 3.0 * np.pi * RADIUS_MM**3
    assert f.measurements["volume_thresholded_mm3"] == pytest.approx(labels.sum() * np.prod(SPACING), rel=1e-3)
    assert f.volume_mm3 == pytest.approx(f.measurements["volume_partial_volume_mm3"], abs=0.01)
    assert f.volume_mm3 == pytest.approx(truth, rel=0.06)


def _hydatid(*, daughters: bool, seed=0):
    """A 36 mm fluid lesion (22 HU matrix) in a 105 HU liver, with or without four 9 mm
    daughter cysts (6 HU) inside it."""
    z, y, x = _grid_mm()
    r = np.sqrt((z - CENTRE_MM[0]) ** 2 + (y - CENTRE_MM[1]) ** 2 + (x - CENTRE_MM[2]) ** 2)
    img = np.full(SHAPE, 105.0, np.float32)
    lesion = r <= RADIUS_MM
    img[lesion] = 22.0
    if daughters:
        for d in [(0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1)]:
            c = CENTRE_MM + np.asarray(d, float) * 8.5
            img[np.sqrt((z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2) <= 4.5] = 6.0
    img += np.random.default_rng(seed).normal(0.0, 10.0, SHAPE).astype(np.float32)
    vol = Volume(array=np.round(img).astype(np.int16), spacing_zyx=SPACING)
    liver = np.zeros(SHAPE, bool)
    liver[2:-2, 4:-4, 4:-4] = True
    return vol, liver, lesion.astype(np.int32)


@pytest.mark.parametrize("phase", ["non_contrast", "portal_venous"])
def test_daughter_cysts_make_a_complex_cyst(phase):
    vol, liver, labels = _hydatid(daughters=True)
    f = _describe(vol, liver, labels, phase=phase)
    assert f.kind == "cyst" and f.density == "mixed"
    assert "daughter_cysts" in f.signs
    assert f.measurements["locules"] >= 2
    assert f.measurements["locule_contrast_hu"] >= 8.0
    # the sign reaches the reasoning stage as the feature the knowledge base scores
    doc = FindingsDocument(findings=[f], modality="CT", phase=phase)
    assert extract_features(doc)["sign_daughter_cysts"].present is True


def test_uniform_fluid_lesion_has_no_daughter_cysts():
    vol, liver, labels = _hydatid(daughters=False)
    f = _describe(vol, liver, labels)
    assert "daughter_cysts" not in f.signs
    assert f.measurements.get("locules", 0) == 0


def test_nodules_beyond_an_undersegmented_edge_still_count():
    # the hypodense segmentation leaves out the bright nodules and a margin around them: the
    # nodules then lie up to about 5 mm outside the label and must still be read
    from scipy import ndimage as ndi

    vol, liver, labels = _phantom(noise_hu=1.0)
    nodules = (np.asarray(vol.array) > 120) & (labels > 0)
    carved = (labels > 0) & ~ndi.binary_dilation(nodules, iterations=3)
    f = _describe(vol, liver, carved.astype(np.int32))
    assert f.enhancement == "peripheral_nodular_centripetal"
    assert f.measurements["peripheral_nodules"] >= 2


def test_noise_correlation_factor_white_and_smoothed():
    """White noise sums like n SD²; in-plane smoothed noise (a soft kernel) sums to more."""
    from scipy import ndimage as ndi

    from calcscope.describe._lesion import noise_correlation_factor

    rng = np.random.default_rng(3)
    white = rng.normal(100.0, 15.0, (12, 40, 40))
    sel = np.ones(white.shape, bool)
    assert noise_correlation_factor(white, sel) == pytest.approx(1.0, abs=0.15)
    soft = ndi.gaussian_filter(rng.normal(0.0, 1.0, (12, 40, 40)), [0.0, 1.0, 1.0])
    soft = 100.0 + 15.0 * soft / soft.std()
    # Var(sum)/(n SD²) of a 1-voxel Gaussian blur in 2-D is about (2 sqrt(pi))² = 12.6; lags 1-2 catch most of it
    assert noise_correlation_factor(soft, sel) >= 4.0
    assert noise_correlation_factor(white, np.zeros_like(sel)) == 1.0


@pytest.mark.parametrize("smooth_vox", [0.0, 0.8])
def test_reported_volume_sd_matches_the_spread_over_noise_draws(smooth_vox):
    """A 17 mm lesion at 16 HU noise on 2.5 mm slices, 20 noise draws: the SD each finding
    reports is within a factor 1.5 of the SD its volume actually shows, with white noise
    and with in-plane correlated noise (which the reported SD must follow)."""
    from scipy import ndimage as ndi

    spacing, shape, centre, radius = (2.5, 1.5, 1.5), (16, 36, 36), np.array([20.1, 27.2, 26.7]), 8.5
    clean = _supersampled_ball(shape, spacing, centre, radius, liver_hu=105.0, lesion_hu=62.0, noise_hu=0.0, seed=0)
    vols, sds = [], []
    for seed in range(20):
        noise = np.random.default_rng(seed).normal(0.0, 1.0, shape)
        if smooth_vox:
            noise = ndi.gaussian_filter(noise, [0.0, smooth_vox, smooth_vox])
            noise /= noise.std()
        img = clean + 16.0 * noise
        lab, _ = ndi.label(ndi.gaussian_filter(img, [0.5, 0.8, 0.8]) < 83.5)
        c = tuple(int(v) for v in np.round(centre / np.asarray(spacing) - 0.5))
        vol = Volume(array=np.round(img).astype(np.int16), spacing_zyx=spacing)
        (f,) = describe_lesions(vol, (lab == lab[c]).astype(np.int32), liver=np.ones(shape, bool), lobes=None,
                                parenchyma_hu=105.0, noise_hu=16.0, phase="portal_venous", blood_pool_hu=164.0)
        vols.append(f.volume_mm3)
        sds.append(f.measurements["volume_sd_mm3"])
    ratio = float(np.std(vols)) / float(np.mean(sds))
    assert 1 / 1.5 <= ratio <= 1.5
    truth = 4.0 / 3.0 * np.pi * radius**3
    assert abs(float(np.mean(vols)) / truth - 1.0) <= 0.03


def _fluid_sphere(daughters: list[tuple[tuple[float, float, float], float]], *, contrast_hu: float, seed: int):
    """60 mm, 28 HU sphere on 3 mm voxels with 12 HU noise, and darker daughter spheres (centre mm, radius mm)."""
    sp = np.array([3.0, 3.0, 3.0])
    n = 26
    zz, yy, xx = (np.indices((n, n, n)) - (n - 1) / 2) * sp[:, None, None, None]
    soft = np.sqrt(zz**2 + yy**2 + xx**2) <= 30.0
    img = np.full(soft.shape, 28.0)
    for (cz, cy, cx), r in daughters:
        img[np.sqrt((zz - cz) ** 2 + (yy - cy) ** 2 + (xx - cx) ** 2) <= r] -= contrast_hu
    img += np.random.default_rng(seed).normal(0.0, 12.0, img.shape)
    d_in = ndi.distance_transform_edt(soft, sampling=sp)
    return img.astype(np.float32), soft, d_in, tuple(sp)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_noise_in_a_large_homogeneous_lesion_is_not_read_as_daughter_cysts(seed):
    """A 60 mm homogeneous 28 HU mass on 3 mm voxels at 12 HU noise: its noise pockets reach 2.5
    smoothed-noise SD many times over; the locule margin grows with the number of values searched."""
    from calcscope.describe._lesion import LesionThresholds, _locules_and_septa

    img, soft, d_in, sp = _fluid_sphere([], contrast_hu=0.0, seed=seed)
    out = _locules_and_septa(img, soft, d_in, sp, noise_hu=12.0, th=LesionThresholds)
    assert out["locules"] == 0


def test_clear_daughter_cysts_are_still_found_on_a_coarse_noisy_grid():
    from calcscope.describe._lesion import LesionThresholds, _locules_and_septa

    daughters = [((-12.0, -12.0, 0.0), 6.0), ((12.0, 12.0, 0.0), 6.0), ((0.0, 12.0, -12.0), 6.0)]
    img, soft, d_in, sp = _fluid_sphere(daughters, contrast_hu=26.0, seed=0)
    out = _locules_and_septa(img, soft, d_in, sp, noise_hu=12.0, th=LesionThresholds)
    assert out["locules"] >= 2
