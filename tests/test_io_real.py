"""The loader on the real CTs in ../shared/data (skipped with a reason when absent).

Expected figures were checked by hand outside calcscope: with nibabel for the NIfTI
(affine, RAS codes, np.percentile of the raw array) and with pydicom for the DICOM
series (slices sorted by ImagePositionPatient z, stored values * RescaleSlope +
RescaleIntercept); they agree with ../shared/data/MANIFEST.md where it gives them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from calcscope.cli import main
from calcscope.errors import GeometryError
from calcscope.io import load_ct, load_mask_like, save_nifti

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TS = SHARED / "totalseg-example-ct"
DCMQI = SHARED / "dcmqi-ct3slice-liver"

pytestmark = [
    pytest.mark.shared,
    pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is absent (real test data lives beside the repository)"),
]

LIVER = 5  # TotalSegmentator "total" class map


@pytest.fixture(scope="module")
def dicom_ct():
    return load_ct(TS / "example_ct_dicom")


@pytest.fixture(scope="module")
def nifti_ct():
    return load_ct(TS / "example_ct.nii.gz")


def test_nifti_example_ct(nifti_ct):
    v = nifti_ct
    assert v.shape == (112, 101, 122)  # (z, y, x); nibabel shows (122, 101, 112) in (x, y, z)
    assert v.spacing_zyx == (3.0, 3.0, 3.0)
    assert v.orientation_code() == "RAS"  # the file's own axis order, expressed in LPS letters
    # nibabel's RAS affine origin (-177.956, 11.319, 94.302) is LPS (177.956, -11.319, 94.302)
    np.testing.assert_allclose(v.origin_lps, (177.9563, -11.3190, 94.3018), atol=1e-3)
    assert v.array.dtype == np.int16 and v.meta["original_dtype"] == "int32"
    assert (int(v.array.min()), int(v.array.max())) == (-1207, 3382)
    np.testing.assert_allclose(np.percentile(v.array, [1, 5, 50, 95, 99]), [-1012, -1003, -101, 68, 307], atol=0.5)
    assert float(v.array.mean()) == pytest.approx(-360.02, abs=0.01)
    assert v.meta.get("padding") is None  # -1207 is a reconstruction undershoot, not a padding plateau


def test_nifti_liver_hu_matches_manifest(nifti_ct):
    seg = load_mask_like(TS / "example_seg_fast_force_split.nii.gz", nifti_ct)
    liver = seg == LIVER
    assert int(liver.sum()) == 41_692
    np.testing.assert_allclose(np.percentile(nifti_ct.array[liver], [5, 50, 95]), [18, 46, 67], atol=1.0)


def test_dicom_example_series(dicom_ct):
    v = dicom_ct
    assert v.shape == (20, 512, 512)
    assert v.spacing_zyx == pytest.approx((2.0, 0.9765625, 0.9765625))
    assert v.orientation_code() == "LPS"
    # first slice after sorting along the normal is the most inferior one (z = -804.5 mm)
    np.testing.assert_allclose(v.origin_lps, (-249.51171875, -437.51171875, -804.5))
    assert (int(v.array.min()), int(v.array.max())) == (-1024, 1839)
    np.testing.assert_allclose(np.percentile(v.array, [1, 5, 50, 95, 99]), [-1024, -1024, -981, 109, 405], atol=0.5)
    assert float(v.array.mean()) == pytest.approx(-624.126, abs=0.01)
    assert v.modality == "CT" and v.source == "CT Body 3.0"
    assert v.meta["slice_thickness_mm"] == 3.0 and v.meta["slice_spacing_mm"] == 2.0
    assert v.meta["manufacturer"] == "SIEMENS" and v.meta["contrast_agent"] == "APPLIED"
    assert v.meta["resampling"] == [] and v.meta["padding"] is None
    assert len(v.source_files) == 20 and len(set(v.instance_uids)) == 20
    # source files in z order: the file names count down as z goes up in this export
    assert [Path(f).name for f in v.source_files] == sorted((Path(f).name for f in v.source_files), reverse=True)


def test_dcmqi_three_slices_with_padding():
    v = load_ct(DCMQI / "ct-3slice")
    assert v.shape == (3, 512, 512)
    assert v.spacing_zyx == pytest.approx((1.0, 0.810547, 0.810547), abs=1e-6)
    assert v.orientation_code() == "LPS"
    np.testing.assert_allclose(v.origin_lps, (-235.199997, -226.800003, -128.690002), atol=1e-6)
    pad = v.meta["padding"]
    # stored -2000 * slope 1 - 1024 = -3024 HU outside the reconstruction circle -> air
    assert pad["source"] == "PixelPaddingValue" and pad["value_hu"] == -3024.0 and pad["voxels"] == 167_316
    assert (int(v.array.min()), int(v.array.max())) == (-1024, 1381)
    np.testing.assert_allclose(np.percentile(v.array, [5, 50, 95]), [-1024, -807, 95], atol=0.5)
    liver = load_mask_like(DCMQI / "liver_seg.nrrd", v) == 1
    assert int(liver.sum()) == 107_098
    assert float(np.median(v.array[liver])) == pytest.approx(45.0, abs=1.0)


def test_dcmqi_parent_folder_picks_the_ct_among_seg_nrrd_and_text():
    """The folder also holds a DICOM SEG (liver.dcm), NRRD label maps and a licence text."""
    v = load_ct(DCMQI)
    assert v.shape == (3, 512, 512) and v.meta["padding"]["voxels"] == 167_316
    assert v.meta["ignored"] == {"non_dicom_files": 1, "non_image_dicom_objects": 1, "image_files": 4}


def test_single_slice_ct_small_is_refused(capsys):
    path = SHARED / "pydicom-ct-small" / "CT_small.dcm"
    with pytest.raises(GeometryError, match="single 2-D DICOM slice"):
        load_ct(path)
    assert main(["info", str(path)]) == GeometryError.exit_code == 7
    err = capsys.readouterr().err
    assert "128 x 128" in err and "Traceback" not in err


def test_nifti_and_dicom_agree_on_the_liver_centroid(dicom_ct):
    """The liver label of example_seg_dicom.nii.gz (stored LAS, i.e. rows flipped against the
    DICOM's LPS) has the same LPS centroid on its own grid as after resampling onto the grid
    of the DICOM series loaded by calcscope, and no voxel is lost on the way."""
    import SimpleITK as sitk

    img = sitk.ReadImage(str(TS / "example_seg_dicom.nii.gz"))
    own = sitk.GetArrayFromImage(img) == LIVER
    centre_own = img.TransformContinuousIndexToPhysicalPoint(np.argwhere(own).mean(0)[::-1].tolist())
    on_dicom = load_mask_like(TS / "example_seg_dicom.nii.gz", dicom_ct) == LIVER
    centre_dicom = dicom_ct.voxel_to_mm(np.argwhere(on_dicom).mean(0))
    assert int(own.sum()) == int(on_dicom.sum()) == 366_708
    np.testing.assert_allclose(centre_dicom, centre_own, atol=0.01)
    np.testing.assert_allclose(centre_dicom, (-76.00, -165.93, -784.98), atol=0.01)
    # contrast-enhanced liver on this series
    assert float(np.median(dicom_ct.array[on_dicom])) == pytest.approx(93.0, abs=1.0)


def test_dicom_written_as_nifti_reads_back_identically(dicom_ct, tmp_path):
    """NIfTI loader vs DICOM loader: same voxels at the same LPS coordinates."""
    save_nifti(dicom_ct.array, dicom_ct, tmp_path / "ct.nii.gz")
    back = load_ct(tmp_path / "ct.nii.gz")
    np.testing.assert_array_equal(back.array, dicom_ct.array)
    for zyx in [(0, 0, 0), (19, 511, 511), (10, 300, 140)]:
        np.testing.assert_allclose(back.voxel_to_mm(zyx), dicom_ct.voxel_to_mm(zyx), atol=1e-4)


def test_cropped_example_keeps_the_uncropped_origin():
    """A data quirk worth knowing: example_ct_sm.nii.gz holds slices 82-111 of example_ct.nii.gz
    voxel for voxel, but its header (and that of example_seg.nii.gz, on the same grid) still
    carries the uncropped origin, so its LPS z coordinates are 82 * 3 = 246 mm too low. The
    loader reports what the header says; it does not guess."""
    full = load_ct(TS / "example_ct.nii.gz")
    small = load_ct(TS / "example_ct_sm.nii.gz")
    np.testing.assert_array_equal(small.array, full.array[82:112])
    np.testing.assert_allclose(small.origin_lps, full.origin_lps, atol=1e-4)
    dz = full.voxel_to_mm((82, 0, 0))[2] - small.voxel_to_mm((0, 0, 0))[2]
    assert dz == pytest.approx(246.0)
