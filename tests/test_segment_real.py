"""Liver segmentation and phase estimate on the real reference CTs in ../shared/data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from calcscope.io import load_ct, load_mask_like
from calcscope.model import Phase
from calcscope.segment import estimate_phase, segment_liver

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TS = DATA / "totalseg-example-ct"
DCMQI = DATA / "dcmqi-ct3slice-liver"

# (case id, CT, reference mask, liver label, minimum Dice, expected phase)
# Minimum Dice = measured value minus about 0.006-0.008 (docs/segmentation.md lists the measurements:
# 0.921, 0.958, 0.920).
CASES = [
    ("noncontrast_nifti", TS / "example_ct.nii.gz", TS / "example_seg_fast_force_split.nii.gz", 5, 0.915, Phase.NON_CONTRAST),
    ("contrast_dicom", TS / "example_ct_dicom", TS / "example_seg_dicom.nii.gz", 5, 0.95, Phase.PORTAL_VENOUS),
    # the dcmqi reference outline lies 3-5 mm outside the liver edge (fat included), which caps Dice
    ("dcmqi_3slice", DCMQI / "ct-3slice", DCMQI / "liver_seg.nrrd", 1, 0.912, Phase.NON_CONTRAST),
]


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / (a.sum() + b.sum()))


@pytest.fixture(scope="module")
def results():
    if not TS.is_dir() or not DCMQI.is_dir():
        pytest.skip("shared reference data (../shared/data) not available")
    out = {}
    for name, ct, ref, label, _, _ in CASES:
        vol = load_ct(ct)
        truth = load_mask_like(ref, vol) == label
        out[name] = (vol, truth, segment_liver(vol, capsular_margin_mm=3.0))
    return out


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_dice_against_reference(results, case):
    name, *_, min_dice, _ = case
    vol, truth, seg = results[name]
    assert seg.mask.dtype == bool and seg.mask.shape == vol.shape
    assert _dice(seg.mask, truth) >= min_dice


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_volume_and_summary(results, case):
    name = case[0]
    vol, truth, seg = results[name]
    ref_ml = truth.sum() * vol.voxel_volume_mm3 / 1000
    s = seg.summary
    assert s.method == "classical"
    assert abs(s.volume_ml - ref_ml) / ref_ml < 0.25
    assert s.right_lobe_ml + s.left_lobe_ml == pytest.approx(s.volume_ml, abs=0.2)
    assert s.right_lobe_ml > s.left_lobe_ml
    assert s.hu_iqr[0] <= s.hu_median <= s.hu_iqr[1]
    assert s.capsular_margin_mm == 3.0


def test_margin_is_a_thin_shell_outside_the_liver(results):
    vol, _, seg = results["contrast_dicom"]
    from scipy import ndimage as ndi

    assert not (seg.margin & seg.mask).any()
    dist = ndi.distance_transform_edt(~seg.mask, sampling=vol.spacing_zyx)
    assert dist[seg.margin].max() <= 3.0 + 1e-6
    assert (vol.array[seg.margin] > -500).all()  # never in lung or bowel air
    # a 3 mm shell around a ~700 mL liver (20 partial slices) holds tens of mL
    assert 20 < seg.margin.sum() * vol.voxel_volume_mm3 / 1000 < 300


def test_liver_hu_measured(results):
    # non-contrast liver about 45 HU (MANIFEST), contrast liver about 93 HU
    assert results["noncontrast_nifti"][2].summary.hu_median == pytest.approx(46, abs=6)
    assert results["contrast_dicom"][2].summary.hu_median == pytest.approx(93, abs=6)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_phase_estimate(results, case):
    name, *_, expected = case
    vol, _, seg = results[name]
    est = estimate_phase(vol, seg.mask)
    assert est.phase == expected
    assert est.source == "estimated" and est.reason
    assert est.liver_hu is not None


def test_phase_values_on_contrast_case(results):
    vol, _, seg = results["contrast_dicom"]
    est = estimate_phase(vol, seg.mask)
    # TotalSegmentator's aorta label measures a median of 151 HU on this series
    assert est.aorta_hu == pytest.approx(151, abs=25)
    assert est.portal_vein_hu > est.liver_hu


def test_phase_values_on_noncontrast_case(results):
    vol, _, seg = results["noncontrast_nifti"]
    est = estimate_phase(vol, seg.mask)
    # the aorta of this scan is about 42 HU (TotalSegmentator's aorta label: median 41 HU); the
    # osteopenic vertebral body in front of which it lies must not be read instead (it is ~100 HU)
    assert est.aorta_hu == pytest.approx(42, abs=8)
    assert est.liver_hu == pytest.approx(47, abs=5)


def test_equal_density_neighbours_mostly_outside(results):
    # TotalSegmentator labels of the non-contrast case: stomach 6, gallbladder 4, IVC 63, bowel 18-20
    vol, _, seg = results["noncontrast_nifti"]
    labels = load_mask_like(TS / "example_seg_fast_force_split.nii.gz", vol)
    limits = {6: 0.06, 4: 0.06, 63: 0.14, 18: 0.01, 19: 0.01, 20: 0.01}  # measured 0.03, 0.02, 0.11, 0, 0, 0
    for label, limit in limits.items():
        organ = labels == label
        assert (seg.mask & organ).sum() / organ.sum() <= limit, label


def test_vessels_inside_on_contrast_case(results):
    # TotalSegmentator labels of the contrast series: IVC 63, portal/splenic vein 64, stomach 6, colon 20.
    # The IVC enhances like the liver here (88-100 against 91-94 HU) and the portal vein segment
    # enclosed by parenchyma is closed in; the series starts inside the liver, so there is no IVC below
    # it to track up from; docs/segmentation.md explains. Measured: 0.61, 0.96, 0.01, 0.
    vol, _, seg = results["contrast_dicom"]
    labels = load_mask_like(TS / "example_seg_dicom.nii.gz", vol)
    limits = {63: 0.64, 64: 0.98, 6: 0.02, 20: 0.01}
    for label, limit in limits.items():
        organ = labels == label
        assert organ.sum() > 0, label
        assert (seg.mask & organ).sum() / organ.sum() <= limit, label


def test_dcmqi_shortfall_is_the_reference_rim(results):
    # The dcmqi outline is drawn 3-8 mm outside the liver edge (fat, diaphragm, the partial-volume rim).
    # Our mask adds nothing outside it, and what it leaves out is mostly below 0 HU, not liver density.
    # Measured (docs/segmentation.md, failure modes): false positives 0.002 % of the mask, missed 14.2 %
    # of the reference, 68 % of that below 0 HU, missed voxels of liver density (>= median - 15 HU) 2.1 %
    # of the reference (pixel noise included).
    vol, truth, seg = results["dcmqi_3slice"]
    hu = vol.array
    missed = truth & ~seg.mask
    assert (seg.mask & ~truth).sum() <= 0.005 * seg.mask.sum()
    assert (missed & (hu < 0)).sum() >= 0.55 * missed.sum()
    liver_hu = float(np.median(hu[seg.mask]))
    assert (missed & (hu >= liver_hu - 15)).sum() <= 0.04 * truth.sum()


def test_no_mask_warning_on_the_real_cases(results):
    """The real scans' livers are denser than their unenhanced blood: no warning."""
    from calcscope.segment import automatic_mask_warnings

    for name, *_ in CASES:
        vol, _, seg = results[name]
        assert automatic_mask_warnings(seg.summary.method, estimate_phase(vol, seg.mask)) == [], name


def test_fatty_liver_without_contrast_is_flagged_with_the_readings_it_rests_on(abdomen_variants):
    """The real non-contrast abdomen with its liver label lowered to below blood (as a fatty
    liver reads): the automatic mask runs into the aorta and IVC (bench/eval_segment_variants.py),
    and the pipeline says so; the same scan as it is carries no such warning."""
    from calcscope.pipeline import analyze_volume

    variants, vol, labels = abdomen_variants
    fatty, _ = variants.make_variant(vol, labels, "non_contrast", fat_hu=10.0)
    res = analyze_volume(fatty, timestamp=False)
    an = res.analysis
    assert an.phase.phase == Phase.NON_CONTRAST
    assert an.phase.liver_hu <= an.phase.aorta_hu < 90
    msg = [w for w in an.warnings if "no denser than the unenhanced blood" in w]
    assert len(msg) == 1
    assert f"{an.phase.liver_hu:.0f} HU" in msg[0] and "--liver-mask" in msg[0]
    plain = analyze_volume(vol, timestamp=False)
    assert not any("no denser than the unenhanced blood" in w for w in plain.analysis.warnings)
    # a user's mask is the user's: no warning about the automatic one
    user = analyze_volume(fatty, timestamp=False, liver_mask=labels == 5)
    assert not any("no denser than the unenhanced blood" in w for w in user.analysis.warnings)


def test_mask_warning_rule():
    from calcscope.model import PhaseEstimate
    from calcscope.segment import automatic_mask_warnings

    def pe(aorta, liver, phase=Phase.NON_CONTRAST):
        return PhaseEstimate(phase=phase, aorta_hu=aorta, liver_hu=liver)

    assert automatic_mask_warnings("classical", pe(41.0, 47.0)) == []  # healthy liver above blood
    assert len(automatic_mask_warnings("classical", pe(41.0, 40.0))) == 1
    assert len(automatic_mask_warnings("classical", pe(42.0, 15.0, Phase.UNKNOWN))) == 1  # phase unread, blood unenhanced
    assert automatic_mask_warnings("classical", pe(165.0, 60.0, Phase.PORTAL_VENOUS)) == []  # enhanced aorta: not blood vs liver
    assert automatic_mask_warnings("classical", pe(None, 20.0)) == []
    assert automatic_mask_warnings("user_mask", pe(41.0, 30.0)) == []
    assert automatic_mask_warnings("totalsegmentator", pe(41.0, 30.0)) == []


def _mass_near_surface(variants, vol, labels, diameter_mm: float, hu: float, phase: str = "portal_venous"):
    """``phase`` variant of the real abdomen with a ``diameter_mm`` sphere centred on the liver
    surface at mid height, lateral right lobe (half of it outside the liver label)."""
    from scipy import ndimage as ndi

    liver = labels == variants.LIVER
    base, _ = variants.make_variant(vol, labels, phase)
    depth = ndi.distance_transform_edt(liver, sampling=vol.spacing_zyx)
    zs = np.nonzero(liver.any(axis=(1, 2)))[0]
    z = int(zs[0] + len(zs) // 2)
    # the surface voxel on that slice farthest from the body's midline: lateral right lobe
    ys, xs = np.nonzero((depth[z] > 0) & (depth[z] < 4))
    xc = 0.5 * (xs.min() + xs.max())
    k = int(np.argmax(np.abs(xs - xc)))
    return variants.paint_mass(base, (z, int(ys[k]), int(xs[k])), diameter_mm, hu, seed=5)


def test_large_mass_at_the_liver_surface_is_inside_the_automatic_mask(abdomen_variants):
    """A 50 mm hypoenhancing mass (50 HU against a 97 HU portal-venous liver) centred on the
    surface: the growth stops at it; it used to be left out (2-13 % inside, bench/
    eval_segment_variants.py --masses) and so was never reported."""
    from calcscope.pipeline import analyze_volume

    variants, vol, labels = abdomen_variants
    v, mass = _mass_near_surface(variants, vol, labels, 50.0, 50.0)
    res = analyze_volume(v, timestamp=False, phase="portal_venous")
    assert (mass & res.masks.liver).sum() / mass.sum() > 0.9
    taken = [n for n in res.analysis.liver.notes if "taken into the mask" in n]
    assert len(taken) == 1
    hits = [f for f in res.analysis.findings
            if f.centroid_voxel is not None and mass[tuple(int(round(c)) for c in f.centroid_voxel)]]
    assert [f.kind for f in hits] == ["lesion"]


def test_bowel_and_stomach_against_the_liver_stay_outside(abdomen_variants):
    """Portal-venous abdomen without a mass: the fluid-filled colon under the liver tip
    (32 HU) and the stomach (57 HU) are darker than the liver and touch it, but border it over
    4-6 % of their surface (masses: 16-57 %); neither is taken in."""
    variants, vol, labels = abdomen_variants
    v, lab = variants.make_variant(vol, labels, "portal_venous")
    seg = segment_liver(v)
    assert not any("taken into the mask" in n for n in seg.summary.notes)
    for organ, ids in (("stomach", [6]), ("colon", [20])):  # TotalSegmentator "total" labels
        inside = (seg.mask & np.isin(lab, ids)).sum() / np.isin(lab, ids).sum()
        assert inside < 0.02, organ


@pytest.mark.parametrize("phase", ["non_contrast", "portal_venous"])
def test_gallbladder_cut_by_the_scan_edge_stays_outside(abdomen_variants, phase):
    """A scan that ends at the gallbladder fossa: the top of the gallbladder borders the liver all
    round (70 % of its surface within 6 mm), like a cyst inside it; its cut face on the scan's edge
    keeps it out (89-92 % of it was taken in before that test)."""
    variants, vol, labels = abdomen_variants
    v, lab = variants.make_variant(vol, labels, phase, fov="upper_liver")
    gb = lab == 4  # TotalSegmentator "total": gallbladder
    assert gb[0].any()  # the scan's first slice cuts it
    seg = segment_liver(v)
    assert (seg.mask & gb).sum() / gb.sum() < 0.1
    assert not any("surrounded by the liver" in n for n in seg.summary.notes)


def test_calcified_cyst_at_the_liver_surface_is_inside_the_mask_and_reported(abdomen_variants):
    """A 60 mm fluid cyst (10 HU) with a 2 mm calcified wall (450 HU) centred on the liver surface of
    the real non-contrast abdomen, the eggshell the seeds tie to hydatid disease: the growth stopped
    at the wall and the cyst was left out whole, with no finding at all (0 findings before)."""
    from scipy import ndimage as ndi

    from calcscope.pipeline import analyze_volume

    variants, vol, labels = abdomen_variants
    liver = labels == variants.LIVER
    base, _ = variants.make_variant(vol, labels, "non_contrast")
    sp = np.asarray(vol.spacing_zyx)
    depth = ndi.distance_transform_edt(liver, sampling=sp)
    zs = np.nonzero(liver.any(axis=(1, 2)))[0]
    z = int(zs[0] + len(zs) // 2)
    ys, xs = np.nonzero((depth[z] > 0) & (depth[z] < 4))
    k = int(np.argmax(np.abs(xs - 0.5 * (xs.min() + xs.max()))))
    centre = np.array([z, ys[k], xs[k]])
    r = np.sqrt((((np.moveaxis(np.indices(liver.shape), 0, -1) - centre) * sp) ** 2).sum(-1))
    a = base.array.astype(np.float32)
    cyst, wall = r <= 30.0, (r > 30.0) & (r <= 32.0)
    a[cyst] = 10.0 + np.random.default_rng(0).normal(0.0, 12.0, int(cyst.sum()))
    a[wall] = 450.0
    res = analyze_volume(variants._volume_like(base, a, "calcified cyst"), timestamp=False, phase="non_contrast")
    assert (cyst & res.masks.liver).sum() / cyst.sum() > 0.9
    assert any("walled by calcium" in n for n in res.analysis.liver.notes)
    kinds = [f.kind for f in res.analysis.findings]
    assert "calcification" in kinds and ("cyst" in kinds or "lesion" in kinds)


@pytest.mark.parametrize("phase", ["non_contrast", "portal_venous"])
def test_simple_cyst_deep_in_the_liver_is_inside_the_mask_and_reported(abdomen_variants, phase):
    """A 50 mm simple cyst (10 HU) painted where the real liver is deepest: its lower pole nears the
    tapering lateral surface and it touches veins, so it was no hole to fill; 24 % (non-contrast)
    and 11 % (portal venous) of it were inside the mask and nothing was reported."""
    from scipy import ndimage as ndi

    from calcscope.pipeline import analyze_volume

    variants, vol, labels = abdomen_variants
    liver = labels == variants.LIVER
    sp = np.asarray(vol.spacing_zyx)
    depth = ndi.distance_transform_edt(np.pad(liver, 1), sampling=sp)[1:-1, 1:-1, 1:-1]
    centre = np.array(np.unravel_index(int(np.argmax(depth)), depth.shape))
    assert depth[tuple(centre)] > 28.0  # the cyst lies inside the reference liver
    r = np.sqrt((((np.moveaxis(np.indices(liver.shape), 0, -1) - centre) * sp) ** 2).sum(-1))
    w = np.clip(25.5 - r, 0.0, 1.0)
    base, _ = variants.make_variant(vol, labels, phase)
    a = base.array.astype(np.float32)
    a = a * (1 - w) + (10.0 + np.random.default_rng(7).normal(0.0, 12.0, a.shape)) * w
    res = analyze_volume(variants._volume_like(base, a, "simple cyst"), timestamp=False, phase=phase)
    cyst = w > 0.5
    assert (cyst & res.masks.liver).sum() / cyst.sum() > 0.9
    assert any("surrounded by the liver" in n for n in res.analysis.liver.notes)
    found = [f for f in res.analysis.findings if f.kind == "cyst"
             and np.linalg.norm((np.asarray(f.centroid_voxel) - centre) * sp) < 10.0]
    assert len(found) == 1 and 40.0 < found[0].size_mm < 70.0
    # and nothing else: the cyst raised the calcification noise estimate by 11 % in the portal
    # phase, a rib's cortex broke into a piece in the capsular margin and was reported
    assert len(res.analysis.findings) == 1
    assert res.analysis.differential.ranked[0].condition_id == "simple_cyst"


@pytest.mark.parametrize("case", ["plain", "eggshell"])
def test_cyst_in_the_real_abdomen_is_measured_and_read_as_a_cyst(abdomen_variants, case):
    """50 mm cysts in the real non-contrast abdomen (3 mm voxels). ``plain``: placed where the
    cyst touches a fissure of about 23 HU, which the lesion's half-contrast level followed
    (76 mm before). ``eggshell``: a 2 mm calcified wall; its outer partial-volume voxels, the
    diagonal neighbours of the calcium, counted as texture (11 HU) and the cyst read as a
    mixed lesion with "healed abscess" first."""
    from calcscope.pipeline import analyze_volume

    variants, vol, labels = abdomen_variants
    if case == "plain":
        centre = np.array([100, 43, 94])
    else:
        liver = labels == variants.LIVER
        from scipy import ndimage as ndi

        depth = ndi.distance_transform_edt(np.pad(liver, 1), sampling=vol.spacing_zyx)[1:-1, 1:-1, 1:-1]
        centre = np.array(np.unravel_index(int(np.argmax(depth)), depth.shape))
    base, _ = variants.make_variant(vol, labels, "non_contrast")
    painted, cyst = variants.paint_cyst(base, centre, 25.0, case == "eggshell", 7)
    res = analyze_volume(painted, timestamp=False, phase="non_contrast")
    sp = np.asarray(vol.spacing_zyx)
    (found,) = [f for f in res.analysis.findings if f.kind in ("cyst", "lesion")
                and np.linalg.norm((np.asarray(f.centroid_voxel) - centre) * sp) < 10.0]
    assert found.kind == "cyst" and found.density == "cystic"
    # 50 mm fluid, 54 mm with the wall, plus a voxel of partial volume and at most 5 mm of a sheet
    assert 48.0 < found.size_mm < (60.0 if case == "plain" else 62.0)
    expected = "simple_cyst" if case == "plain" else "hydatid_cyst"
    assert res.analysis.differential.ranked[0].condition_id == expected


def _analyse_painted(abdomen_variants, phase: str, paint):
    """``analyze`` of the ``phase`` variant of the real abdomen with an object painted into it.

    ``paint(variants, base)`` returns ``(volume, object_mask)``; returns ``(result, object_mask)``
    after checking that more than 90 % of the object lies inside the automatic liver mask."""
    from calcscope.pipeline import analyze_volume

    variants, vol, labels = abdomen_variants
    base, _ = variants.make_variant(vol, labels, phase)
    painted, obj = paint(variants, base)
    res = analyze_volume(painted, timestamp=False, phase=phase)
    assert (obj & res.masks.liver).sum() / obj.sum() > 0.9
    return res, obj


def test_cyst_against_the_kidney_is_taken_by_its_deepest_part(abdomen_variants):
    """A 50 mm simple cyst painted where the real liver is 23 mm deep (99 % of it inside the
    reference liver) reaches the right kidney, whose unenhanced parenchyma lies in the same fluid
    window: the two made one 139 mL fluid body with 42 % of its surface near the liver, so 15 %
    of the cyst was inside the mask and an 8 mm "cyst" was reported. The body's ball-shaped part
    around its deepest point (55 mL, 89 % near the liver) is tested on its own."""
    _, vol, labels = abdomen_variants
    centre = np.array([100, 42, 92])
    res, _ = _analyse_painted(abdomen_variants, "non_contrast", lambda v, base: v.paint_cyst(base, centre, 25.0, False, 7))
    kidney = labels == 2  # TotalSegmentator's right kidney
    assert (kidney & res.masks.liver).sum() / kidney.sum() < 0.02
    sp = np.asarray(vol.spacing_zyx)
    (found,) = [f for f in res.analysis.findings if np.linalg.norm((np.asarray(f.centroid_voxel) - centre) * sp) < 10.0]
    assert found.kind == "cyst" and 48.0 < found.size_mm < 62.0


def test_low_contrast_mass_without_contrast_is_inside_the_mask_and_reported(abdomen_variants):
    """A 60 mm mass 19 HU darker than the real non-contrast liver (28 HU, 12 HU noise; the
    "inside" row of bench/eval_segment_variants.py --masses): the mass is 9 % of the sample
    the liver's spread is read from and widened it (10 -> 16 HU), which put the window for darker
    masses against the liver below the mass itself (23 HU): 61 % of it was in the mask and
    nothing was reported. The window now takes the spread of the peak's bright side."""
    centre = np.array([99, 47, 88])
    res, mass = _analyse_painted(abdomen_variants, "non_contrast", lambda v, base: v.paint_mass(base, centre, 60.0, 28.0, seed=3))
    assert any("mass of" in n and "taken into the mask" in n for n in res.analysis.liver.notes)
    hits = [f for f in res.analysis.findings
            if f.centroid_voxel is not None and mass[tuple(int(round(c)) for c in f.centroid_voxel)]]
    assert [f.kind for f in hits] == ["lesion"]
    lesion = res.masks.label_map() == hits[0].label
    assert (lesion & mass).sum() / lesion.sum() > 0.8  # the finding is the mass


def test_eggshell_cyst_at_the_surface_is_taken_with_its_wall_in_the_portal_phase(abdomen_variants):
    """A 50 mm cyst with a 2 mm 450 HU wall in the portal-venous variant of the real abdomen, where
    it reaches the liver's lateral surface (the last row of ``--cysts``): the 3 mm smoothing that the
    fluid window reads spread the wall into the fluid (median 19 HU for a 10 HU cyst), so only the
    cyst's inner half was fluid, its surface touched no calcium (wall share 0.08): 5 % of the cyst
    was in the mask and five findings were reported around it. The fluid window now reads an image
    smoothed without the calcium."""
    _, vol, _ = abdomen_variants
    centre = np.array([100, 43, 94])
    res, _ = _analyse_painted(abdomen_variants, "portal_venous", lambda v, base: v.paint_cyst(base, centre, 25.0, True, 8))
    assert any("walled by calcium" in n for n in res.analysis.liver.notes)
    sp = np.asarray(vol.spacing_zyx)
    near = [f for f in res.analysis.findings if f.kind in ("cyst", "lesion")
            and np.linalg.norm((np.asarray(f.centroid_voxel) - centre) * sp) < 10.0]
    assert [f.kind for f in near] == ["cyst"]
    assert len(res.analysis.findings) <= 2  # the cyst and its wall's calcification
    assert res.analysis.differential.ranked[0].condition_id == "hydatid_cyst"
