"""Hand-made Analysis / Volume / Masks objects (and a DICOM series) for the report tests.

Grid 20 x 64 x 64 (z, y, x) with spacing (2.5, 1.2, 1.0) mm: a liver block, two
lesions (one with a calcification at its centre), three calcifications and a short
dilated duct. Measurements are computed from the masks so every number is real.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from calcscope.model import (
    CALC_LABEL_BASE,
    LESION_LABEL_BASE,
    Analysis,
    CalcificationPattern,
    Context,
    Differential,
    EvidenceItem,
    Finding,
    InputInfo,
    LiverSummary,
    Marker,
    Masks,
    Phase,
    PhaseEstimate,
    RankedCondition,
    Recommendation,
    Volume,
)

SHAPE = (20, 64, 64)
SPACING = (2.5, 1.2, 1.0)
ORIGIN = (-32.0, -40.0, -100.0)


def _ellipsoid(centre_zyx, radius_mm, spacing=SPACING, shape=SHAPE) -> np.ndarray:
    zz, yy, xx = np.indices(shape, dtype=float)
    d = (
        ((zz - centre_zyx[0]) * spacing[0]) ** 2
        + ((yy - centre_zyx[1]) * spacing[1]) ** 2
        + ((xx - centre_zyx[2]) * spacing[2]) ** 2
    )
    return d <= radius_mm**2


def make_volume_and_masks() -> tuple[Volume, Masks]:
    rng = np.random.default_rng(7)
    arr = np.full(SHAPE, -90, dtype=np.int16)
    liver = np.zeros(SHAPE, bool)
    liver[2:18, 10:54, 8:56] = True
    lesions = np.zeros(SHAPE, np.int32)
    l1 = _ellipsoid((8, 24, 22), 7.0) & liver
    l2 = _ellipsoid((12, 40, 44), 5.0) & liver
    lesions[l1] = 1
    lesions[l2] = 2
    calcs = np.zeros(SHAPE, np.int32)
    c1 = _ellipsoid((8, 24, 22), 1.6)  # centre of lesion 1
    c2 = _ellipsoid((5, 44, 20), 2.0) & liver
    c3 = np.zeros(SHAPE, bool)
    c3[14, 16, 48:51] = True  # a tiny linear one
    for n, m in enumerate((c1, c2, c3), start=1):
        calcs[m] = n
    ducts = np.zeros(SHAPE, bool)
    ducts[9:12, 32:34, 30:42] = True
    arr[liver] = 62
    arr[ducts] = 12
    arr[lesions > 0] = 25
    arr[calcs > 0] = 420
    arr = (arr + rng.normal(0, 6, SHAPE)).astype(np.int16)
    vol = Volume(array=arr, spacing_zyx=SPACING, origin_lps=ORIGIN, source="synthetic block")
    margin = np.zeros(SHAPE, bool)
    margin[1:19, 9:55, 7:57] = True
    margin &= ~liver
    lobes = np.zeros(SHAPE, np.uint8)
    lobes[liver] = 1
    lobes[:, :, 32:][liver[:, :, 32:]] = 2
    masks = Masks(liver=liver, liver_margin=margin, lobes=lobes, calcifications=calcs, lesions=lesions, ducts=ducts)
    return vol, masks


def _measure(vol: Volume, m: np.ndarray) -> dict:
    idx = np.argwhere(m)
    c = idx.mean(axis=0)
    ext = (idx.max(axis=0) - idx.min(axis=0) + 1) * np.asarray(vol.spacing_zyx)
    vals = vol.array[m].astype(float)
    return {
        "centroid_voxel": tuple(float(v) for v in c),
        "centroid_mm": tuple(float(v) for v in vol.voxel_to_mm(c)),
        "volume_mm3": round(float(m.sum() * vol.voxel_volume_mm3), 3),
        "longest_diameter_mm": round(float(ext.max()), 3),
        "short_axis_mm": round(float(sorted(ext[1:])[0]), 3),
        "hu_mean": round(float(vals.mean()), 3),
        "hu_max": float(vals.max()),
    }


def make_findings(vol: Volume, masks: Masks) -> list[Finding]:
    out = []
    shapes = {1: "punctate", 2: "coarse", 3: "linear"}
    for n in (1, 2):
        me = _measure(vol, masks.lesions == n)
        out.append(Finding(id=f"lesion-{n:03d}", kind="lesion" if n == 1 else "cyst", label=LESION_LABEL_BASE + n,
                           size_mm=me["longest_diameter_mm"], lobe="right" if n == 1 else "left",
                           density="hypodense", margin="well_defined", **me))
    for n in (1, 2, 3):
        me = _measure(vol, masks.calcifications == n)
        f = Finding(id=f"calc-{n:03d}", kind="calcification", label=CALC_LABEL_BASE + n,
                    size_mm=me["longest_diameter_mm"], shape=shapes[n], lobe="right" if n < 3 else "left",
                    **me)
        if n == 1:
            f.parent_id, f.relation, f.location = "lesion-001", "centre", ["in_lesion_centre"]
        out.append(f)
    out[0].children = ["calc-001"]
    me = _measure(vol, masks.ducts)
    out.append(Finding(id="duct-001", kind="duct_dilatation", label=2, size_mm=me["longest_diameter_mm"],
                       lobe="right", **me))
    return out


def make_differential() -> Differential:
    ev = EvidenceItem(statement="Calcification at the centre of a <hypodense> lesion", feature="calc_in_lesion_centre",
                      weight=1.2, citation="seeds/001_fc47ebb88f3c1e60.txt")
    against = EvidenceItem(statement="No known primary malignancy", feature="known_malignancy=false", weight=-0.7,
                           citation="seeds/002_example.txt")
    return Differential(
        knowledge_version="test-1",
        method="naive_bayes_llr",
        ranked=[
            RankedCondition(condition_id="calcified_metastasis", name="Calcified metastasis", probability=0.55,
                            summary="Mucinous primaries can calcify.", evidence_for=[ev], evidence_against=[against],
                            citations=["seeds/001_fc47ebb88f3c1e60.txt"]),
            RankedCondition(condition_id="granuloma", name="Healed granuloma", probability=0.30,
                            summary="Punctate calcifications after infection.", evidence_for=[], evidence_against=[]),
        ],
        impression="Findings suggest a calcified lesion in the right lobe; calcified metastasis is ranked first.",
        missing_information=["known primary malignancy", "prior imaging"],
        recommendations=[Recommendation(action="Compare with prior imaging", reason="Stability over time favours "
                                        "a benign cause", citation="seeds/001_fc47ebb88f3c1e60.txt")],
    )


def make_analysis(vol: Volume, masks: Masks, *, differential: bool = True, created: str | None = None) -> Analysis:
    findings = make_findings(vol, masks)
    return Analysis(
        software={"name": "calcscope", "version": "0.1.0-test"},
        created=created,
        input=InputInfo(path="ct.nii.gz", sha256="0" * 64, modality="CT", shape_zyx=vol.shape,
                        spacing_zyx_mm=vol.spacing_zyx, origin_lps_mm=vol.origin_lps,
                        orientation=vol.orientation_code(), series_uid=vol.series_uid,
                        description="synthetic <test> CT"),
        context=Context(age=61, sex="female", known_malignancy=False,
                        markers={"cea": Marker(value=3.1, unit="ng/mL", status="normal")}),
        phase=PhaseEstimate(phase=Phase.PORTAL_VENOUS, aorta_hu=160.0, portal_vein_hu=175.0, liver_hu=105.0,
                            reason="portal vein brighter than aorta"),
        liver=LiverSummary(method="threshold", volume_ml=float(masks.liver.sum() * vol.voxel_volume_mm3 / 1000),
                           hu_median=62.0, hu_iqr=(56.0, 68.0)),
        findings=findings,
        calcification_pattern=CalcificationPattern(count=3, distribution="scattered", size_mm_min=3.0,
                                                   size_mm_median=4.0, size_mm_max=5.0, right_lobe_count=2,
                                                   left_lobe_count=1, in_lesion_count=1),
        differential=make_differential() if differential else None,
        timings_s={},
    )


def write_dicom_series(folder: Path, vol: Volume, *, study_date: str = "20240102") -> list[Path]:
    """Write ``vol`` as a CT series (one file per z slice) with pydicom; deterministic UIDs."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    # pydicom's own root (as most tools write); deterministic through the entropy sources
    study = generate_uid(entropy_srcs=["study"])
    series = generate_uid(entropy_srcs=["series"])
    frame = generate_uid(entropy_srcs=["frame"])
    nz, ny, nx = vol.shape
    sz, sy, sx = vol.spacing_zyx
    paths = []
    for k in range(nz):
        sop = generate_uid(entropy_srcs=["sop", str(k)])
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = sop
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(str(folder / f"slice{k:03d}.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = sop
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = series
        ds.FrameOfReferenceUID = frame
        ds.Modality = "CT"
        ds.PatientName = "Test^Phantom"
        ds.PatientID = "CALC-TEST"
        ds.PatientBirthDate = ""
        ds.PatientSex = "F"
        ds.StudyDate = study_date
        ds.StudyTime = "101500"
        ds.AccessionNumber = ""
        ds.ReferringPhysicianName = ""
        ds.StudyID = "1"
        ds.SeriesNumber = 3
        ds.InstanceNumber = k + 1
        ds.Manufacturer = "pydicom-test"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImagePositionPatient = [vol.origin_lps[0], vol.origin_lps[1], vol.origin_lps[2] + k * sz]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [sy, sx]
        ds.SliceThickness = sz
        ds.PositionReferenceIndicator = ""
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = ny, nx
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.RescaleIntercept = 0
        ds.RescaleSlope = 1
        ds.RescaleType = "HU"
        ds.KVP = 120
        ds.PixelData = np.ascontiguousarray(vol.array[k].astype(np.int16)).tobytes()
        p = folder / f"slice{k:03d}.dcm"
        ds.save_as(p, enforce_file_format=True)
        paths.append(p)
    return paths
