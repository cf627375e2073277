"""User liver masks (binary, label map, TotalSegmentator outputs), refusals, and the TotalSegmentator backend."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from calcscope.errors import DependencyError, InputNotFoundError, MaskError
from calcscope.io import load_ct, load_mask_like
from calcscope.model import Volume
from calcscope.segment import load_user_liver_mask, run_totalsegmentator, segment_liver

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TS = DATA / "totalseg-example-ct"
DCMQI = DATA / "dcmqi-ct3slice-liver"


def _need(path: Path) -> None:
    if not path.exists():
        pytest.skip(f"shared reference data not available ({path.name})")


@pytest.fixture(scope="module")
def nc_ct():
    _need(TS)
    return load_ct(TS / "example_ct.nii.gz")


@pytest.fixture(scope="module")
def dcmqi_ct():
    _need(DCMQI)
    return load_ct(DCMQI / "ct-3slice")


def _synthetic_volume(shape=(40, 60, 60), spacing=(2.0, 2.0, 2.0), origin=(0.0, 0.0, 0.0)) -> Volume:
    return Volume(array=np.zeros(shape, np.int16), spacing_zyx=spacing, origin_lps=origin)


def _write(arr: np.ndarray, ref: Volume, path: Path, *, spacing=None, origin=None) -> Path:
    img = ref.to_sitk(arr)
    if spacing is not None:
        img.SetSpacing(spacing)
    if origin is not None:
        img.SetOrigin(origin)
    sitk.WriteImage(img, str(path))
    return path


def _ball(vol: Volume, centre_zyx, radius_mm: float) -> np.ndarray:
    zz, yy, xx = np.indices(vol.shape)
    sz, sy, sx = vol.spacing_zyx
    cz, cy, cx = centre_zyx
    return ((zz - cz) * sz) ** 2 + ((yy - cy) * sy) ** 2 + ((xx - cx) * sx) ** 2 <= radius_mm**2


# ---- recognised inputs ----------------------------------------------------------------


def test_totalsegmentator_multilabel_recognised_without_flags(nc_ct):
    mask = load_user_liver_mask(TS / "example_seg_fast_force_split.nii.gz", nc_ct)
    assert mask.dtype == bool
    assert int(mask.sum()) == 41692  # liver = label 5 voxels listed in MANIFEST.md


def test_totalsegmentator_folder(nc_ct, tmp_path):
    ref = load_mask_like(TS / "example_seg_fast_force_split.nii.gz", nc_ct) == 5
    folder = tmp_path / "segmentations"
    folder.mkdir()
    _write(ref.astype(np.uint8), nc_ct, folder / "liver.nii.gz")
    _write((~ref).astype(np.uint8), nc_ct, folder / "spleen.nii.gz")
    mask = load_user_liver_mask(folder, nc_ct)
    assert np.array_equal(mask, ref)


def test_binary_mask(dcmqi_ct):
    mask = load_user_liver_mask(DCMQI / "liver_seg.nrrd", dcmqi_ct)
    assert int(mask.sum()) == 107098


def test_label_map_with_label(dcmqi_ct):
    mask = load_user_liver_mask(DCMQI / "liver_spine_seg.nrrd", dcmqi_ct, label=1)
    binary = load_user_liver_mask(DCMQI / "liver_seg.nrrd", dcmqi_ct)
    assert 2 * (mask & binary).sum() / (mask.sum() + binary.sum()) > 0.99


def test_label_map_without_label_is_refused(dcmqi_ct):
    with pytest.raises(MaskError, match="--liver-label"):
        load_user_liver_mask(DCMQI / "liver_spine_seg.nrrd", dcmqi_ct)


def test_absent_label_is_refused(dcmqi_ct):
    with pytest.raises(MaskError, match="(?i)label 7 does not occur"):
        load_user_liver_mask(DCMQI / "liver_spine_seg.nrrd", dcmqi_ct, label=7)


def test_resampled_across_grids(tmp_path):
    vol = _synthetic_volume(shape=(50, 70, 70))
    ball = _ball(vol, (25, 35, 35), 40.0)
    # store the same ball on a grid with another spacing and origin (1 mm, shifted by 5 mm)
    fine = Volume(array=np.zeros((110, 150, 150), np.int16), spacing_zyx=(1.0, 1.0, 1.0), origin_lps=(-5.0, -5.0, -5.0))
    zz, yy, xx = np.indices(fine.shape)
    pts = fine.voxel_to_mm(np.stack([zz, yy, xx], -1).reshape(-1, 3)).reshape(*fine.shape, 3)
    centre = vol.voxel_to_mm((25, 35, 35))
    fine_ball = (np.linalg.norm(pts - centre, axis=-1) <= 40.0).astype(np.uint8)
    path = _write(fine_ball, fine, tmp_path / "fine.nii.gz")
    mask = load_user_liver_mask(path, vol)
    dice = 2 * (mask & ball).sum() / (mask.sum() + ball.sum())
    assert dice > 0.97
    assert mask.sum() * vol.voxel_volume_mm3 / 1000 == pytest.approx(4 / 3 * np.pi * 40**3 / 1000, rel=0.05)


# ---- refusals ---------------------------------------------------------------------------


def test_missing_path(tmp_path):
    with pytest.raises(InputNotFoundError):
        load_user_liver_mask(tmp_path / "nope.nii.gz", _synthetic_volume())


def test_empty_mask_refused(tmp_path):
    vol = _synthetic_volume()
    path = _write(np.zeros(vol.shape, np.uint8), vol, tmp_path / "empty.nii.gz")
    with pytest.raises(MaskError, match="empty"):
        load_user_liver_mask(path, vol)


def test_non_overlapping_mask_refused(tmp_path):
    vol = _synthetic_volume()
    path = _write(_ball(vol, (20, 30, 30), 30.0).astype(np.uint8), vol, tmp_path / "far.nii.gz", origin=(0.0, 0.0, 1000.0))
    with pytest.raises(MaskError, match="does not overlap"):
        load_user_liver_mask(path, vol)


def test_tiny_mask_refused(tmp_path):
    vol = _synthetic_volume()
    m = np.zeros(vol.shape, np.uint8)
    m[20, 30, 30:32] = 1  # 16 mm^3
    path = _write(m, vol, tmp_path / "tiny.nii.gz")
    with pytest.raises(MaskError, match="too small"):
        load_user_liver_mask(path, vol)


def test_small_fully_covered_mask_refused(tmp_path):
    vol = _synthetic_volume()
    path = _write(_ball(vol, (20, 30, 30), 20.0).astype(np.uint8), vol, tmp_path / "small.nii.gz")  # 33 mL
    with pytest.raises(MaskError, match="wholly inside the scan"):
        load_user_liver_mask(path, vol)


def test_small_partial_coverage_accepted(tmp_path):
    vol = _synthetic_volume(shape=(3, 60, 60))
    m = _ball(vol, (1, 30, 30), 40.0)
    path = _write(m.astype(np.uint8), vol, tmp_path / "slab.nii.gz")
    assert load_user_liver_mask(path, vol).sum() == m.sum()


def test_huge_mask_refused(tmp_path):
    vol = _synthetic_volume(shape=(60, 150, 150))  # 10.8 L box
    path = _write(np.ones(vol.shape, np.uint8), vol, tmp_path / "all.nii.gz")
    with pytest.raises(MaskError, match="6 L"):
        load_user_liver_mask(path, vol)


def test_segment_liver_with_user_mask(dcmqi_ct):
    seg = segment_liver(dcmqi_ct, user_mask=DCMQI / "liver_seg.nrrd", capsular_margin_mm=2.0)
    assert seg.summary.method == "user_mask"
    assert seg.summary.volume_ml == pytest.approx(107098 * dcmqi_ct.voxel_volume_mm3 / 1000, abs=0.1)
    assert not (seg.margin & seg.mask).any() and seg.margin.any()
    assert set(np.unique(seg.lobes)) == {0, 1, 2}


# ---- TotalSegmentator backend (faked at the import boundary) -----------------------------


@pytest.fixture
def fake_totalsegmentator(monkeypatch, tmp_path):
    calls = []

    def totalsegmentator(input, output, **kwargs):  # noqa: A002 - the real API's parameter name
        calls.append(kwargs)
        img = sitk.ReadImage(str(input))
        arr = np.zeros(sitk.GetArrayFromImage(img).shape, np.uint8)
        arr[5:15, 10:40, 10:40] = 1
        out = sitk.GetImageFromArray(arr)
        out.CopyInformation(img)
        Path(output).mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(out, str(Path(output) / "liver.nii.gz"))

    pkg = types.ModuleType("totalsegmentator")
    api = types.ModuleType("totalsegmentator.python_api")
    api.totalsegmentator = totalsegmentator
    pkg.python_api = api
    monkeypatch.setitem(sys.modules, "totalsegmentator", pkg)
    monkeypatch.setitem(sys.modules, "totalsegmentator.python_api", api)
    monkeypatch.delenv("TOTALSEG_WEIGHTS_PATH", raising=False)
    monkeypatch.setenv("TOTALSEG_HOME_DIR", str(tmp_path / "tshome"))
    return calls


def test_fake_totalsegmentator_backend(fake_totalsegmentator, tmp_path):
    (tmp_path / "tshome" / "nnunet" / "results" / "Dataset291_TotalSegmentator_part1_organs_1559subj").mkdir(parents=True)
    vol = _synthetic_volume(origin=(-50.0, 20.0, 100.0))
    mask = run_totalsegmentator(vol)
    expected = np.zeros(vol.shape, bool)
    expected[5:15, 10:40, 10:40] = True
    assert np.array_equal(mask, expected)
    assert fake_totalsegmentator[0]["roi_subset"] == ["liver"]
    seg = segment_liver(vol, method="totalsegmentator")
    assert seg.summary.method == "totalsegmentator"
    assert seg.summary.volume_ml == pytest.approx(9000 * 8 / 1000)


def test_totalsegmentator_without_weights(fake_totalsegmentator):
    with pytest.raises(DependencyError, match="weights are not on disk"):
        run_totalsegmentator(_synthetic_volume())
    assert fake_totalsegmentator == []  # never called, so nothing could be downloaded


def test_totalsegmentator_not_installed(monkeypatch):
    monkeypatch.setitem(sys.modules, "totalsegmentator.python_api", None)
    with pytest.raises(DependencyError, match="pip install TotalSegmentator"):
        segment_liver(_synthetic_volume(), method="totalsegmentator")
