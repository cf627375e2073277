"""End-to-end comparison of two analysed-study folders, outputs and the compare command."""

from __future__ import annotations

import datetime as dt
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from bs4 import BeautifulSoup
from test_track_support import Ball, Motion, apply_motion, render_study, write_study_folder

from calcscope.cli import main
from calcscope.errors import CorruptInputError, InputNotFoundError, OutputError, UnsupportedFormatError
from calcscope.model import Analysis
from calcscope.track import (
    COMPARISON_SCHEMA_VERSION,
    Comparison,
    compare_studies,
    load_study,
    recist,
    study_from_arrays,
    write_comparison,
)

PRIOR_BALLS = [
    Ball("c1", "calcification", (-30.0, 0.0, 5.0), 3.0, 600.0),  # grows
    Ball("c2", "calcification", (-10.0, -20.0, -15.0), 2.5, 500.0),  # vanishes
    Ball("l1", "lesion", (0.0, 20.0, -10.0), 8.0, 15.0),  # grows 8 -> 10 mm radius
    Ball("l2", "lesion", (-55.0, -10.0, 10.0), 6.0, 15.0),  # stable
]
CURRENT_BALLS = [
    Ball("c1", "calcification", (-30.0, 0.0, 5.0), 4.0, 600.0),
    Ball("l1", "lesion", (0.0, 20.0, -10.0), 10.0, 15.0),
    Ball("l2", "lesion", (-55.0, -10.0, 10.0), 6.0, 15.0),
    Ball("n1", "lesion", (20.0, -10.0, 15.0), 6.0, 15.0),  # new, 12 mm
]
MOTION = Motion(rotation_deg=(2.0, -3.0, 5.0), translation_mm=(7.0, -5.0, 4.0))
PRIOR_DATE, CURRENT_DATE = dt.date(2024, 1, 10), dt.date(2024, 5, 9)  # 120 days


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("studies")
    pr = render_study(PRIOR_BALLS, seed=11)
    cu = render_study(CURRENT_BALLS, motion=MOTION, seed=12)
    return write_study_folder(pr, root / "prior"), write_study_folder(cu, root / "current")


@pytest.fixture(scope="module")
def run(folders):
    p, c = folders
    return compare_studies(p, c, prior_date=PRIOR_DATE, current_date=CURRENT_DATE, timestamp=False,
                           landmarks_prior_mm=np.array([b.centre_mm for b in PRIOR_BALLS]),
                           landmarks_current_mm=apply_motion(np.array([b.centre_mm for b in PRIOR_BALLS]), MOTION))


def _by_prior(run):
    return {m.prior_id: m for m in run.comparison.matches}


def test_matches_new_and_resolved(run) -> None:
    c = run.comparison
    assert {(m.prior_id, m.current_id) for m in c.matches} == {
        ("calc-001", "calc-001"), ("lesion-001", "lesion-001"), ("lesion-002", "lesion-002")
    }
    assert [u.id for u in c.new] == ["lesion-003"]
    assert [u.id for u in c.resolved] == ["calc-002"]
    # truly new / truly gone: the other study shows nothing at the registered position
    assert c.new[0].visible_on_other_study is False
    assert -70.0 < c.new[0].contrast_hu < -35.0  # 15 HU lesion in 60 HU liver (shell may hold vessels)
    assert c.resolved[0].visible_on_other_study is False
    assert all(m.distance_mm < 2.0 for m in c.matches)
    assert c.registration.image_kind == "ct"
    assert c.registration.landmark_error is not None and c.registration.landmark_error.median_mm < 1.0
    assert c.registration.liver_dice_after > 0.96


def test_volume_and_diameter_changes(run) -> None:
    m = _by_prior(run)
    true_l1 = (10.0**3 / 8.0**3 - 1.0) * 100.0  # +95.3 %
    assert m["lesion-001"].volume_change_percent == pytest.approx(true_l1, abs=10.0)
    assert m["lesion-001"].diameter_change_mm == pytest.approx(4.0, abs=2.5)
    assert m["lesion-002"].volume_change_percent == pytest.approx(0.0, abs=10.0)
    assert m["calc-001"].volume_change_percent > 80.0  # 3 -> 4 mm radius: +137 % true
    assert m["lesion-001"].interval_days == 120.0
    v1, v2 = m["lesion-001"].prior_volume_mm3, m["lesion-001"].current_volume_mm3
    assert m["lesion-001"].doubling_time_days == pytest.approx(120.0 * math.log(2) / math.log(v2 / v1), rel=1e-9)


def test_growth_alert_and_change_on_current_findings(run) -> None:
    c = run.comparison
    assert [a.finding_id for a in c.growth_alerts] == ["calc-001"]
    assert _by_prior(run)["calc-001"].growing_calcification
    cur = {f.id: f for f in c.current_findings}
    assert cur["calc-001"].change is not None
    assert cur["calc-001"].change.interval_days == 120.0
    assert cur["calc-001"].change.prior_date == PRIOR_DATE
    assert cur["lesion-003"].change is None  # new finding: nothing to compare with


def test_recist_block(run) -> None:
    rb = run.comparison.recist
    assert [t.prior_id for t in rb.targets] == ["lesion-001", "lesion-002"]
    assert rb.new_lesions == ["lesion-003"]
    assert rb.category == "PD"
    assert "new lesion" in rb.rule
    assert rb.baseline_sum_mm == pytest.approx(sum(t.baseline_diameter_mm for t in rb.targets))
    assert rb.followup_sum_mm == pytest.approx(sum(t.followup_diameter_mm for t in rb.targets))


def test_outputs_written_atomically_and_refused_without_force(run, tmp_path) -> None:
    out = tmp_path / "cmp"
    files = write_comparison(out, run)
    assert [f.name for f in files] == ["comparison.json", "comparison.html"]
    data = json.loads((out / "comparison.json").read_text())
    assert data["schema_version"] == COMPARISON_SCHEMA_VERSION
    assert data["document"] == "calcscope.comparison"
    assert "not a diagnostic device" in data["disclaimer"]
    again = Comparison.model_validate(data)
    assert again.recist.category == "PD"
    soup = BeautifulSoup((out / "comparison.html").read_text(), "html.parser")
    pairs = soup.select("div.pair")
    assert len(pairs) == 3
    assert all(len(p.find_all("img")) == 2 for p in pairs)
    assert all(img["src"].startswith("data:image/png;base64,") for img in soup.find_all("img"))
    assert "Rule applied" in soup.get_text()
    with pytest.raises(OutputError):
        write_comparison(out, run)
    write_comparison(out, run, force=True)
    assert sorted(p.name for p in out.iterdir()) == ["comparison.html", "comparison.json"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".cmp")]


def test_json_is_reproducible_without_timestamp(folders, run) -> None:
    p, c = folders
    again = compare_studies(p, c, prior_date=PRIOR_DATE, current_date=CURRENT_DATE, timestamp=False,
                            landmarks_prior_mm=np.array([b.centre_mm for b in PRIOR_BALLS]),
                            landmarks_current_mm=apply_motion(np.array([b.centre_mm for b in PRIOR_BALLS]), MOTION))
    a = run.comparison.model_dump(exclude={"timings_s": True, "registration": {"elapsed_s", "stages"}})
    b = again.comparison.model_dump(exclude={"timings_s": True, "registration": {"elapsed_s", "stages"}})
    assert a == b


def test_folder_without_ct_registers_on_masks(folders, tmp_path) -> None:
    p, c = folders
    c2 = tmp_path / "current_noct"
    shutil.copytree(c, c2)  # the CT sits beside the original folder, not beside the copy
    st = load_study(c2)
    assert st.ct is None and any("not found" in n for n in st.notes)
    res = compare_studies(p, c2, run_reasoning=False, timestamp=False).comparison
    assert res.registration.image_kind == "liver_distance_map"
    assert any("liver masks only" in w for w in res.warnings)
    assert len(res.matches) == 3
    assert res.interval_days is None
    assert all(m.doubling_time_days is None for m in res.matches)


def test_load_study_errors(tmp_path) -> None:
    with pytest.raises(InputNotFoundError):
        load_study(tmp_path / "missing")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "analysis.json").write_text('{"findings": [{"kind": "tumour"}]}')
    with pytest.raises(CorruptInputError):
        load_study(bad)
    noseg = tmp_path / "noseg"
    noseg.mkdir()
    (noseg / "analysis.json").write_text("{}")
    with pytest.raises(UnsupportedFormatError):
        load_study(noseg)


def test_recist_is_exported_as_the_module() -> None:
    assert recist.classify_response(41.0, 49.2).category == "PD"


def test_cli_compare(folders, tmp_path, capsys) -> None:
    p, c = folders
    out = tmp_path / "cli"
    code = main(["compare", str(p), str(c), "--prior-date", "2024-01-10", "--current-date", "2024-05-09",
                 "--out", str(out), "--json", "--no-timestamp"])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["interval_days"] == 120.0
    assert printed["recist"]["category"] == "PD"
    assert (out / "comparison.html").is_file()
    assert main(["compare", str(p), str(c), "--out", str(out)]) == OutputError.exit_code
    assert main(["compare", str(p), str(c), "--out", str(tmp_path / "x"), "--prior-date", "10/01/2024"]) == 2
    assert main(["compare", str(p), str(c), "--out", str(tmp_path / "y"), "--prior-date", "2024-06-01",
                 "--current-date", "2024-01-01"]) == 2
    assert main(["compare", str(p), str(c)]) == 2  # neither --out nor --json


def test_ct_input_is_analysed_on_the_fly(folders, tmp_path) -> None:
    import SimpleITK as sitk

    _, c = folders
    pr = render_study(PRIOR_BALLS, seed=11)
    sitk.WriteImage(pr.volume.to_sitk(), str(tmp_path / "prior_ct.nii.gz"))
    sitk.WriteImage(pr.volume.to_sitk((pr.labels > 0).astype(np.uint8)), str(tmp_path / "prior_liver.nii.gz"))
    opts = {"liver_mask": tmp_path / "prior_liver.nii.gz", "phase": "portal_venous"}
    st = load_study(tmp_path / "prior_ct.nii.gz", analyze_options=opts)
    assert st.kind == "ct" and st.ct is not None
    assert st.labels.shape == pr.volume.shape
    kinds = sorted(f.kind for f in st.findings)
    assert kinds.count("calcification") == 2
    res = compare_studies(st, c, run_reasoning=False, timestamp=False).comparison
    assert res.prior.kind == "ct" and res.current.kind == "analysis_folder"
    assert res.registration.image_kind == "ct"
    assert {m.current_id for m in res.matches} == {"calc-001", "lesion-001", "lesion-002"}
    assert all(m.distance_mm < 2.0 for m in res.matches)


def test_both_cts_analysed_carry_the_volume_change_noise(tmp_path) -> None:
    """Lesions and calcifications analysed from the CT carry a volume SD, their change a noise
    SD in percentage points (for lesions it covers the true change), and the report shows it."""
    import SimpleITK as sitk

    from calcscope.track import render_comparison_html

    studies = []
    for name, balls, kw in (("prior", PRIOR_BALLS, dict(seed=11)), ("current", CURRENT_BALLS, dict(motion=MOTION, seed=12))):
        r = render_study(balls, **kw)
        sitk.WriteImage(r.volume.to_sitk(), str(tmp_path / f"{name}_ct.nii.gz"))
        sitk.WriteImage(r.volume.to_sitk((r.labels > 0).astype(np.uint8)), str(tmp_path / f"{name}_liver.nii.gz"))
        opts = {"liver_mask": tmp_path / f"{name}_liver.nii.gz", "phase": "portal_venous"}
        studies.append(load_study(tmp_path / f"{name}_ct.nii.gz", analyze_options=opts))
    run = compare_studies(*studies, run_reasoning=False, timestamp=False)
    lesions = [m for m in run.comparison.matches if m.kind in ("lesion", "cyst")]  # 15 HU balls read as cysts
    assert len(lesions) == 2
    true_pct = {8.0: (10.0**3 / 8.0**3 - 1.0) * 100.0, 6.0: 0.0}
    for m in lesions:
        assert m.volume_change_sd_percent is not None and 0.0 < m.volume_change_sd_percent < 30.0
        truth = true_pct[min(true_pct, key=lambda r: abs(2 * r - m.prior_diameter_mm))]
        assert abs(m.volume_change_percent - truth) <= 3.0 * m.volume_change_sd_percent + 2.0
    # this phantom paints its balls without partial volume, so the calcification's truth is its
    # voxelisation; only that the change carries an SD is checked here (eval_compare measures
    # its calibration on partial-volume phantoms)
    (calc,) = [m for m in run.comparison.matches if m.kind == "calcification"]
    assert calc.volume_change_sd_percent is not None and 0.0 < calc.volume_change_sd_percent < 30.0
    page = render_comparison_html(run)
    assert f"{calc.volume_change_percent:+.0f} % ± " in page
    (alert,) = run.comparison.growth_alerts
    assert alert.volume_change_sd_percent == calc.volume_change_sd_percent
    assert "noise SD" in alert.criteria_met[0]
    assert run.comparison.growth_thresholds["min_sd_multiple"] == 2.0


def _study_without(rendered, key: str | None):
    """An in-memory study whose detection missed the ball ``key`` (its voxels become liver)."""
    labels = rendered.labels.copy()
    keep = []
    for f in rendered.findings:
        if rendered.key_of[f.id] == key:
            labels[labels == f.label] = 1
        else:
            keep.append(f)
    return study_from_arrays(Analysis(findings=keep), labels, rendered.volume, ct=rendered.volume)


@pytest.fixture(scope="module")
def same_anatomy():
    return render_study(PRIOR_BALLS, seed=21), render_study(PRIOR_BALLS, motion=MOTION, seed=22)


def test_lesion_missed_on_prior_is_an_equivocal_new_lesion(same_anatomy) -> None:
    pr, cu = same_anatomy
    res = compare_studies(_study_without(pr, "l2"), _study_without(cu, None), run_reasoning=False,
                          timestamp=False).comparison
    (n,) = res.new
    assert n.kind == "lesion" and n.visible_on_other_study is True
    assert n.contrast_hu_other_study == pytest.approx(n.contrast_hu, abs=12.0)
    assert res.recist.new_lesions == [] and res.recist.equivocal_new_lesions == [n.id]
    assert res.recist.category == "SD"
    assert any("probably present before" in w for w in res.warnings)


def test_target_missed_on_current_makes_recist_not_evaluable(same_anatomy) -> None:
    pr, cu = same_anatomy
    res = compare_studies(_study_without(pr, None), _study_without(cu, "l2"), run_reasoning=False,
                          timestamp=False).comparison
    (r,) = res.resolved
    assert r.visible_on_other_study is True
    status = {t.prior_id: t.status for t in res.recist.targets}
    assert sorted(status.values()) == ["measured", "not_measured"]
    assert res.recist.category == "NE"
    assert "could not be measured" in res.recist.rule
