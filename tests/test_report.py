"""Report layer: analysis.json, report.html, segmentation.nii.gz (+ .ctbl), fhir.json, atomic writing."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from calcscope.errors import OutputError
from calcscope.model import Analysis, Masks
from calcscope.report import (
    FHIR_VERSION,
    analysis_json_bytes,
    build_fhir_bundle,
    colour_table_text,
    content_digest,
    render_html,
    write_outputs,
)
from report_fixtures import make_analysis, make_volume_and_masks

NON_DICOM_FILES = ["analysis.json", "fhir.json", "report.html", "segmentation.ctbl", "segmentation.nii.gz"]


@pytest.fixture(scope="module")
def case():
    vol, masks = make_volume_and_masks()
    return vol, masks, make_analysis(vol, masks)


@pytest.fixture(scope="module")
def written(case, tmp_path_factory):
    vol, masks, analysis = case
    out = tmp_path_factory.mktemp("rep") / "out"
    files = write_outputs(out, analysis, vol, masks)
    return out, files


def test_files_written(written):
    out, files = written
    assert [p.name for p in files] == NON_DICOM_FILES
    assert all(p.parent == out and p.stat().st_size > 0 for p in files)
    # no temporary folder left beside the output
    assert sorted(p.name for p in out.parent.iterdir()) == ["out"]


def test_analysis_json_round_trip(written, case):
    out, _ = written
    _, _, analysis = case
    raw = (out / "analysis.json").read_bytes()
    assert raw.endswith(b"}\n") and raw.startswith(b'{\n  "schema_version"')
    back = Analysis.model_validate_json(raw)
    assert [f.id for f in back.findings] == [f.id for f in analysis.findings]
    assert back.findings[0].volume_mm3 == analysis.findings[0].volume_mm3
    assert back.created is None
    # the label table was filled from the label map (analysis.labels was empty)
    assert back.labels == {"1": "liver", "2": "bile_duct_dilated", "101": "lesion-001", "102": "lesion-002",
                           "1001": "calc-001", "1002": "calc-002", "1003": "calc-003"}


def test_analysis_json_bytes_stable_order(case):
    _, _, analysis = case
    a = analysis_json_bytes(analysis)
    b = analysis_json_bytes(Analysis.model_validate_json(a))
    assert a == b
    keys = list(json.loads(a))
    assert keys[:4] == ["schema_version", "software", "created", "input"]


def test_label_map_aligns_voxel_for_voxel(written, case):
    import nibabel as nib
    import SimpleITK as sitk

    out, _ = written
    vol, masks, _ = case
    img = sitk.ReadImage(str(out / "segmentation.nii.gz"))
    arr = sitk.GetArrayFromImage(img)
    np.testing.assert_array_equal(arr, masks.label_map())
    assert arr.dtype == np.uint16
    np.testing.assert_allclose(img.GetSpacing(), vol.spacing_xyz, atol=1e-6)
    np.testing.assert_allclose(img.GetOrigin(), vol.origin_lps, atol=1e-5)
    np.testing.assert_allclose(img.GetDirection(), vol.direction, atol=1e-6)
    # nibabel (RAS) sees the same grid: its affine is the LPS affine with x, y negated
    nii = nib.load(str(out / "segmentation.nii.gz"))
    lps_to_ras = np.diag([-1.0, -1.0, 1.0, 1.0])
    np.testing.assert_allclose(nii.affine, lps_to_ras @ vol.affine_lps(), atol=1e-4)
    data = np.asarray(nii.dataobj)  # (x, y, z) on disk
    np.testing.assert_array_equal(np.transpose(data, (2, 1, 0)), masks.label_map())
    # label counts match the masks
    assert int((arr == 101).sum()) == int(((masks.lesions == 1) & (masks.calcifications == 0)).sum())
    assert int((arr == 1003).sum()) == int((masks.calcifications == 3).sum()) == 3


def test_colour_table(written):
    out, _ = written
    lines = (out / "segmentation.ctbl").read_text().splitlines()
    rows = [ln.split() for ln in lines if not ln.startswith("#")]
    assert rows[0] == ["0", "background", "0", "0", "0", "0"]
    assert rows[1][:2] == ["1", "liver"]
    assert [r[1] for r in rows] == ["background", "liver", "bile_duct_dilated", "lesion-001", "lesion-002",
                                    "calc-001", "calc-002", "calc-003"]
    assert all(len(r) == 6 and all(0 <= int(v) <= 255 for v in r[2:]) for r in rows)
    assert lines[1] == "# 8 values"
    # names with white space are joined so Slicer's whitespace split keeps 6 columns
    assert "0 background" in colour_table_text({"5": "two words"}) and "5 two_words" in colour_table_text(
        {"5": "two words"})


def test_fhir_bundle_validates_r5(written, case):
    from fhir.resources.bundle import Bundle
    from fhir.resources.diagnosticreport import DiagnosticReport
    from fhir.resources.observation import Observation

    out, _ = written
    _, _, analysis = case
    data = json.loads((out / "fhir.json").read_text())
    bundle = Bundle.model_validate(data)
    assert bundle.type == "collection"
    assert FHIR_VERSION == "5.0.0"
    assert [(t.system, t.code) for t in bundle.meta.tag] == [("http://hl7.org/fhir/FHIR-version", "5.0.0")]
    report = bundle.entry[0].resource
    assert isinstance(report, DiagnosticReport)
    assert report.status == "preliminary"
    assert report.conclusion.startswith(analysis.differential.impression)
    assert analysis.disclaimer in report.conclusion
    obs = [e.resource for e in bundle.entry[1:]]
    assert all(isinstance(o, Observation) for o in obs)
    assert [o.identifier[0].value for o in obs] == [f.id for f in analysis.findings]
    assert [r.reference for r in report.result] == [e.fullUrl for e in bundle.entry[1:]]
    for o, f in zip(obs, analysis.findings):
        assert o.status == "preliminary"
        assert o.bodySite.coding[0].code == "10200004"
        comps = {c.code.coding[0].code: c.valueQuantity for c in o.component}
        val = {k: float(q.value) for k, q in comps.items()}
        assert val["118565006"] == pytest.approx(f.volume_mm3, abs=1e-4)
        assert comps["118565006"].code == "mm3" and comps["118565006"].system == "http://unitsofmeasure.org"
        assert val["103339001"] == pytest.approx(f.longest_diameter_mm, abs=1e-4)
        assert val["103340004"] == pytest.approx(f.short_axis_mm, abs=1e-4)
        assert val["112181"] == pytest.approx(f.hu_mean, abs=1e-4)
        assert comps["112181"].code == "[hnsf'U]"
        assert val["112180"] == pytest.approx(f.hu_max, abs=1e-4)
    # no timestamp anywhere without analysis.created
    assert "timestamp" not in data and "issued" not in data["entry"][0]["resource"]


def test_fhir_with_timestamp_and_without_differential(case):
    from fhir.resources.bundle import Bundle

    vol, masks, _ = case
    analysis = make_analysis(vol, masks, differential=False, created="2024-05-06T07:08:09")
    b = build_fhir_bundle(analysis, digest="x")
    parsed = Bundle.model_validate(b)
    assert b["timestamp"] == "2024-05-06T07:08:09+00:00"
    assert "no differential was computed" in parsed.entry[0].resource.conclusion


def test_html_parses_and_lists_every_finding(written, case):
    from bs4 import BeautifulSoup

    out, _ = written
    _, _, analysis = case
    html = (out / "report.html").read_text()
    soup = BeautifulSoup(html, "html.parser")
    rows = soup.select("#findings-table tbody tr")
    assert [r.find("td").get_text() for r in rows] == [f.id for f in analysis.findings]
    # one key image per finding plus the liver MIP, all embedded PNGs
    imgs = soup.find_all("img")
    assert len(imgs) == len(analysis.findings) + 1
    assert all(i["src"].startswith("data:image/png;base64,") for i in imgs)
    assert {f"img-{f.id}" for f in analysis.findings} <= {fig.get("id") for fig in soup.find_all("figure")}
    # self-contained: no external resource
    for tag, attr in (("script", "src"), ("link", "href"), ("img", "src")):
        for el in soup.find_all(tag):
            assert not el.get(attr, "data:").startswith(("http:", "https:", "//"))
    # disclaimer shown prominently at the top
    top = soup.find(id="disclaimer-top").get_text()
    assert "not a diagnostic device" in top.lower()
    # differential with probabilities, evidence with citations, recommendations, missing info
    dx = soup.select("#differential-table tbody tr")
    assert [r.find_all("td")[1].get_text() for r in dx] == ["Calcified metastasis", "Healed granuloma"]
    assert "55 %" in dx[0].get_text()
    ev = soup.find(id="evidence-calcified_metastasis").get_text()
    assert "seeds/001_fc47ebb88f3c1e60.txt" in ev and "Against: No known primary malignancy" in ev
    assert "Compare with prior imaging" in soup.find(id="recommendations").get_text()
    assert "prior imaging" in soup.find(id="missing").get_text()
    tech = soup.find(id="technique").get_text()
    assert "portal venous" in tech and "aorta 160 HU" in tech and "2.5 x 1.2 x 1 mm" in tech
    row = soup.find(id="row-calc-001").get_text(" ")
    assert "centre of lesion-001" in row and "3.6" in row


def test_html_escapes_text(written):
    out, _ = written
    html = (out / "report.html").read_text()
    assert "&lt;hypodense&gt;" in html and "<hypodense>" not in html
    assert "synthetic &lt;test&gt; CT" in html


def test_html_without_differential_or_images(case):
    from bs4 import BeautifulSoup

    vol, masks, _ = case
    analysis = make_analysis(vol, masks, differential=False)
    soup = BeautifulSoup(render_html(analysis), "html.parser")
    assert "No differential diagnosis was computed" in soup.find(id="impression").get_text()
    assert soup.find_all("img") == []
    assert len(soup.select("#findings-table tbody tr")) == len(analysis.findings)


def test_html_caps_calcification_images(case):
    from bs4 import BeautifulSoup

    vol, masks, analysis = case
    soup = BeautifulSoup(render_html(analysis, vol, masks, max_calcification_images=1), "html.parser")
    ids = [f["id"] for f in soup.select(".images figure")]
    # the largest calcification (calc-002 by volume) is kept, the other two only on the MIP
    assert ids == ["img-lesion-001", "img-lesion-002", "img-calc-002", "img-duct-001"]
    assert "2 smaller calcifications are not drawn" in soup.find(id="images").get_text()


def test_deterministic_bytes(case, tmp_path):
    vol, masks, analysis = case
    a = write_outputs(tmp_path / "a", analysis, vol, masks)
    b = write_outputs(tmp_path / "b", analysis, vol, masks)
    for pa, pb in zip(a, b):
        assert pa.name == pb.name
        assert pa.read_bytes() == pb.read_bytes(), pa.name


def test_digest_ignores_timestamp_and_timings(case):
    vol, masks, analysis = case
    lm = masks.label_map()
    d0 = content_digest(analysis, vol, lm)
    d1 = content_digest(analysis.model_copy(update={"created": "2024-01-01T00:00:00",
                                                    "timings_s": {"load": 1.5}}), vol, lm)
    assert d0 == d1
    lm2 = lm.copy()
    lm2[0, 0, 0] = 1
    assert content_digest(analysis, vol, lm2) != d0


def test_existing_dir_refused_without_force(case, tmp_path):
    vol, masks, analysis = case
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    with pytest.raises(OutputError) as ei:
        write_outputs(out, analysis, vol, masks)
    assert ei.value.exit_code == 13 and "--force" in str(ei.value)
    assert (out / "keep.txt").read_text() == "old"
    files = write_outputs(out, analysis, vol, masks, force=True)
    assert sorted(p.name for p in out.iterdir()) == NON_DICOM_FILES == [p.name for p in files]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_output_path_is_a_file(case, tmp_path):
    vol, masks, analysis = case
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(OutputError):
        write_outputs(f, analysis, vol, masks, force=True)


def test_failure_midway_leaves_nothing(case, tmp_path, monkeypatch):
    import calcscope.report._fhir as fhir_mod

    vol, masks, analysis = case

    def boom(*a, **k):
        raise RuntimeError("simulated failure while building FHIR")

    monkeypatch.setattr(fhir_mod, "build_fhir_bundle", boom)
    with pytest.raises(RuntimeError, match="simulated failure"):
        write_outputs(tmp_path / "out", analysis, vol, masks)
    assert list(tmp_path.iterdir()) == []


def test_failure_with_force_keeps_old_dir(case, tmp_path, monkeypatch):
    import calcscope.report._html as html_mod

    vol, masks, analysis = case
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("previous run")
    monkeypatch.setattr(html_mod, "render_html", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        write_outputs(out, analysis, vol, masks, force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert (out / "old.txt").read_text() == "previous run"


def test_no_masks_at_all(case, tmp_path):
    vol, _, analysis = case
    empty = analysis.model_copy(update={"findings": [], "differential": None, "calcification_pattern": None})
    files = write_outputs(tmp_path / "o", empty, vol, Masks())
    assert [p.name for p in files] == NON_DICOM_FILES
    html = (tmp_path / "o" / "report.html").read_text()
    assert "No calcification, lesion or dilated bile duct was detected" in html


@pytest.mark.parametrize(
    "direction",
    [
        (1, 0, 0, 0, 1, 0, 0, 0, 1),  # LPS
        (-1, 0, 0, 0, -1, 0, 0, 0, 1),  # RAS-like index axes
        (1, 0, 0, 0, 1, 0, 0, 0, -1),  # slices running inferior
        (0, 0, -1, 1, 0, 0, 0, -1, 0),  # sagittal acquisition: i -> P, j -> I, k -> R
    ],
)
def test_orienter_brings_arrays_to_spl(direction):
    from calcscope.model import Volume
    from calcscope.report._images import Orienter

    shape = (5, 6, 7)
    vol = Volume(array=np.zeros(shape, np.int16), spacing_zyx=(3.0, 2.0, 1.0), direction=direction)
    o = Orienter.from_volume(vol)
    rng = np.random.default_rng(0)
    for _ in range(5):
        a, b = (tuple(int(rng.integers(0, n)) for n in shape) for _ in range(2))
        arr = np.zeros(shape, np.uint8)
        arr[a], arr[b] = 1, 2
        out = o.apply(arr)
        pa = tuple(int(v) for v in o.point(np.array(a, float), shape))
        assert out[pa] == 1
        # moving along each output axis goes towards S, P, L in patient space
        la, lb = vol.voxel_to_mm(a), vol.voxel_to_mm(b)
        pb = o.point(np.array(b, float), shape)
        for axis, lps in ((0, 2), (1, 1), (2, 0)):
            if pb[axis] != pa[axis]:
                assert np.sign(pb[axis] - pa[axis]) == np.sign(lb[lps] - la[lps])
    assert o.spacing(vol.spacing_zyx) == tuple(float(vol.spacing_zyx[p]) for p in o.perm)


def test_key_image_png_is_clean_and_fixed_size(case):
    from PIL import Image

    from calcscope.report._images import finding_image, liver_mip_image

    vol, masks, analysis = case
    png = finding_image(vol, masks, analysis.findings[0])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"tEXt" not in png and b"tIME" not in png and b"iTXt" not in png
    img = Image.open(io.BytesIO(png))
    # 3.2 in at 100 DPI wide; height follows the crop's aspect ratio in mm
    assert img.size[0] == 320
    assert png == finding_image(vol, masks, analysis.findings[0])
    mip = liver_mip_image(vol, masks, [f for f in analysis.findings if f.kind == "calcification"])
    assert Image.open(io.BytesIO(mip)).size[1] == 360
    assert liver_mip_image(vol, Masks(), []) is None


def test_colour_table_keeps_pipeline_label_names(case, tmp_path):
    from bs4 import BeautifulSoup

    vol, masks, analysis = case
    named = analysis.model_copy(update={"labels": {"1": "liver", "101": "lesion lesion-001"}})
    write_outputs(tmp_path / "o", named, vol, masks)
    rows = [ln.split() for ln in (tmp_path / "o" / "segmentation.ctbl").read_text().splitlines()
            if not ln.startswith("#")]
    names = {r[0]: r[1] for r in rows}
    assert names["101"] == "lesion_lesion-001" and names["102"] == "lesion-002"
    data = json.loads((tmp_path / "o" / "analysis.json").read_text())
    assert data["labels"] == {"1": "liver", "101": "lesion lesion-001"}  # written as given
    soup = BeautifulSoup((tmp_path / "o" / "report.html").read_text(), "html.parser")
    assert "calcscope 0.1.0-test" in soup.find("header").get_text()
