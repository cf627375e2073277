"""``calcscope info`` on small generated inputs and, when present, the shared example CTs."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from calcscope.cli import main
from calcscope.cli._info import PERCENTILES, hu_statistics
from calcscope.io import save_dicom_series
from calcscope.model import Volume

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _ramp(shape=(5, 12, 16)) -> Volume:
    z, y, x = np.indices(shape)
    return Volume(array=(-600 + 150 * z + 20 * y + x).astype(np.int16), spacing_zyx=(3.0, 0.9, 0.75), origin_lps=(5.0, -7.0, 12.0))


def _info_json(capsys, *args: str) -> dict:
    code = main(["info", "--json", *args])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def test_info_json_on_a_nifti(tmp_path, capsys):
    arr_xyz = np.arange(6 * 7 * 8, dtype=np.int16).reshape(6, 7, 8) - 200  # nibabel order (x, y, z)
    nib.save(nib.Nifti1Image(arr_xyz, np.diag([0.5, 0.6, 2.0, 1.0])), str(tmp_path / "ct.nii.gz"))
    info = _info_json(capsys, str(tmp_path / "ct.nii.gz"))
    assert info["format"] == "NIfTI" and info["modality"] == "CT"
    assert info["shape_zyx"] == [8, 7, 6] and info["size_xyz"] == [6, 7, 8] and info["slice_count"] == 8
    assert info["spacing_zyx_mm"] == [2.0, 0.6, 0.5]
    assert info["orientation"] == "RAS"  # an identity NIfTI affine is RAS; ITK reports it in LPS
    assert info["origin_lps_mm"] == [0.0, 0.0, 0.0]
    hu = info["hu"]
    assert (hu["min"], hu["max"]) == (-200.0, 6 * 7 * 8 - 201.0)
    assert hu["mean"] == pytest.approx(-200 + (6 * 7 * 8 - 1) / 2)
    assert hu["p50"] == float(np.percentile(arr_xyz, 50, method="inverted_cdf"))
    assert info["series_uid"] is None and info["n_source_files"] == 0


def test_info_json_on_a_dicom_folder(tmp_path, capsys):
    vol = _ramp()
    save_dicom_series(vol, tmp_path / "dcm", series_uid="1.2.826.0.1.3680043.99.21", series_description="Abdomen 3mm")
    info = _info_json(capsys, str(tmp_path / "dcm"))
    assert info["format"] == "DICOM" and info["source"] == "Abdomen 3mm"
    assert info["series_uid"] == "1.2.826.0.1.3680043.99.21"
    assert info["shape_zyx"] == [5, 12, 16] and info["slice_count"] == 5 and info["n_source_files"] == 5
    assert info["spacing_zyx_mm"] == pytest.approx([3.0, 0.9, 0.75])
    assert info["origin_lps_mm"] == pytest.approx([5.0, -7.0, 12.0])
    assert info["orientation"] == "LPS"
    expected = np.percentile(vol.array, PERCENTILES, method="inverted_cdf")
    assert [info["hu"][f"p{q}"] for q in PERCENTILES] == expected.tolist()
    assert info["meta"]["slice_thickness_mm"] == 3.0 and info["meta"]["manufacturer"] == "calcscope"


def test_info_human_output_and_series_choice(tmp_path, capsys):
    a, b = _ramp(), _ramp((4, 12, 16))
    save_dicom_series(a, tmp_path / "a", series_uid="1.2.826.0.1.3680043.99.31", series_description="Arterial")
    save_dicom_series(b, tmp_path / "b", series_uid="1.2.826.0.1.3680043.99.32", series_description="Venous")
    assert main(["info", str(tmp_path)]) == 8
    err = capsys.readouterr().err
    assert "Arterial" in err and "Venous" in err and "--series" in err
    assert main(["info", str(tmp_path), "--series", "1.2.826.0.1.3680043.99.32"]) == 0
    out = capsys.readouterr().out
    assert "4 slices" in out and "Venous" in out and "chosen with --series" in out
    assert "Orientation" in out and "LPS" in out and "p50" in out


def test_info_allow_modality(tmp_path, capsys):
    save_dicom_series(_ramp(), tmp_path / "mr", modality="MR")
    assert main(["info", str(tmp_path / "mr")]) == 6
    capsys.readouterr()
    info = _info_json(capsys, str(tmp_path / "mr"), "--allow-modality")
    assert info["modality"] == "MR"


def test_info_on_a_zip(tmp_path, capsys):
    files = save_dicom_series(_ramp(), tmp_path / "dcm")
    with zipfile.ZipFile(tmp_path / "study.zip", "w") as zf:
        for f in files:
            zf.write(f, f"study/{f.name}")
    info = _info_json(capsys, str(tmp_path / "study.zip"))
    assert info["meta"]["archive"] == "study.zip" and info["meta"]["n_archive_members"] == 5
    assert info["slice_count"] == 5


def test_hu_statistics_histogram_matches_numpy():
    rng = np.random.default_rng(0)
    arr = rng.integers(-1024, 3000, size=(7, 33, 41)).astype(np.int16)
    stats = hu_statistics(arr)
    for q in PERCENTILES:
        assert stats[f"p{q}"] == float(np.percentile(arr, q, method="inverted_cdf"))
    f = arr.astype(np.float32) + 0.25
    fstats = hu_statistics(f)
    assert fstats["p50"] == pytest.approx(stats["p50"] + 0.25)
    assert fstats["min"] == pytest.approx(stats["min"] + 0.25)


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is absent (real test data lives beside the repository)")
def test_info_on_the_shared_examples(capsys):
    ts = SHARED / "totalseg-example-ct"
    n = _info_json(capsys, str(ts / "example_ct.nii.gz"))
    assert n["shape_zyx"] == [112, 101, 122] and n["orientation"] == "RAS"
    assert (n["hu"]["min"], n["hu"]["max"], n["hu"]["p50"]) == (-1207.0, 3382.0, -101.0)
    d = _info_json(capsys, str(ts / "example_ct_dicom"))
    assert d["shape_zyx"] == [20, 512, 512] and d["orientation"] == "LPS" and d["format"] == "DICOM"
    assert (d["hu"]["min"], d["hu"]["max"], d["hu"]["p50"]) == (-1024.0, 1839.0, -981.0)
    assert d["meta"]["contrast_agent"] == "APPLIED"
    q = _info_json(capsys, str(SHARED / "dcmqi-ct3slice-liver" / "ct-3slice"))
    assert q["meta"]["padding"]["voxels"] == 167_316 and q["hu"]["min"] == -1024.0
    a = _info_json(capsys, str(SHARED / "totalseg-aorta-cta" / "ct_cropped.nii.gz"))
    assert a["shape_zyx"] == [164, 126, 120] and a["spacing_zyx_mm"] == [1.5, 1.5, 1.5]
    assert (a["hu"]["min"], a["hu"]["max"]) == (-1078.0, 3343.0)
