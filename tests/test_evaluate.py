"""Scorer on hand-made truth/analysis pairs, and the ``calcscope evaluate`` command."""

from __future__ import annotations

import json

import numpy as np
import pytest

from calcscope.evaluate import score, size_band
from calcscope.model import Analysis, CalcificationPattern, Finding
from calcscope.synth import ObjectSpec, Truth, TruthObject


def _obj(oid: str, label: int, typ: str, subtype: str, centre, size: float, vol: float, **kw) -> TruthObject:
    kind = kw.pop("expected_kind", "calcification" if typ == "calcification" else "lesion")
    return TruthObject(
        id=oid, label=label, type=typ, subtype=subtype, expected_kind=kind, centre_mm=tuple(centre),
        centre_voxel=tuple(float(c) for c in centre[::-1]), size_mm=size, volume_mm3=vol, volume_pv_mm3=vol,
        volume_analytic_mm3=vol, voxel_count=int(vol), hu=600.0 if typ == "calcification" else 8.0,
        spec=ObjectSpec(type=typ, subtype=subtype, size_mm=size), **kw,
    )


@pytest.fixture()
def truth() -> Truth:
    objs = [
        _obj("dot", 1, "calcification", "punctate", (0, 0, 0), 1.5, 2.0, shape="punctate", lobe="right"),
        _obj("small", 2, "calcification", "punctate", (30, 0, 0), 3.0, 14.0, shape="punctate", lobe="right"),
        _obj("cyst", 3, "lesion", "cyst", (60, 0, 0), 20.0, 4000.0, expected_kind="cyst", lobe="left", children=["ring"]),
        _obj("ring", 4, "calcification", "ring", (60, 0, 0), 22.0, 900.0, shape="ring", lobe="left", parent="cyst", relation="wall"),
        _obj("coarse", 5, "calcification", "coarse", (0, 40, 0), 8.0, 150.0, shape="coarse", lobe="right"),
    ]
    return Truth(seed=1, phase="portal_venous", shape_zyx=(10, 10, 10), spacing_zyx=(1, 1, 1), origin_lps=(0, 0, 0),
                 noise_hu=12.0, objects=objs, calcification_distribution="scattered", preset="hand")


def _f(fid, kind, centre, **kw) -> Finding:
    return Finding(id=fid, kind=kind, centroid_mm=tuple(float(c) for c in centre), **kw)


def test_matching_bands_fp_volume_and_agreement(truth):
    findings = [
        _f("calc-001", "calcification", (31.0, 1.0, 0.0), volume_mm3=21.0, shape="pin", lobe="right"),  # small, 1.4 mm away
        _f("calc-002", "calcification", (60.0, 9.5, 0.0), volume_mm3=700.0, shape="ring", lobe="left", parent_id="lesion-001", relation="wall"),
        _f("calc-003", "calcification", (60.0, -10.0, 0.0), volume_mm3=100.0, shape="coarse"),  # ring fragment: duplicate
        _f("calc-004", "calcification", (0.0, 43.0, 0.0), volume_mm3=120.0, shape="punctate", lobe="left"),  # coarse, wrong shape & lobe
        _f("calc-005", "calcification", (-80.0, 0.0, 0.0), volume_mm3=5.0),  # false positive
        _f("lesion-001", "lesion", (61.0, 0.0, 1.0), volume_mm3=3600.0, lobe="left"),  # truth is a cyst: kind disagrees
        _f("lesion-002", "cyst", (0.0, -60.0, 0.0), volume_mm3=500.0),  # false positive lesion
    ]
    a = Analysis(findings=findings, calcification_pattern=CalcificationPattern(count=4, distribution="clustered"))
    sc = score(truth, a)
    c = sc.calcifications
    assert (c.n_truth, c.n_found, c.false_positives, c.duplicates) == (4, 3, 1, 1)
    assert c.sensitivity == pytest.approx(0.75)
    bands = {b.band: (b.n_truth, b.n_found) for b in c.by_size}
    assert bands == {"<2mm": (1, 0), "2-5mm": (1, 1), "5-10mm": (1, 1), ">=10mm": (1, 1)}
    assert sc.lesions.n_found == 1 and sc.lesions.false_positives == 1
    assert sc.false_positives_per_scan == 2
    by = {o.truth_id: o for o in sc.objects}
    assert by["small"].finding_id == "calc-001" and by["small"].distance_mm == pytest.approx(np.sqrt(2), abs=1e-3)
    assert by["small"].volume_error_pct == pytest.approx(50.0)
    assert by["ring"].duplicates == ["calc-003"]
    assert not by["dot"].matched
    # volume errors of the matched calcifications: +50 %, -22.2 %, -20 % -> median -20 %
    assert c.median_volume_error_pct == pytest.approx(-20.0)
    assert c.median_abs_volume_error_pct == pytest.approx(22.22, abs=0.01)
    # "pin" counts as punctate; the coarse one called punctate disagrees
    assert by["small"].shape_agree is True and by["coarse"].shape_agree is False
    assert sc.shape_agreement == pytest.approx(2 / 3, abs=1e-4)
    assert sc.cyst_solid_agreement == 0.0
    assert by["ring"].parent_agree is True and sc.parent_agreement == 1.0
    assert sc.lobe_agreement == pytest.approx(3 / 4)
    assert sc.distribution_truth == "scattered" and sc.distribution_agree is False
    assert "3/4" in sc.summary


def test_match_radius_is_max_of_3mm_and_radius(truth):
    # 3.5 mm from the 1.5 mm dot: outside 3 mm -> false positive; 9 mm from the 22 mm ring: inside its 11 mm radius
    a = Analysis(findings=[_f("calc-001", "calcification", (3.5, 0, 0)), _f("calc-002", "calcification", (60, 9, 0))])
    sc = score(truth, a)
    by = {o.truth_id: o for o in sc.objects}
    assert not by["dot"].matched and by["ring"].matched
    assert sc.calcifications.false_positives == 1
    assert by["dot"].match_radius_mm == 3.0 and by["ring"].match_radius_mm == 11.0


def test_empty_analysis_and_normal_truth():
    t = Truth(seed=0, phase="portal_venous", shape_zyx=(4, 4, 4), spacing_zyx=(1, 1, 1), origin_lps=(0, 0, 0), noise_hu=12)
    sc = score(t, Analysis())
    assert sc.calcifications.sensitivity is None and sc.false_positives_per_scan == 0
    assert sc.distribution_agree is None
    sc2 = score(t, Analysis(findings=[_f("calc-001", "calcification", (1, 1, 1))]))
    assert sc2.false_positives_per_scan == 1 and sc2.false_positives[0].finding_id == "calc-001"


def test_dice_from_label_maps(truth):
    tl = np.zeros((10, 10, 10), np.int32)
    tl[2:6, 2:6, 2:6] = 2  # "small": 64 voxels
    rl = np.zeros_like(tl)
    rl[3:7, 2:6, 2:6] = 1001  # shifted by one slice: overlap 48
    a = Analysis(findings=[_f("calc-001", "calcification", (30, 0, 0), label=1001)])
    sc = score(truth, a, truth_labels=tl, result_labels=rl)
    small = next(o for o in sc.objects if o.truth_id == "small")
    assert small.dice == pytest.approx(2 * 48 / 128)
    assert sc.calcifications.mean_dice == pytest.approx(0.75)


def test_size_band():
    assert [size_band(v) for v in (0.5, 2.0, 4.99, 5.0, 10.0, 40.0)] == ["<2mm", "2-5mm", "2-5mm", "5-10mm", ">=10mm", ">=10mm"]


def test_evaluate_cli(tmp_path, truth):
    from calcscope.cli import main

    truth.save(tmp_path / "truth.json")
    a = Analysis(findings=[_f("calc-001", "calcification", (30, 0, 0), volume_mm3=14.0)])
    (tmp_path / "res").mkdir()
    (tmp_path / "res" / "analysis.json").write_text(a.model_dump_json())
    out = tmp_path / "score.json"
    assert main(["evaluate", "--truth", str(tmp_path / "truth.json"), "--result", str(tmp_path / "res"), "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["calcifications"]["n_found"] == 1 and doc["calcifications"]["n_truth"] == 4
    assert main(["evaluate", "--truth", str(tmp_path / "missing.json"), "--result", str(tmp_path / "res")]) == 3
    (tmp_path / "bad.json").write_text("{\"findings\": 3}")
    assert main(["evaluate", "--truth", str(tmp_path / "truth.json"), "--result", str(tmp_path / "bad.json")]) == 12
