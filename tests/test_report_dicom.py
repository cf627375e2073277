"""DICOM SEG and TID 1500 SR written by the report layer, read back with highdicom/pydicom."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from calcscope.io import load_ct
from calcscope.model import CALC_LABEL_BASE, Analysis, Finding, Masks
from calcscope.report import write_dicom_seg, write_outputs
from report_fixtures import make_analysis, make_volume_and_masks, write_dicom_series

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
REAL_SERIES = SHARED / "totalseg-example-ct" / "example_ct_dicom"

ALL_FILES = ["analysis.json", "fhir.json", "measurements.dcm", "report.html", "segmentation.ctbl",
             "segmentation.dcm", "segmentation.nii.gz"]


@pytest.fixture(scope="module")
def dicom_case(tmp_path_factory):
    root = tmp_path_factory.mktemp("dcm")
    vol0, masks = make_volume_and_masks()
    write_dicom_series(root / "series", vol0)
    vol = load_ct(root / "series")
    assert np.array_equal(vol.array, vol0.array)  # the series holds the fixture volume
    analysis = make_analysis(vol, masks)
    out = root / "out"
    files = write_outputs(out, analysis, vol, masks)
    return vol, masks, analysis, out, files


def test_dicom_files_written(dicom_case):
    *_, out, files = dicom_case
    assert [p.name for p in files] == ALL_FILES


def test_seg_round_trip(dicom_case):
    import highdicom as hd
    import pydicom

    vol, masks, analysis, out, _ = dicom_case
    seg = hd.seg.segread(out / "segmentation.dcm")
    src = [pydicom.dcmread(f, stop_before_pixels=True) for f in vol.source_files]
    assert seg.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"
    assert seg.SegmentationType == "BINARY"
    assert seg.FrameOfReferenceUID == src[0].FrameOfReferenceUID
    assert seg.StudyInstanceUID == src[0].StudyInstanceUID
    assert seg.PatientID == "CALC-TEST"
    labels = [s.SegmentLabel for s in seg.SegmentSequence]
    assert labels == ["liver", "dilated intrahepatic bile ducts", "lesion-001", "lesion-002",
                      "calc-001", "calc-002", "calc-003"]
    liver_seg = seg.SegmentSequence[0]
    assert liver_seg.SegmentedPropertyTypeCodeSequence[0].CodeValue == "10200004"
    assert liver_seg.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "91723000"
    calc_seg = seg.SegmentSequence[4]
    assert calc_seg.SegmentedPropertyTypeCodeSequence[0].CodeValue == "18115005"
    assert calc_seg.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "49755003"
    assert seg.SegmentSequence[2].SegmentedPropertyTypeCodeSequence[0].CodeValue == "52988006"
    assert seg.SegmentSequence[3].SegmentedPropertyTypeCodeSequence[0].CodeValue == "367643001"  # cyst
    assert seg.SegmentSequence[1].SegmentedPropertyTypeCodeSequence[0].CodeValue == "28273000"
    assert [s.TrackingID for s in seg.SegmentSequence][2:] == ["lesion-001", "lesion-002", "calc-001", "calc-002",
                                                               "calc-003"]
    # every source instance is referenced
    referenced = {uid for _, _, uid in seg.get_source_image_uids()}
    assert referenced == {str(d.SOPInstanceUID) for d in src}
    # geometry and pixels: segment s equals label_map == its value, voxel for voxel
    lm = masks.label_map()
    values = [int(v) for v in np.unique(lm) if v]
    n_frames = sum(int((lm[k] == v).any()) for k in range(lm.shape[0]) for v in values)
    assert int(seg.NumberOfFrames) == n_frames
    assert (int(seg.Rows), int(seg.Columns)) == lm.shape[1:]
    px = seg.get_pixels_by_source_instance(source_sop_instance_uids=list(vol.instance_uids),
                                           combine_segments=False)
    assert px.shape == (*lm.shape, len(values))
    for s, v in enumerate(values):
        np.testing.assert_array_equal(px[..., s].astype(bool), lm == v, err_msg=f"segment {s + 1} (label {v})")
    pps = seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    assert [float(x) for x in pps.PixelSpacing] == pytest.approx([vol.spacing_zyx[1], vol.spacing_zyx[2]])


def test_sr_measurements_equal_analysis_json(dicom_case):
    import highdicom as hd

    vol, masks, _, out, _ = dicom_case
    sr = hd.sr.srread(out / "measurements.dcm")
    seg = hd.seg.segread(out / "segmentation.dcm")
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR
    assert sr.CompletionFlag == "PARTIAL" and sr.VerificationFlag == "UNVERIFIED"
    assert sr.ContentSequence is not None
    data = json.loads((out / "analysis.json").read_text())
    findings = {f["id"]: f for f in data["findings"]}
    liver_group, *groups = sr.content.get_volumetric_roi_measurement_groups()
    assert [g.tracking_identifier for g in groups] == [f["id"] for f in data["findings"]]
    seg_numbers = {s.SegmentLabel: int(s.SegmentNumber) for s in seg.SegmentSequence}
    # the liver's own group comes first: its volume and median HU, referencing the liver segment
    assert liver_group.tracking_identifier == "liver"
    assert liver_group.finding_type.value == "10200004"
    assert liver_group.referenced_segment.referenced_segment_numbers == [seg_numbers["liver"]]
    seg_liver = next(sd for sd in seg.SegmentSequence if sd.SegmentLabel == "liver")
    assert liver_group.tracking_uid == seg_liver.TrackingUID  # the SR group and its segment share the UID
    got = {m.name.value + (":" + m.derivation.value if m.derivation is not None else ""): m.value
           for m in liver_group.get_measurements()}
    assert got == pytest.approx({"118565006": data["liver"]["volume_ml"] * 1000.0,
                                 "112031:373099004": data["liver"]["hu_median"]}, rel=1e-9)
    for g in groups:
        f = findings[g.tracking_identifier]
        ref = g.referenced_segment
        assert ref.referenced_sop_instance_uid == seg.SOPInstanceUID
        expected_label = "dilated intrahepatic bile ducts" if f["kind"] == "duct_dilatation" else f["id"]
        assert ref.referenced_segment_numbers == [seg_numbers[expected_label]]
        got = {}
        for m in g.get_measurements():
            key = m.name.value + (":" + m.derivation.value if m.derivation is not None else "")
            got[key] = (m.value, m.unit.value)
        assert got["118565006"] == (pytest.approx(f["volume_mm3"], rel=1e-9), "mm3")
        assert got["103339001"] == (pytest.approx(f["longest_diameter_mm"], rel=1e-9), "mm")
        assert got["103340004"] == (pytest.approx(f["short_axis_mm"], rel=1e-9), "mm")
        assert got["112031:373098007"] == (pytest.approx(f["hu_mean"], rel=1e-9), "[hnsf'U]")
        assert got["112031:56851009"] == (pytest.approx(f["hu_max"], rel=1e-9), "[hnsf'U]")
        assert [s.value.value for s in g.finding_sites] == ["10200004"]
    # evidence lists the SEG and the source series
    ev = {item.ReferencedSeriesSequence[0].SeriesInstanceUID for item in sr.CurrentRequestedProcedureEvidenceSequence}
    assert {vol.study_uid} == {item.StudyInstanceUID for item in sr.CurrentRequestedProcedureEvidenceSequence}
    assert ev  # at least the study is referenced
    all_series = {s.SeriesInstanceUID for item in sr.CurrentRequestedProcedureEvidenceSequence
                  for s in item.ReferencedSeriesSequence}
    assert {vol.series_uid, seg.SeriesInstanceUID} <= all_series


def test_dicom_deterministic(dicom_case, tmp_path):
    vol, masks, analysis, out, _ = dicom_case
    again = write_outputs(tmp_path / "again", analysis, vol, masks)
    for p in again:
        assert p.read_bytes() == (out / p.name).read_bytes(), p.name


def test_dicom_timestamp_follows_created(dicom_case, tmp_path):
    import pydicom

    vol, masks, analysis, _, _ = dicom_case
    stamped = analysis.model_copy(update={"created": "2025-03-04T05:06:07+00:00"})
    write_outputs(tmp_path / "o", stamped, vol, masks)
    for name in ("segmentation.dcm", "measurements.dcm"):
        ds = pydicom.dcmread(tmp_path / "o" / name)
        assert (ds.ContentDate, ds.ContentTime) == ("20250304", "050607")


def test_grid_mismatch_skips_dicom_with_warning(dicom_case, tmp_path):
    vol, masks, analysis, _, _ = dicom_case
    cropped = vol.with_array(vol.array.copy())
    cropped.source_files = vol.source_files[:-1]  # as if a slice had been dropped
    files = write_outputs(tmp_path / "o", analysis, cropped, masks)
    assert "segmentation.dcm" not in [p.name for p in files]
    data = json.loads((tmp_path / "o" / "analysis.json").read_text())
    assert data["warnings"][-1] == "DICOM SEG/SR not written: 19 source files for 20 slices"
    assert "DICOM SEG/SR not written" in (tmp_path / "o" / "report.html").read_text()


@pytest.mark.shared
def test_seg_and_sr_on_real_dicom_series(tmp_path):
    """Real anonymised series: SOP/Study/Series UIDs blanked in the data sets, JPEG 2000 pixels."""
    import highdicom as hd
    import pydicom

    from calcscope.io import load_mask_like

    if not REAL_SERIES.is_dir():
        pytest.skip(f"shared data absent: {REAL_SERIES.name} (see ../shared/data/MANIFEST.md)")
    vol = load_ct(REAL_SERIES)
    assert len(vol.source_files) == vol.shape[0] == 20
    seg_ref = load_mask_like(REAL_SERIES.parent / "example_seg_dicom.nii.gz", vol)
    liver = seg_ref == 5
    calcs = np.zeros(vol.shape, np.int32)
    zc, yc, xc = (int(round(c)) for c in np.argwhere(liver).mean(axis=0))
    calcs[zc, yc - 2:yc + 2, xc - 2:xc + 2] = 1
    masks = Masks(liver=liver, calcifications=calcs)
    vox = vol.voxel_volume_mm3
    analysis = Analysis(
        software={"calcscope": "test"},
        findings=[Finding(id="calc-001", kind="calcification", label=CALC_LABEL_BASE + 1,
                          centroid_voxel=(zc, yc - 0.5, xc - 0.5), volume_mm3=round(16 * vox, 4),
                          longest_diameter_mm=round(4 * vol.spacing_zyx[1], 4), hu_mean=410.5, hu_max=612.0)],
    )
    files = write_outputs(tmp_path / "o", analysis, vol, masks)
    assert [p.name for p in files] == ALL_FILES
    seg = hd.seg.segread(tmp_path / "o" / "segmentation.dcm")
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["liver", "calc-001"]
    # these files keep SOPInstanceUID only in their file meta information
    uids = [str(pydicom.dcmread(f, stop_before_pixels=True).file_meta.MediaStorageSOPInstanceUID)
            for f in vol.source_files]
    assert {uid for *_, uid in seg.get_source_image_uids()} == set(uids)
    assert seg.FrameOfReferenceUID == vol.frame_of_reference_uid
    assert seg.StudyInstanceUID.startswith("2.25.")  # stand-in for the blanked study UID
    px = seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, combine_segments=False)
    lm = masks.label_map()
    np.testing.assert_array_equal(px[..., 0].astype(bool), lm == 1)
    np.testing.assert_array_equal(px[..., 1].astype(bool), lm == 1001)
    assert int(liver.sum()) == int(px[..., 0].sum()) + 16
    data = json.loads((tmp_path / "o" / "analysis.json").read_text())
    assert any("no StudyInstanceUID" in w for w in data["warnings"])
    sr = hd.sr.srread(tmp_path / "o" / "measurements.dcm")
    (group,) = sr.content.get_volumetric_roi_measurement_groups()
    assert group.tracking_identifier == "calc-001"
    got = {m.name.value + (m.derivation.value if m.derivation else ""): m.value for m in group.get_measurements()}
    f = analysis.findings[0]
    assert got == pytest.approx({"118565006": f.volume_mm3, "103339001": f.longest_diameter_mm,
                                 "112031373098007": 410.5, "11203156851009": 612.0}, rel=1e-9)


def test_standalone_writers_match_write_outputs(dicom_case, tmp_path):
    from calcscope.report import write_dicom_sr

    vol, masks, analysis, out, _ = dicom_case
    # write_outputs filled the label table before digesting; do the same here
    data = json.loads((out / "analysis.json").read_text())
    filled = analysis.model_copy(update={"labels": data["labels"]})
    seg = write_dicom_seg(tmp_path / "seg.dcm", filled, vol, masks)
    sr = write_dicom_sr(tmp_path / "sr.dcm", filled, vol, seg)
    assert seg.path.read_bytes() == (out / "segmentation.dcm").read_bytes()
    assert sr.read_bytes() == (out / "measurements.dcm").read_bytes()
    assert seg.segment_numbers == {1: 1, 2: 2, 101: 3, 102: 4, 1001: 5, 1002: 6, 1003: 7}


def test_seg_and_sr_on_a_series_with_an_empty_character_set_and_no_finding(tmp_path):
    """dcmqi's 3 slices: empty Specific Character Set, a one-component patient name, no liver finding.

    The SEG then holds the liver alone and the SR the liver's own measurement group; both
    were skipped before (highdicom rejected the empty character set, and a TID 1500 report
    needs at least one measurement group).
    """
    import warnings

    import highdicom as hd
    import pydicom

    from calcscope.pipeline import analyze

    series = SHARED / "dcmqi-ct3slice-liver" / "ct-3slice"
    if not series.is_dir():
        pytest.skip(f"shared data absent: {series.name} (see ../shared/data/MANIFEST.md)")
    assert pydicom.dcmread(next(series.glob("*.dcm")), stop_before_pixels=True).SpecificCharacterSet == ""
    run = analyze(series, timestamp=False)
    assert run.analysis.findings == []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        files = write_outputs(tmp_path / "o", run.analysis, run.volume, run.masks)
    assert not [w for w in caught if "person name" in str(w.message)]
    assert [p.name for p in files] == ALL_FILES
    data = json.loads((tmp_path / "o" / "analysis.json").read_text())
    assert not [w for w in data["warnings"] if "SEG" in w or "SR" in w]
    seg = hd.seg.segread(tmp_path / "o" / "segmentation.dcm")
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["liver"]
    assert "SpecificCharacterSet" not in seg  # empty in the source: the default repertoire
    assert str(seg.PatientName) == "JANCT000"  # copied as the source holds it
    sr = hd.sr.srread(tmp_path / "o" / "measurements.dcm")
    (group,) = sr.content.get_volumetric_roi_measurement_groups()
    assert group.tracking_identifier == "liver"
    assert group.referenced_segment.referenced_segment_numbers == [1]
    volume = {m.name.value: m.value for m in group.get_measurements()}["118565006"]
    assert volume == pytest.approx(run.analysis.liver.volume_ml * 1000.0, rel=1e-9)


@pytest.mark.parametrize("value, expected", [("", None), (["", "ISO 2022 IR 100"], ["ISO 2022 IR 6", "ISO 2022 IR 100"]),
                                             ("ISO_IR 100", "ISO_IR 100")])
def test_empty_character_set_is_read_as_the_default_repertoire(value, expected):
    from pydicom.dataset import Dataset

    from calcscope.report._dicom import _normalise_character_set

    ds = Dataset()
    ds.SpecificCharacterSet = value
    _normalise_character_set(ds)
    if expected is None:
        assert "SpecificCharacterSet" not in ds
    else:
        got = ds.SpecificCharacterSet
        assert (list(got) if not isinstance(got, str) else got) == expected


def test_sr_without_any_measurement_is_skipped_with_a_warning(dicom_case, tmp_path):
    """No liver summary and no measured finding: TID 1500 has nothing to hold, so the DICOM pair
    is skipped with a warning (not an internal error) and the other files are written."""
    vol, masks, analysis, _, _ = dicom_case
    bare = analysis.model_copy(update={"liver": None, "findings": []})
    files = write_outputs(tmp_path / "o", bare, vol, masks)
    names = [p.name for p in files]
    assert "measurements.dcm" not in names and "analysis.json" in names and "report.html" in names
    data = json.loads((tmp_path / "o" / "analysis.json").read_text())
    assert any("no measurement to report" in w for w in data["warnings"])
