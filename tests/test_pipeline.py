"""End-to-end pipeline: analyze on phantoms and real CT, CLI behaviour, atomic failure, determinism."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from calcscope.cli import main
from calcscope.errors import PipelineError
from calcscope.pipeline import STAGES, analyze, analyze_volume
from calcscope.synth import generate_phantom, write_phantom

SMALL = dict(shape_zyx=(64, 128, 128), spacing_zyx=(3.0, 2.0, 2.0))


@pytest.fixture(scope="module")
def metastases_case(tmp_path_factory) -> Path:
    """A small portal-phase phantom of calcified metastases written as NIfTI, with its truth."""
    ph = generate_phantom("calcified_metastases", seed=0, phase="portal_venous", **SMALL)
    out = tmp_path_factory.mktemp("case")
    write_phantom(ph, out)
    return out


def test_analyze_finds_calcified_metastases_and_ranks_them_first(metastases_case):
    ctx = {"age": 54, "sex": "female", "known_malignancy": True, "primary_site": "breast"}
    run = analyze(metastases_case / "ct.nii.gz", context=ctx, timestamp=False)
    a = run.analysis
    assert a.phase.phase.value == "portal_venous"
    kinds = [f.kind for f in a.findings]
    assert kinds.count("lesion") >= 3
    calcs = [f for f in a.findings if f.kind == "calcification"]
    assert len(calcs) >= 3
    # calcifications sit in lesions: the seeds' "hypodense calcified lesions"
    assert sum(f.parent_id is not None and f.parent_id.startswith("lesion") for f in calcs) >= 3
    for f in a.findings:
        assert f.centroid_mm is not None and f.centroid_voxel is not None
        # LPS mm and (z, y, x) index describe the same point
        back = run.volume.voxel_to_mm(f.centroid_voxel)
        assert back == pytest.approx(f.centroid_mm, abs=2e-3)  # both rounded to 1e-3
    top = a.differential.ranked[0]
    assert top.condition_id == "calcified_metastasis"
    assert "breast" in top.details.get("suggested_primary_sites", [])
    assert a.differential.disclaimer and "not a diagnostic device" in a.disclaimer
    # the label table names every finding's label and the liver
    for f in a.findings:
        assert str(f.label) in a.labels
    assert a.labels["1"] == "liver"
    assert set(run.timings_s) == set(STAGES)
    assert a.timings_s == {} and a.created is None


def test_metastases_without_calcium_are_found_and_ranked_as_metastases():
    # seed 004: scattered hypodense masses in a patient with a known primary; no calcium, so
    # the calcified-metastasis entry must not lead
    from calcscope.cli._demo import DEMO_CONTEXTS

    ph = generate_phantom("liver_metastases", seed=0, phase="portal_venous", **SMALL)
    run = analyze_volume(ph.volume, context=DEMO_CONTEXTS["liver_metastases"], timestamp=False)
    a = run.analysis
    truth = [o for o in ph.truth.lesions]
    assert len(truth) >= 4
    lesions = [f for f in a.findings if f.kind == "lesion"]
    assert not [f for f in a.findings if f.kind == "calcification"]
    # every deposit of 10 mm or more is reported at its place
    for o in truth:
        if o.size_mm >= 10:
            assert any(f.centroid_mm is not None and sum((p - q) ** 2 for p, q in zip(f.centroid_mm, o.centre_mm)) ** 0.5 < 0.5 * o.size_mm
                       for f in lesions), o.id
    d = a.differential
    assert d.ranked[0].condition_id == "liver_metastasis" and not d.insufficient_evidence
    assert {r.condition_id: r.probability for r in d.ranked}["calcified_metastasis"] < 0.2
    actions = " ".join(r.action for r in d.recommendations)
    assert "multidisciplinary" in actions and "ALP" in actions
    # the primary is known: no search for it
    assert "Look actively for the primary" not in actions


def test_cli_analyze_writes_reports_and_is_deterministic(metastases_case, tmp_path):
    out1, out2 = tmp_path / "r1", tmp_path / "r2"
    ct = str(metastases_case / "ct.nii.gz")
    assert main(["analyze", ct, "--out", str(out1), "--no-timestamp", "--quiet"]) == 0
    assert main(["analyze", ct, "--out", str(out2), "--no-timestamp", "--quiet"]) == 0
    names = sorted(p.name for p in out1.iterdir())
    assert names == ["analysis.json", "fhir.json", "report.html", "segmentation.ctbl", "segmentation.nii.gz"]
    for name in names:
        assert (out1 / name).read_bytes() == (out2 / name).read_bytes(), name
    doc = json.loads((out1 / "analysis.json").read_text())
    assert doc["schema_version"] and doc["input"]["sha256"]
    # an existing folder is refused without --force and left untouched
    before = (out1 / "analysis.json").read_bytes()
    assert main(["analyze", ct, "--out", str(out1), "--quiet"]) == 13
    assert (out1 / "analysis.json").read_bytes() == before


def test_cli_analyze_json_to_stdout(metastases_case, capsys):
    assert main(["analyze", str(metastases_case / "ct.nii.gz"), "--json", "--no-timestamp"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert any(f["kind"] == "calcification" for f in doc["findings"])


def test_stage_failure_names_the_stage_and_leaves_no_output(metastases_case, tmp_path, monkeypatch, capsys):
    import calcscope.detect

    def broken(*args, **kwargs):
        raise ValueError("synthetic failure")

    monkeypatch.setattr(calcscope.detect, "find_lesions_and_ducts", broken)
    with pytest.raises(PipelineError, match="'lesions' stage failed"):
        analyze(metastases_case / "ct.nii.gz", timestamp=False)
    out = tmp_path / "never"
    assert main(["analyze", str(metastases_case / "ct.nii.gz"), "--out", str(out), "--quiet"]) == 14
    assert "lesions" in capsys.readouterr().err
    assert not out.exists()
    assert [p for p in tmp_path.iterdir()] == []


def test_bad_phase_and_context_are_usage_errors(metastases_case, tmp_path):
    ct = str(metastases_case / "ct.nii.gz")
    assert main(["analyze", ct, "--json", "--phase", "venous-ish"]) == 2
    bad = tmp_path / "ctx.yaml"
    bad.write_text("age: 300\n")
    assert main(["analyze", ct, "--json", "--context", str(bad)]) == 11


def test_normal_liver_gives_no_findings():
    ph = generate_phantom("normal", seed=1, phase="arterial", **SMALL)
    run = analyze_volume(ph.volume, timestamp=False)
    assert [f for f in run.analysis.findings if f.kind == "calcification"] == []
    assert run.analysis.differential.insufficient_evidence


@pytest.mark.parametrize(
    "relpath",
    ["totalseg-example-ct/example_ct.nii.gz", "totalseg-example-ct/example_ct_dicom"],
)
def test_untouched_real_scans_give_no_liver_calcification(shared_data, relpath):
    """The shared example livers contain no calcification (MANIFEST.md): a negative control
    for the whole pipeline, including automatic liver segmentation and its capsular margin."""
    run = analyze(shared_data / relpath, timestamp=False)
    assert [f.id for f in run.analysis.findings if f.kind == "calcification"] == []
    assert 500 < run.analysis.liver.volume_ml < 2500


def test_cropped_angiogram_is_not_read_as_non_contrast(shared_data):
    """The shared thoracic CT angiogram, cropped around the aorta, reaches into the upper
    abdomen. Its aorta reading at the liver levels is unusable (there the aorta is 26-35 mm
    wide and its centre reads 50-225 HU: the contrast lumen is eccentric in a mural thrombus)
    while the liver vessels are enhanced: the phase is reported unknown, not non-contrast (which
    would put the calcium threshold at 130 HU among enhanced vessels), and the report says so.
    The noise peaks of the hilar arteries (noise 34 HU) that crossed the threshold are
    rejected as noise on a vessel (10 reported calcifications before that rule, 3 after)."""
    run = analyze(shared_data / "totalseg-aorta-cta" / "ct_cropped.nii.gz", timestamp=False)
    assert run.analysis.phase.phase.value == "unknown"
    assert any("contrast phase could not be estimated" in w for w in run.analysis.warnings)
    calc = [f for f in run.analysis.findings if f.kind == "calcification"]
    assert len(calc) <= 3
    stage = next(p for p in run.analysis.provenance if p["stage"] == "calcifications")
    assert stage["rejected"]["noise_on_vessel"] >= 5
