"""Grid helpers of calcscope.segment: block means, mask reduction, mm morphology in bounding boxes."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from calcscope.segment._grid import block_reduce_mask, block_reduce_mean, dilate_mm, erode_mm
from calcscope.segment._landmarks import IVC_FROM_AORTA_MM, AortaFit, find_ivc, track_ivc


def _reference_block_mean(arr: np.ndarray, factors: tuple[int, int, int]) -> np.ndarray:
    pads = [(0, (-n) % f) for n, f in zip(arr.shape, factors)]
    a = np.pad(arr, pads, mode="edge").astype(np.float64)
    z, y, x = a.shape
    fz, fy, fx = factors
    return a.reshape(z // fz, fz, y // fy, fy, x // fx, fx).mean(axis=(1, 3, 5))


@pytest.mark.parametrize("dtype", [np.int16, np.float32, np.uint8])
@pytest.mark.parametrize("factors", [(1, 1, 1), (2, 3, 3), (1, 4, 4), (3, 2, 1)])
def test_block_reduce_mean_matches_padded_mean(dtype, factors):
    rng = np.random.default_rng(3)
    arr = rng.integers(-1000, 1000, (7, 10, 9)).astype(dtype) if dtype != np.uint8 else (rng.random((7, 10, 9)) > 0.5).astype(np.uint8)
    out = block_reduce_mean(arr, factors)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, _reference_block_mean(arr, factors), rtol=0, atol=1e-3)
    # flipped views are read without a copy and give the flipped result
    np.testing.assert_allclose(block_reduce_mean(arr[:, ::-1], factors), _reference_block_mean(arr[:, ::-1], factors), atol=1e-3)


def test_block_reduce_mask_equals_whole_grid_reduction():
    mask = np.zeros((30, 41, 37), bool)
    mask[5:17, 9:30, 11:20] = True
    mask[20, 3, 36] = True
    for level in (0.5, 0.0):
        expected = block_reduce_mean(mask.view(np.uint8), (2, 4, 4)) > level
        np.testing.assert_array_equal(block_reduce_mask(mask, (2, 4, 4), level=level), expected)
    assert not block_reduce_mask(np.zeros((8, 8, 8), bool), (2, 2, 2)).any()


def test_erode_and_dilate_are_mm_balls():
    sp = (2.0, 1.0, 1.0)
    mask = np.zeros((21, 41, 41), bool)
    mask[10, 20, 20] = True
    ball = dilate_mm(mask, 6.0, sp)
    zz, yy, xx = np.nonzero(ball)
    r = np.sqrt(((zz - 10) * 2.0) ** 2 + (yy - 20.0) ** 2 + (xx - 20.0) ** 2)
    assert r.max() <= 6.0 and ball.sum() == pytest.approx(4 / 3 * np.pi * 6.0**3 / 2.0, rel=0.08)
    # erosion in the bounding box equals erosion on the whole grid
    big = dilate_mm(mask, 9.0, sp)
    whole = ndi.distance_transform_edt(big, sampling=sp) > 4.0
    np.testing.assert_array_equal(erode_mm(big, 4.0, sp), whole)
    # at the first/last slice the anatomy is assumed to continue (border replicated)
    slab = np.zeros((6, 20, 20), bool)
    slab[:, 5:15, 5:15] = True
    assert erode_mm(slab, 3.0, (2.0, 1.0, 1.0))[0].sum() == 4 * 4


def test_find_ivc_disc_right_of_the_aorta():
    # a 22 mm IVC at 40 HU right of a 30 mm aorta, in liver at 60 HU, 1.5 mm pixels
    sp = (2.5, 1.5, 1.5)
    img = np.full((6, 120, 120), 60.0, np.float32)
    yy, xx = np.mgrid[0:120, 0:120]
    ay, ax = 60.0, 80.0
    iy, ix = ay + IVC_FROM_AORTA_MM[0] / sp[1], ax + IVC_FROM_AORTA_MM[1] / sp[2]
    disc = ((yy - iy) * sp[1]) ** 2 + ((xx - ix) * sp[2]) ** 2 <= 11.0**2
    img[:, disc] = 40.0
    aorta = AortaFit(hu=45.0, centre_yx=(ay, ax), radius_mm=6.0, slices=6)
    ivc = find_ivc(img, (0, 5), aorta, sp, liver_hu=60.0, min_gap_hu=8.0)
    for z in range(6):
        assert (ivc[z] & disc).sum() / disc.sum() >= 0.95
        assert (ivc[z] & ~disc).sum() == 0
    # an IVC enhanced like the liver cannot be told apart: nothing is returned
    same = np.full_like(img, 60.0)
    assert not find_ivc(same, (0, 5), aorta, sp, liver_hu=60.0, min_gap_hu=8.0).any()


def _tube_scene(ivc_hu: float, liver_hu: float):
    """Fat with a 22 mm IVC tube right of the aorta; a liver block encloses it from slice 10 up."""
    rng = np.random.default_rng(0)
    sp = (2.5, 3.0, 3.0)
    nz, ny, nx = 30, 60, 60
    img = np.full((nz, ny, nx), -100.0, np.float32)
    yy, xx = np.mgrid[0:ny, 0:nx]
    ay, ax = 30.0, 45.0
    iy, ix = ay + IVC_FROM_AORTA_MM[0] / sp[1], ax + IVC_FROM_AORTA_MM[1] / sp[2]
    disc = ((yy - iy) * sp[1]) ** 2 + ((xx - ix) * sp[2]) ** 2 <= 11.0**2
    block = (np.abs(yy - iy) * sp[1] <= 30.0) & (xx * sp[2] <= (ix * sp[2] + 20.0))
    liver = np.zeros(img.shape, bool)
    liver[10:, block] = True
    img[liver] = liver_hu
    img[:, disc] = ivc_hu
    img += rng.normal(0, 3.0, img.shape).astype(np.float32)
    aorta = AortaFit(hu=max(ivc_hu, 120.0), centre_yx=(ay, ax), radius_mm=6.0, slices=nz)
    return img, liver, np.ones(img.shape, bool), aorta, sp, disc


def test_track_ivc_follows_the_tube_into_the_liver():
    # the IVC differs from liver (110 against 90 HU): it is seen on every liver slice
    img, liver, body, aorta, sp, disc = _tube_scene(110.0, 90.0)
    t = track_ivc(img, liver, body, aorta, sp, liver_hu=90.0, min_gap_hu=8.0)
    assert t is not None and abs(t.hu - 110.0) < 10
    assert (t.source[10:] == 2).all()
    rim = ndi.binary_dilation(disc, iterations=1)
    for z in range(10, 30):
        assert (t.mask[z] & disc).sum() >= 0.8 * disc.sum()
        assert (t.mask[z] & ~rim).sum() == 0


def test_track_ivc_carries_the_shape_a_limited_height_where_it_matches_the_liver():
    # equal enhancement (92 against 90 HU): above the last slice where the tube was seen, its
    # cross-section is carried up for max_predict_mm (15 mm = 6 slices of 2.5 mm), then the track ends
    img, liver, body, aorta, sp, disc = _tube_scene(92.0, 90.0)
    t = track_ivc(img, liver, body, aorta, sp, liver_hu=90.0, min_gap_hu=8.0)
    assert t is not None
    assert (t.source[10:16] == 3).all() and (t.source[16:] == 0).all()
    for z in range(10, 16):
        assert (t.mask[z] & disc).sum() >= 0.8 * disc.sum()
    # a scan that starts inside the liver offers no seed
    assert track_ivc(img[10:], liver[10:], body[10:], aorta, sp, liver_hu=90.0) is None


def test_fat_interface_ring_adds_only_mostly_liver_voxels_next_to_fat():
    from calcscope.segment._classical import _add_fat_interface_ring

    img = np.full((12, 30, 30), -100.0, np.float32)  # fat
    img[2:10, 5:25, 5:25] = 60.0  # liver block; its outer layer holds the partial-volume voxels
    mask = np.zeros(img.shape, bool)
    mask[3:9, 6:24, 6:24] = True
    img[2:10, 5:25, 5] = 0.0  # -x face: 0 HU, above the midpoint (60 - 100) / 2 = -20: mostly liver
    img[2:10, 5:25, 24] = -50.0  # +x face: below the midpoint: mostly fat
    img[2:10, 25:29, 5:25] = 50.0  # +y face borders muscle, not fat ...
    img[3:9, 24, 6:24] = 55.0  # ... so its boundary layer has no fat neighbour and stays out
    img[5, 10, 5] = 250.0  # a bright vessel at the fat interface is not liver
    before = mask.copy()
    notes: list[str] = []
    n = _add_fat_interface_ring(
        mask, img, liver_hu=60.0, upper_hu=120.0, fat_threshold_hu=-40.0, fat_window_hu=(-200.0, -40.0),
        min_fat_voxels=10, notes=notes,
    )
    added = mask & ~before
    assert n == int(added.sum()) > 0
    assert added[3:9, 6:24, 5].sum() >= 0.9 * (6 * 18 - 1)  # the 0 HU face joins (except the vessel)
    assert not added[5, 10, 5]
    assert not added[:, :, 24].any()  # the -50 HU face stays out
    assert not added[:, 24, 7:23].any()  # the layer against muscle stays out (its corners touch the fat face)
    assert notes and "-20 HU" in notes[0]
    # too little fat to measure it: nothing is changed
    m2 = before.copy()
    assert _add_fat_interface_ring(
        m2, np.where(img < -40, 40.0, img), liver_hu=60.0, upper_hu=120.0, fat_threshold_hu=-40.0,
        fat_window_hu=(-200.0, -40.0), min_fat_voxels=10,
    ) == 0
    assert (m2 == before).all()


def _mass_scene(extra: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 2.5 mm working grid: a liver slab (100 HU) over soft tissue, plus a 50 HU ``extra``:
    ``"mass"`` a 40 mm ball centred on the slab's surface, ``"tube"`` a 30 mm bowel-like tube
    running 150 mm down from under the slab."""
    sp = (2.5, 2.5, 2.5)
    z, y, x = np.indices((100, 60, 60)) * 2.5
    img = np.full(z.shape, -100.0)  # fat
    liver = z >= 150.0
    img[liver] = 100.0
    if extra == "mass":
        ball = (z - 150) ** 2 + (y - 75) ** 2 + (x - 75) ** 2 <= 20.0**2
        img[ball] = 50.0
        liver &= ~ball
    else:
        img[((y - 75) ** 2 + (x - 75) ** 2 <= 15.0**2) & (z < 150)] = 50.0
    return img, liver, np.ones(z.shape, bool)


@pytest.mark.parametrize("extra, taken", [("mass", True), ("tube", False)])
def test_attached_mass_rule_takes_a_ball_and_leaves_a_tube(extra, taken):
    """The mass half-embedded in the liver borders it over a large share of its surface; the
    tube touches it with its end only. The tube's whole length counts: cut short by a box
    around the liver, a piece of bowel looks like a ball (the real portal-venous abdomen's
    colon read 16 % liver share in a 30 mm box, 4 % in full)."""
    from calcscope.segment._classical import _attached_masses

    img, liver, allowed = _mass_scene(extra)
    add, found = _attached_masses(img, img, liver, allowed, (2.5, 2.5, 2.5), max_hu=80.0, min_hu=20.0,
                                  radius_mm=10.0, min_liver_share=0.15)
    assert len(found) == 1
    assert found[0]["accepted"] is taken
    assert bool(add.any()) is taken
    if taken:
        assert 25.0 < found[0]["volume_ml"] < 36.0  # the whole 33.5 mL ball, not its embedded half
        assert not (add & liver).any()


@pytest.mark.parametrize("calcified", [True, False])
def test_fluid_mass_against_the_liver_is_taken_only_inside_a_calcified_wall(calcified):
    """A 40 mm fluid ball (10 HU) half-embedded in the liver: the gallbladder looks the same unless
    a calcified wall surrounds it (the eggshell of a hydatid cyst); the wall, which lies between
    the fluid and the liver, then belongs to the mass and is taken with it."""
    from calcscope.segment._classical import _attached_masses

    sp = (2.5, 2.5, 2.5)
    z, y, x = np.indices((100, 60, 60)) * 2.5
    img = np.full(z.shape, -100.0)
    liver = z >= 150.0
    img[liver] = 100.0
    r = np.sqrt((z - 150) ** 2 + (y - 75) ** 2 + (x - 75) ** 2)
    img[r <= 20.0] = 10.0
    if calcified:
        img[(r > 20.0) & (r <= 22.5)] = 400.0
    liver &= r > (22.5 if calcified else 20.0)
    add, found = _attached_masses(img, img, liver, np.ones(z.shape, bool), sp, max_hu=20.0, min_hu=-10.0,
                                  radius_mm=10.0, min_liver_share=0.15, wall=img > 200.0, min_wall_share=0.3)
    assert len(found) == 1
    assert found[0]["accepted"] is calcified
    if calcified:
        assert found[0]["wall_share"] > 0.9 and found[0]["liver_share"] > 0.3
        assert add[(r <= 20.0)].mean() > 0.95 and add[(r > 20.0) & (r <= 22.5)].mean() > 0.5
    else:
        assert found[0]["wall_share"] == 0.0 and not add.any()


def _cyst_scene(where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A liver block with a 40 mm fluid ball (10 HU) and the band of partial volume the growth
    leaves around it (two voxels of 55 HU, not liver); ``where`` = "inside" (the band reaches the
    outside only through a 5 mm vein), "half_out" (the ball's centre on the liver surface) or
    "scan_edge" (inside, but the ball is cut by the scan's first slice)."""
    sp = (2.5, 2.5, 2.5)
    z, y, x = np.indices((80, 60, 60)) * 2.5
    cz = {"inside": 100.0, "half_out": 50.0, "scan_edge": 10.0}[where]
    img = np.full(z.shape, -100.0)
    liver = z >= (50.0 if where == "half_out" else 0.0)
    r = np.sqrt((z - cz) ** 2 + (y - 75) ** 2 + (x - 75) ** 2)
    vein = (np.hypot(z - cz, y - 75) <= 2.5) & (x > 75)
    liver &= (r > 25.0) & ~vein
    img[liver] = 100.0
    img[(r <= 25.0) | vein] = 55.0
    img[r <= 20.0] = 10.0
    return img, liver, r


@pytest.mark.parametrize("where, taken", [("inside", True), ("half_out", False), ("scan_edge", False)])
def test_fluid_mass_surrounded_by_the_liver_is_taken_with_its_band(where, taken):
    """A simple cyst inside the liver is taken without a wall when most of its surface lies within
    6 mm of the liver, with the band between (or the cyst would be an island); half out of the
    liver (the gallbladder's case) or cut by the scan's edge it is left alone."""
    from calcscope.segment._classical import _attached_masses

    img, liver, r = _cyst_scene(where)
    add, found = _attached_masses(img, img, liver, np.ones(img.shape, bool), (2.5, 2.5, 2.5), max_hu=20.0,
                                  min_hu=-10.0, radius_mm=10.0, min_liver_share=0.15, wall=img > 200.0,
                                  min_wall_share=0.3, enclosed_share=0.6, ring_mm=6.0)
    assert len(found) == 1
    assert found[0]["accepted"] is taken
    if taken:
        assert found[0]["ring_share"] > 0.9 and found[0]["liver_share"] < 0.15  # the band keeps it off the liver
        assert add[r <= 25.0].mean() > 0.95 and not (add & liver).any()
    else:
        assert not add.any()
        if where == "half_out":
            assert found[0]["ring_share"] < 0.6


@pytest.mark.parametrize("content_hu, taken", [(10.0, True), (-100.0, False)])
def test_cavity_reaching_the_outside_through_a_vein_is_filled(content_hu, taken):
    """A 30 mm cavity that the liver encloses except for a 5 mm vein leading out is no hole for
    ``binary_fill_holes``; the opening by a 7.5 mm ball separates it. Fat in it stays out (a
    fissure is no lesion)."""
    from scipy import ndimage as ndi

    from calcscope.segment._classical import _enclosed_cavities

    sp = (2.5, 2.5, 2.5)
    z, y, x = np.indices((60, 60, 60)) * 2.5
    r = np.sqrt((z - 75) ** 2 + (y - 75) ** 2 + (x - 75) ** 2)
    vein = (np.hypot(z - 75, y - 75) <= 2.5) & (x > 75)
    liver = (np.abs(z - 75) < 50) & (np.abs(y - 75) < 50) & (np.abs(x - 75) < 50) & (r > 15.0) & ~vein
    img = np.where(liver, 100.0, -100.0)
    img[r <= 15.0] = content_hu
    assert not (ndi.binary_fill_holes(liver) & (r <= 15.0)).any()  # the vein opens the hole
    add, found = _enclosed_cavities(img, liver, sp, radius_mm=7.5, min_hu=-10.0, min_liver_share=0.8)
    assert len(found) == 1 and found[0]["accepted"] is taken
    assert found[0]["liver_share"] > 0.9
    if taken:
        assert add[r <= 15.0].all() and not (add & liver).any() and not add[vein & (x > 100)].any()
    else:
        assert not add.any()
