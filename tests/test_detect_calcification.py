"""Detection of calcified foci on small hand-made volumes and on the real negative controls."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi

from calcscope.detect import find_calcifications
from calcscope.detect._calcification import PHASE_FLOOR_HU, threshold_rule
from calcscope.model import Phase, Volume

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "totalseg-example-ct"


# ---------------------------------------------------------------------------------------
# hand-made volumes with exact partial volume (supersampled occupancy)
# ---------------------------------------------------------------------------------------


def _grid_mm(shape, spacing, sl, sub):
    """Supersampled mm coordinates (z, y, x) of the voxels of a crop (sub^3 per voxel)."""
    offs = (np.arange(sub) + 0.5) / sub - 0.5
    axes = []
    for ax in range(3):
        idx = np.arange(sl[ax].start, sl[ax].stop)
        axes.append(((idx[:, None] + offs[None, :]) * spacing[ax]).ravel())
    return np.meshgrid(*axes, indexing="ij")


def paint(arr, spacing, inside, lo_mm, hi_mm, hu, *, sub=5):
    """Blend ``hu`` into ``arr`` with the occupancy of the implicit shape ``inside(z, y, x)``."""
    sp = np.asarray(spacing, float)
    lo = np.maximum(np.floor(np.asarray(lo_mm) / sp).astype(int) - 1, 0)
    hi = np.minimum(np.ceil(np.asarray(hi_mm) / sp).astype(int) + 2, arr.shape)
    sl = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    z, y, x = _grid_mm(arr.shape, sp, sl, sub)
    occ = inside(z, y, x).astype(np.float32)
    shape = tuple(s.stop - s.start for s in sl)
    occ = occ.reshape(shape[0], sub, shape[1], sub, shape[2], sub).mean(axis=(1, 3, 5))
    arr[sl] = arr[sl] * (1 - occ) + hu * occ
    return occ


def ball(arr, spacing, centre_mm, radius_mm, hu):
    c = np.asarray(centre_mm, float)
    return paint(
        arr, spacing,
        lambda z, y, x: (z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2 <= radius_mm**2,
        c - radius_mm, c + radius_mm, hu,
    )


def tube(arr, spacing, p0_mm, p1_mm, radius_mm, hu):
    p0 = np.asarray(p0_mm, float)
    p1 = np.asarray(p1_mm, float)
    d = p1 - p0
    L2 = float(d @ d)

    def inside(z, y, x):
        t = np.clip(((z - p0[0]) * d[0] + (y - p0[1]) * d[1] + (x - p0[2]) * d[2]) / L2, 0, 1)
        return (z - p0[0] - t * d[0]) ** 2 + (y - p0[1] - t * d[1]) ** 2 + (x - p0[2] - t * d[2]) ** 2 <= radius_mm**2

    return paint(arr, spacing, inside, np.minimum(p0, p1) - radius_mm, np.maximum(p0, p1) + radius_mm, hu)


def liver_case(shape=(40, 96, 96), spacing=(2.5, 0.8, 0.8), liver_hu=58.0, noise=10.0, seed=0):
    """Body of fat with an ellipsoidal 'liver'; returns (array float32, liver mask, margin)."""
    sp = np.asarray(spacing)
    idx = np.indices(shape).astype(np.float32)
    centre = (np.asarray(shape) - 1) / 2.0
    semi = (np.asarray(shape) * sp) * np.array([0.42, 0.42, 0.42])
    r2 = sum(((idx[i] - centre[i]) * sp[i] / semi[i]) ** 2 for i in range(3))
    liver = r2 <= 1.0
    arr = np.full(shape, -100.0, np.float32)
    arr[liver] = liver_hu
    dt = ndi.distance_transform_edt(~liver, sampling=spacing)
    margin = (dt > 0) & (dt <= 3.0)
    return arr, liver, margin


def finish(arr, spacing, noise=10.0, seed=0):
    rng = np.random.default_rng(seed)
    out = arr + rng.normal(0, noise, arr.shape).astype(np.float32)
    return Volume(np.round(out).astype(np.int16), spacing_zyx=spacing)


def centre_mm(shape, spacing):
    return (np.asarray(shape) - 1) / 2.0 * np.asarray(spacing)


# ---------------------------------------------------------------------------------------
# threshold rule
# ---------------------------------------------------------------------------------------


def test_threshold_rule_terms():
    # non-contrast: Agatston floor governs when the liver is quiet
    assert threshold_rule("non_contrast", 55.0, 10.0, None) == (130.0, "phase floor")
    # noisy non-contrast: parenchyma + 5 SD
    thr, rule = threshold_rule("non_contrast", 55.0, 20.0, None)
    assert thr == pytest.approx(155.0) and rule == "parenchyma"
    # portal phase: vessel pool + 5 SD
    thr, rule = threshold_rule("portal_venous", 105.0, 12.0, 180.0)
    assert thr == pytest.approx(240.0) and rule == "vessel pool"
    assert PHASE_FLOOR_HU["non_contrast"] == 130.0


# ---------------------------------------------------------------------------------------
# detection on hand-made volumes
# ---------------------------------------------------------------------------------------


def test_ball_found_with_centroid_and_order():
    spacing = (2.5, 0.8, 0.8)
    arr, liver, margin = liver_case(spacing=spacing)
    c = centre_mm(arr.shape, spacing)
    ball(arr, spacing, c + [10, -8, -10], 3.0, 600.0)  # last in z
    ball(arr, spacing, c + [0, -12, 6], 2.0, 500.0)
    ball(arr, spacing, c + [-15, 10, 0], 2.5, 700.0)  # first in z
    vol = finish(arr, spacing)
    det = find_calcifications(vol, liver, phase=Phase.NON_CONTRAST, margin=margin)
    assert det.count == 3
    assert det.threshold_hu == pytest.approx(130.0)
    assert det.vessels is None
    cents = ndi.center_of_mass(det.labels > 0, det.labels, [1, 2, 3])
    cents = np.asarray(cents) * np.asarray(spacing)
    expected = np.array([c + [-15, 10, 0], c + [0, -12, 6], c + [10, -8, -10]])
    assert np.allclose(cents, expected, atol=1.0)


def test_one_cubic_mm_focus_found():
    spacing = (0.8, 0.8, 0.8)
    arr, liver, margin = liver_case(shape=(64, 64, 64), spacing=spacing)
    r = (3 * 1.0 / (4 * np.pi)) ** (1 / 3)  # 1 mm^3 ball
    ball(arr, spacing, centre_mm(arr.shape, spacing) + 0.13, r, 1000.0)
    vol = finish(arr, spacing)
    det = find_calcifications(vol, liver, phase="non_contrast", margin=margin)
    assert det.count == 1


def test_noise_only_gives_nothing_in_any_phase():
    spacing = (2.5, 0.8, 0.8)
    for phase, liver_hu in (("non_contrast", 58.0), ("portal_venous", 105.0), ("arterial", 70.0), ("delayed", 88.0)):
        arr, liver, margin = liver_case(spacing=spacing, liver_hu=liver_hu)
        vol = finish(arr, spacing, noise=14.0, seed=3)
        det = find_calcifications(vol, liver, phase=phase, margin=margin)
        assert det.count == 0, phase


def _vessel_tree(arr, spacing, hu, c):
    tube(arr, spacing, c + [-30, -25, -20], c + [30, 20, 15], 3.0, hu)
    tube(arr, spacing, c + [0, -2, -2], c + [20, -25, 20], 2.0, hu)
    tube(arr, spacing, c + [-10, -10, -10], c + [-30, 20, 5], 1.5, hu)


def test_enhanced_vessel_tree_rejected_in_portal_phase_and_calcification_kept():
    spacing = (2.5, 0.8, 0.8)
    arr, liver, margin = liver_case(spacing=spacing, liver_hu=105.0)
    c = centre_mm(arr.shape, spacing)
    _vessel_tree(arr, spacing, 300.0, c)
    ball(arr, spacing, c + [5, 15, -15], 2.5, 800.0)
    vol = finish(arr, spacing, noise=12.0)
    det = find_calcifications(vol, liver, phase=Phase.PORTAL_VENOUS, margin=margin)
    assert det.count == 1
    assert det.vessel_hu == pytest.approx(300.0, abs=25.0)
    assert det.threshold_hu > 300.0
    # the recognised vessel tree covers most of the main tube's axis
    axis_pts = [c + t * np.array([60, 45, 35]) + [-30, -25, -20] for t in np.linspace(0.1, 0.9, 9)]
    idx = np.round(np.asarray(axis_pts) / np.asarray(spacing)).astype(int)
    assert det.vessels[tuple(idx.T)].mean() >= 0.8
    cen = np.asarray(ndi.center_of_mass(det.labels == 1)) * np.asarray(spacing)
    assert np.allclose(cen, c + [5, 15, -15], atol=1.0)


def _faint_focus(arr, spacing, centre, peak_hu, liver_hu):
    """A 1 mm-radius calcium ball whose partial-volume peak (noise-free) is ``peak_hu``."""
    probe = np.zeros_like(arr)
    occ = ball(probe, spacing, centre, 1.0, 1.0)
    hu = liver_hu + (peak_hu - liver_hu) / float(occ.max())
    ball(arr, spacing, centre, 1.0, hu)
    return hu


def _focus_case(phase, focus_offsets, *, liver_hu=105.0, vessel_hu=200.0, peak_hu=240.0, mass=None):
    """Liver with a vessel tree and faint foci; ``mass`` = (centre offset mm, radius mm, HU)
    paints a hypodense ball first."""
    spacing = (2.5, 0.8, 0.8)
    arr, liver, margin = liver_case(spacing=spacing, liver_hu=liver_hu)
    c = centre_mm(arr.shape, spacing)
    _vessel_tree(arr, spacing, vessel_hu, c)
    if mass is not None:
        ball(arr, spacing, c + np.asarray(mass[0], float), mass[1], mass[2])
    for off in focus_offsets:
        _faint_focus(arr, spacing, c + off, peak_hu, liver_hu)
    vol = finish(arr, spacing, noise=12.0)
    return find_calcifications(vol, liver, phase=phase, margin=margin), c, spacing


def test_isolated_partial_volume_focus_below_vessel_threshold_found_in_portal_phase():
    """A calcification whose partial-volume peak (240 HU) lies below the vessel-pool
    threshold but well above the pool is kept by the compact-focus rule when it is isolated."""
    det, c, spacing = _focus_case("portal_venous", [[5, 15, -15]])
    assert det.threshold_hu > 250.0  # the main pass cannot reach it (peak 240 HU)
    assert det.count == 1
    cen = np.asarray(ndi.center_of_mass(det.labels == 1)) * np.asarray(spacing)
    assert np.allclose(cen, c + [5, 15, -15], atol=1.5)
    # the vessel tree itself stays out
    assert not (det.labels[det.vessels] > 0).any()


def test_faint_focus_touching_a_vessel_not_kept_by_the_compact_rule():
    """The same focus 2 mm from the edge of the 3 mm main vessel: the vessel tree lies
    within the clearance, so it cannot be told from a vessel branch and is left out
    (counted as focus_context)."""
    # a point 5 mm from the main tube's axis (radius 3 mm)
    d = np.array([60, 45, 35], float)
    p = np.array([-30, -25, -20]) + 0.5 * d
    n = np.cross(d, [0.0, 0.0, 1.0])
    n /= np.linalg.norm(n)
    det, _, _ = _focus_case("portal_venous", [p + 5.0 * n])
    assert det.count == 0
    assert det.rejected["focus_context"] >= 1


ARTERIAL = dict(liver_hu=70.0, vessel_hu=130.0, peak_hu=250.0)


def test_isolated_partial_volume_focus_found_in_arterial_phase():
    """Arterial phase: a focus whose partial-volume peak (250 HU) stays under the 320 HU
    floor is kept by the compact-focus rule when it is isolated in parenchyma."""
    det, c, spacing = _focus_case("arterial", [[5, 15, -15]], **ARTERIAL)
    assert det.threshold_hu >= 320.0
    assert det.count == 1
    assert det.rejected["focus_surround"] == 0
    cen = np.asarray(ndi.center_of_mass(det.labels == 1)) * np.asarray(spacing)
    assert np.allclose(cen, c + [5, 15, -15], atol=1.5)


def test_arterial_focus_on_the_edge_of_a_hypodense_mass_not_kept():
    """The same focus on the edge of a hypodense mass (45 HU in 70 HU liver), as the
    peripheral enhancing nodule of a haemangioma lies: left out as ``focus_surround``."""
    det, _, _ = _focus_case("arterial", [[5, 15, -15]], mass=([15, 15, -15], 9.0, 45.0), **ARTERIAL)
    assert det.count == 0
    assert det.rejected["focus_surround"] == 1


def test_arterial_compact_focus_needs_nine_noise_sd_above_parenchyma(monkeypatch):
    """Arterial seed: 9 noise SD above parenchyma (6 in the other phases); an isolated focus
    about 7.5 SD above the 70 HU parenchyma (160 HU, above the pool seed) is not kept, and
    would be with the 6 SD seed."""
    import calcscope.detect._calcification as calc

    assert calc.focus_seed_rule(70.0, 12.0, 130.0, "arterial") == pytest.approx(70.0 + 9 * 12.0)
    assert calc.focus_seed_rule(70.0, 12.0, 100.0, "portal_venous") == pytest.approx(70.0 + 6 * 12.0)
    case = dict(liver_hu=70.0, vessel_hu=130.0, peak_hu=160.0)
    det, _, _ = _focus_case("arterial", [[5, 15, -15]], **case)
    assert det.count == 0
    monkeypatch.setattr(calc, "K_FOCUS_PARENCHYMA_ARTERIAL", calc.K_FOCUS_PARENCHYMA)
    det, _, _ = _focus_case("arterial", [[5, 15, -15]], **case)
    assert det.count == 1


def test_compact_focus_rule_not_used_on_unknown_phase():
    """An unknown phase is treated like the arterial one but without the compact rule."""
    det, _, _ = _focus_case("unknown", [[5, 15, -15]], **ARTERIAL)
    assert det.count == 0
    assert "focus_context" not in det.rejected


def test_bright_artery_segment_rejected_as_vessel_by_shape():
    """An arterial-phase artery brighter than the main vessel pool is tubular and lies
    in the vessel tree: rejected as 'vessel', while a compact focus is kept."""
    spacing = (2.5, 0.8, 0.8)
    arr, liver, margin = liver_case(spacing=spacing, liver_hu=70.0)
    c = centre_mm(arr.shape, spacing)
    _vessel_tree(arr, spacing, 130.0, c)  # portal tree
    # a bright hepatic artery running along the main portal branch, touching it
    tube(arr, spacing, c + [-24, -22, -13], c + [24, 14, 15], 1.2, 420.0)
    ball(arr, spacing, c + [10, -18, 18], 2.5, 700.0)
    vol = finish(arr, spacing, noise=12.0)
    det = find_calcifications(vol, liver, phase="arterial", margin=margin)
    assert det.count == 1
    assert det.rejected["vessel"] >= 1


def test_extrahepatic_bone_touching_margin_rejected_and_capsular_focus_kept():
    spacing = (2.5, 0.8, 0.8)
    arr, liver, margin = liver_case(spacing=spacing)
    c = centre_mm(arr.shape, spacing)
    semi = np.asarray(arr.shape) * np.asarray(spacing) * 0.42
    # a "rib" outside the liver just grazing the margin along x
    tube(arr, spacing, c + [0, -semi[1] - 3.5, -30], c + [0, -semi[1] - 3.5, 30], 2.5, 700.0)
    # a capsular focus straddling the surface on the other side
    ball(arr, spacing, c + [0, semi[1] - 0.5, 0], 1.5, 600.0)
    vol = finish(arr, spacing)
    det = find_calcifications(vol, liver, phase="non_contrast", margin=margin)
    assert det.count == 1
    assert det.rejected["extrahepatic"] >= 1
    cen = np.asarray(ndi.center_of_mass(det.labels == 1)) * np.asarray(spacing)
    assert cen[1] > c[1] + semi[1] - 3


def test_streak_in_one_slice_with_dark_banding_rejected():
    spacing = (2.5, 0.8, 0.8)
    arr, liver, margin = liver_case(spacing=spacing)
    c = centre_mm(arr.shape, spacing)
    z = int(round(c[0] / spacing[0]))
    yy = int(round(c[1] / spacing[1]))
    arr[z, yy, 30:66] = 400.0  # bright streak line
    arr[z, yy - 2 : yy, 30:66] = -60.0  # dark bands either side
    arr[z, yy + 1 : yy + 3, 30:66] = -60.0
    vol = finish(arr, spacing)
    det = find_calcifications(vol, liver, phase="non_contrast", margin=margin)
    assert det.count == 0
    assert det.rejected["streak"] == 1


def test_min_volume_and_given_threshold():
    spacing = (1.0, 1.0, 1.0)
    arr, liver, margin = liver_case(shape=(48, 48, 48), spacing=spacing)
    ball(arr, spacing, centre_mm(arr.shape, spacing), 1.5, 600.0)
    vol = finish(arr, spacing, noise=5.0)
    assert find_calcifications(vol, liver, phase="non_contrast").count == 1
    big = find_calcifications(vol, liver, phase="non_contrast", min_volume_mm3=200.0)
    assert big.count == 0 and big.rejected["small"] == 1
    given = find_calcifications(vol, liver, phase="non_contrast", threshold_hu=700.0)
    assert given.count == 0 and given.threshold_hu == 700.0 and given.rule == "given"


def test_empty_liver_returns_empty_labels():
    vol = Volume(np.zeros((8, 8, 8), np.int16), spacing_zyx=(1, 1, 1))
    det = find_calcifications(vol, np.zeros((8, 8, 8), bool), phase="portal_venous")
    assert det.count == 0 and det.labels.dtype == np.int32


# ---------------------------------------------------------------------------------------
# real CT negative controls
# ---------------------------------------------------------------------------------------


def _margin(vol, liver, mm=3.0):
    dt = ndi.distance_transform_edt(~liver, sampling=vol.spacing_zyx)
    return (dt > 0) & (dt <= mm) & (vol.array > -500)


@pytest.mark.shared
def test_real_noncontrast_ct_has_no_liver_calcification():
    if not (DATA / "example_ct.nii.gz").exists():
        pytest.skip("../shared/data/totalseg-example-ct not present")
    from calcscope.io import load_ct, load_mask_like

    vol = load_ct(DATA / "example_ct.nii.gz")
    liver = load_mask_like(DATA / "example_seg_fast_force_split.nii.gz", vol) == 5
    det = find_calcifications(vol, liver, phase="non_contrast", margin=_margin(vol, liver))
    assert det.count == 0
    assert det.threshold_hu == pytest.approx(130.0)


@pytest.mark.shared
def test_real_contrast_dicom_has_no_liver_calcification():
    if not (DATA / "example_ct_dicom").is_dir():
        pytest.skip("../shared/data/totalseg-example-ct/example_ct_dicom not present")
    from calcscope.io import load_ct, load_mask_like

    vol = load_ct(DATA / "example_ct_dicom")
    liver = load_mask_like(DATA / "example_seg_dicom.nii.gz", vol) == 5
    for phase in ("portal_venous", "arterial", "delayed", "unknown"):
        det = find_calcifications(vol, liver, phase=phase, margin=_margin(vol, liver))
        assert det.count == 0, phase
        assert det.threshold_hu > 181.0  # brightest liver voxel of this scan is 181 HU


@pytest.mark.shared
def test_calcifications_inserted_into_real_ct_are_found():
    if not (DATA / "example_ct_dicom").is_dir() or not (DATA / "example_ct.nii.gz").exists():
        pytest.skip("../shared/data/totalseg-example-ct not present")
    import calcscope.synth as synth
    from calcscope.io import load_ct, load_mask_like

    cases = [
        (DATA / "example_ct.nii.gz", DATA / "example_seg_fast_force_split.nii.gz", "non_contrast"),
        (DATA / "example_ct_dicom", DATA / "example_seg_dicom.nii.gz", "portal_venous"),
    ]
    specs = [
        synth.ObjectSpec(type="calcification", subtype="coarse", size_mm=8.0, hu=600.0),
        synth.ObjectSpec(type="calcification", subtype="coarse", size_mm=6.5, hu=700.0),
        synth.ObjectSpec(type="calcification", subtype="linear", size_mm=12.0, thickness_mm=2.5, hu=650.0),
    ]
    for ct, seg, phase in cases:
        vol = load_ct(ct)
        liver = load_mask_like(seg, vol) == 5
        v2, labels, objs = synth.insert_objects(vol, liver, specs, seed=11)
        det = find_calcifications(v2, liver, phase=phase, margin=_margin(vol, liver))
        assert det.count == len(objs), ct.name
        for o in objs:
            assert np.any(det.labels[labels == o.label] > 0), (ct.name, o.id)


def _noisy_arteries(seed=1, noise=34.0):
    """Arterial-phase liver at CT-angiogram noise (34 HU) with two 3 mm arteries (280 HU)
    brighter than the portal tree (130 HU) and one 3 mm calcification (700 HU)."""
    spacing = (1.5, 1.5, 1.5)
    arr, liver, margin = liver_case(shape=(60, 80, 80), spacing=spacing, liver_hu=70.0)
    c = centre_mm(arr.shape, spacing)
    _vessel_tree(arr, spacing, 130.0, c)
    tube(arr, spacing, c + [-30, 20, -25], c + [30, 5, 25], 1.5, 280.0)
    tube(arr, spacing, c + [-30, -20, 25], c + [30, -5, -20], 1.5, 280.0)
    ball(arr, spacing, c + [10, -18, 18], 1.5, 700.0)
    return finish(arr, spacing, noise=noise, seed=seed), liver, margin, c


def test_noise_peaks_of_arteries_rejected_and_calcification_kept(monkeypatch):
    """In a noisy arterial scan single-voxel noise peaks of arteries brighter than the
    measured pool cross the threshold; they are explained by the sub-threshold artery they
    lie on (``noise_on_vessel``), while the calcification stands out and is kept."""
    import calcscope.detect._calcification as calc

    vol, liver, margin, c = _noisy_arteries()
    det = find_calcifications(vol, liver, phase="arterial", margin=margin)
    assert det.count == 1
    assert det.rejected["noise_on_vessel"] >= 2
    cen = np.asarray(ndi.center_of_mass(det.labels == 1)) * 1.5
    assert np.allclose(cen, c + [10, -18, 18], atol=1.5)
    # the same scan without the test: the artery noise peaks are reported as calcifications
    monkeypatch.setattr(calc, "_noise_on_vessel", lambda *a, **k: False)
    assert find_calcifications(vol, liver, phase="arterial", margin=margin).count >= 3


def _structure_case(structure_hu, focus_hu, noise=34.0, seed=0):
    """A 40 mm tube (radius 2 mm) in 70 HU parenchyma with a one-voxel focus on its axis."""
    from calcscope.detect._calcification import _noise_on_vessel

    rng = np.random.default_rng(seed)
    sp = np.array([1.5, 1.5, 1.5])
    arr = np.full((30, 30, 30), 70.0, np.float32)
    tube(arr, sp, [22.5, 22.5, 2.0], [22.5, 22.5, 43.0], 2.0, structure_hu)
    arr += rng.normal(0, noise, arr.shape).astype(np.float32)
    arr[15, 15, 15] = focus_hu
    smooth = ndi.gaussian_filter(arr, sigma=1.0 / sp, mode="nearest")
    return _noise_on_vessel(arr, smooth, np.array([[15, 15, 15]]), sp, 70.0, noise, 340.0)


def test_noise_on_vessel_rule_separates_blood_from_calcium():
    # a noise peak (380 HU) on a 250 HU artery: explained by the artery
    assert _structure_case(250.0, 380.0)
    # a calcification (900 HU) on the same artery stands out of its noise
    assert not _structure_case(250.0, 900.0)
    # a partial-volume piece of a calcified septum (360 HU) on a septum that is itself above
    # the threshold in places: calcified, not blood, so the rule does not apply
    assert not _structure_case(330.0, 360.0)
    # a focus in plain parenchyma has no structure around it
    assert not _structure_case(70.0, 380.0)


@pytest.mark.parametrize("beyond, is_bone", [("rib", True), ("fat", False), ("vein", False)])
def test_piece_of_a_rib_in_the_margin_is_told_from_a_capsular_focus(beyond, is_bone):
    """On a coarse contrast-phase grid a rib's cortex breaks at the hysteresis level (the vessel
    pool + 3.5 SD) and a piece may lie in the capsular margin. Grown outside the liver through
    voxels above parenchyma + 3.5 SD, a rib brings more voxels above the threshold beyond the margin
    than the piece holds; fat, or an enhanced vein (blood under the threshold), does not."""
    from calcscope.detect._calcification import _continues_into_bone

    spacing = np.array([3.0, 3.0, 3.0])
    a = np.full((20, 20, 20), 100.0)
    liver = np.zeros(a.shape, bool)
    liver[:, :10] = True
    region = liver.copy()
    region[:, 10] = True  # one-voxel capsular margin
    piece = np.zeros(a.shape, bool)
    piece[9:11, 10, 9:11] = True
    a[piece] = 300.0
    a[:, 11:] = -100.0  # fat beyond the margin
    if beyond == "rib":
        a[8:12, 11, 10] = 180.0  # the cortex between the piece and the rib: above 150, below 250
        a[6:14, 12, 5:15] = 320.0
    elif beyond == "vein":
        a[4:16, 11:15, 8:12] = 180.0
    sl = tuple(slice(int(i.min()), int(i.max()) + 1) for i in np.nonzero(piece))
    got = _continues_into_bone(a, piece[sl], sl, liver, region, spacing, level_hu=150.0, threshold_hu=250.0)
    assert got is is_bone
