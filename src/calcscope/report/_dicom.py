"""DICOM outputs for DICOM input: ``segmentation.dcm`` (SEG) and ``measurements.dcm`` (SR).

SEG
    A highdicom BINARY Segmentation referencing every source CT instance. Its
    segments are the non-zero values of ``segmentation.nii.gz`` in ascending order
    (segment 1 = liver, then the dilated ducts, lesions ``100 + n`` and
    calcifications ``1000 + n``), so the segments are disjoint and each one's pixels
    equal ``label_map == value`` exactly: the SEG and the NIfTI say the same thing.
    Segment labels are the finding ids; ``TrackingID`` is the finding id too.

SR
    A highdicom Comprehensive 3D SR holding a TID 1500 Measurement Report with one
    TID 1411 volumetric measurement group per finding that has a segment. Each group
    references its SEG segment (ReferencedSegment with the SEG's SOP instance and
    segment number) and carries volume (mm3), long axis (mm), short axis (mm) and the
    mean and maximum attenuation ([hnsf'U]), all with UCUM units.

UIDs are ``2.25.<integer>`` UIDs of name-based UUIDs (version 5) of the content
digest and the object's role, and ContentDate/ContentTime come from
``analysis.created`` or, without a timestamp, from the source StudyDate/StudyTime, so
two runs on the same input write byte-identical files.
"""

from __future__ import annotations

import datetime as _dt
import os
import uuid
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..model import CALC_LABEL_BASE, LABEL_DUCT, LABEL_LIVER, Analysis, Finding, Masks, Volume
from ._common import content_digest, label_name, present_labels, software_version, stable_uuid
from ._nifti import label_colour

__all__ = [
    "DicomMismatch",
    "SegResult",
    "read_source_datasets",
    "check_sources",
    "complete_sources",
    "write_dicom_seg",
    "write_dicom_sr",
    "SEG_SERIES_NUMBER",
    "SR_SERIES_NUMBER",
]

SEG_SERIES_NUMBER = 9901
SR_SERIES_NUMBER = 9902
_MANUFACTURER = "calcscope project"
_MODEL = "calcscope"


class DicomMismatch(ValueError):
    """The analysed grid no longer matches the DICOM source (so SEG/SR are not written)."""


@dataclass
class SegResult:
    """What :func:`write_dicom_seg` wrote: the file, the dataset, label value -> segment number, the digest."""

    path: Path
    dataset: object
    segment_numbers: dict[int, int]
    digest: str = ""


def _uid(digest: str, what: str) -> str:
    """A DICOM UID under the UUID arc 2.25 from a name-based (version 5) UUID of digest and role.

    ``pydicom.uid.generate_uid(prefix=None, ...)`` ignores its entropy sources and
    returns a random UUID, so the deterministic UUID is made here.
    """
    return "2.25." + str(uuid.UUID(stable_uuid(digest, "dicom", what)).int)


_TYPE2_COPIED = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
    "AccessionNumber", "ReferringPhysicianName", "StudyID",
)
_TYPE1_NEEDED = (
    "SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID",
    "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing",
)


def read_source_datasets(volume: Volume) -> list:
    """Read the source DICOM headers (no pixel data) of ``volume``, in its z order."""
    import pydicom

    out = []
    for f in volume.source_files:
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        meta = getattr(ds, "file_meta", None)
        # some exporters leave SOPClassUID/SOPInstanceUID empty in the data set and
        # keep them only in the file meta information
        if meta is not None:
            if not str(ds.get("SOPClassUID", "") or "") and meta.get("MediaStorageSOPClassUID"):
                ds.SOPClassUID = meta.MediaStorageSOPClassUID
            if not str(ds.get("SOPInstanceUID", "") or "") and meta.get("MediaStorageSOPInstanceUID"):
                ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        _normalise_character_set(ds)
        # type 2 attributes that highdicom copies into SEG/SR: present, possibly empty
        for kw in _TYPE2_COPIED:
            if kw not in ds:
                setattr(ds, kw, "")
        out.append(ds)
    return out


def _build(what: str, make):
    """Call highdicom's constructor ``make`` and turn its refusal into :class:`DicomMismatch`."""
    try:
        with _source_names_as_given():
            return make()
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise DicomMismatch(f"highdicom could not build the {what} from these source headers "
                            f"({type(exc).__name__}: {exc})") from exc


@contextmanager
def _source_names_as_given():
    """Copy the source's Patient/Referring names without highdicom's format advice.

    A single-component name such as an anonymiser's "JANCT000" is what the source
    holds; the SEG and SR must carry it unchanged, so the advice would only clutter
    the user's console.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*unlikely to represent the intended person name",
                                category=UserWarning)
        yield


def _normalise_character_set(ds) -> None:
    """Spell an empty Specific Character Set the way highdicom accepts it (in memory).

    An empty value means the default repertoire (PS3.3 C.12.1.1.2), which is what an
    absent attribute means too; an empty first value of a multi-valued set means the
    default repertoire with code extensions, 'ISO 2022 IR 6'. highdicom copies the
    attribute into the SEG and SR and rejects the empty string.
    """
    if "SpecificCharacterSet" not in ds:
        return
    value = ds.SpecificCharacterSet
    values = [str(value or "").strip()] if isinstance(value, str) or value is None else [str(v or "").strip() for v in value]
    if not any(values):
        del ds.SpecificCharacterSet
    elif not values[0]:
        ds.SpecificCharacterSet = ["ISO 2022 IR 6", *values[1:]]


def complete_sources(sources: list, digest: str) -> list[str]:
    """Give anonymised sources without Study/Series Instance UID stable stand-in UIDs (in memory).

    Some anonymisers blank these UIDs. The SEG and SR must carry a study and series,
    so a UID derived from the content digest is used for all source slices alike;
    the instances are still referenced by their own SOP Instance UIDs and frame of
    reference. Returns one note per attribute filled (added to the analysis warnings).
    """
    notes = []
    for kw in ("StudyInstanceUID", "SeriesInstanceUID"):
        if any(not str(ds.get(kw, "") or "") for ds in sources):
            stand_in = _uid(digest, f"source-{kw}")
            for ds in sources:
                if not str(ds.get(kw, "") or ""):
                    setattr(ds, kw, stand_in)
            notes.append(f"the source DICOM files have no {kw}; segmentation.dcm and measurements.dcm use "
                         f"the stand-in {stand_in}")
    return notes


def check_sources(volume: Volume, sources: list) -> None:
    """Raise :class:`DicomMismatch` unless the sources are one slice each along z of ``volume``."""
    nz, ny, nx = volume.shape
    if len(sources) != nz:
        raise DicomMismatch(f"{len(sources)} source files for {nz} slices")
    series = {str(ds.SeriesInstanceUID) for ds in sources}
    if len(series) != 1:
        raise DicomMismatch("the source files belong to several series")
    for ds in sources:
        if int(ds.Rows) != ny or int(ds.Columns) != nx:
            raise DicomMismatch(f"source slice is {ds.Rows}x{ds.Columns}, analysed grid is {ny}x{nx}")
        missing = [kw for kw in _TYPE1_NEEDED if not ds.get(kw)]
        if missing:
            raise DicomMismatch(f"a source file lacks {', '.join(missing)}")


def _content_datetime(analysis: Analysis, sources: list) -> tuple[str, str]:
    if analysis.created:
        try:
            t = _dt.datetime.fromisoformat(analysis.created)
            return t.strftime("%Y%m%d"), t.strftime("%H%M%S")
        except ValueError:
            pass
    ds = sources[0]
    date = str(getattr(ds, "StudyDate", "") or "") or "19000101"
    time = str(getattr(ds, "StudyTime", "") or "") or "000000"
    return date, time


def _fix_dates(ds, date: str, time: str) -> None:
    """Replace every date/time highdicom stamped with the wall clock by the fixed content date/time."""
    for kw_d, kw_t in (("ContentDate", "ContentTime"), ("InstanceCreationDate", "InstanceCreationTime"),
                       ("SeriesDate", "SeriesTime")):
        if kw_d in ds:
            setattr(ds, kw_d, date)
        if kw_t in ds:
            setattr(ds, kw_t, time)
    for item in ds.get("ContributingEquipmentSequence", []):
        if "ContributionDateTime" in item:
            item.ContributionDateTime = date + time


# root of the UIDs highdicom generates at random itself (e.g. DimensionOrganizationUID)
_HIGHDICOM_UID_ROOT = "1.2.826.0.1.3680043.10.511."


def _source_uids(sources: list) -> set[str]:
    found: set[str] = set()

    def visit(_dataset, elem) -> None:
        if elem.VR == "UI" and isinstance(elem.value, str):
            found.add(elem.value)

    for ds in sources:
        ds.walk(visit, recursive=True)
    return found


def _pin_random_uids(ds, digest: str, what: str, *, keep: set[str]) -> None:
    """Replace UIDs highdicom generated at random inside ``ds`` by stable ones.

    Only values under highdicom's own UID root that do not occur in the source
    data sets (``keep``) are replaced. Each distinct value is mapped, in order of
    first appearance, to a UID derived from the digest, so references between
    items stay consistent.
    """
    mapping: dict[str, str] = {}

    def visit(_dataset, elem) -> None:
        if (elem.VR == "UI" and isinstance(elem.value, str) and elem.value.startswith(_HIGHDICOM_UID_ROOT)
                and elem.value not in keep):
            if elem.value not in mapping:
                mapping[elem.value] = _uid(digest, f"{what}:pinned:{len(mapping)}")
            elem.value = mapping[elem.value]

    ds.walk(visit, recursive=True)


def _software_version(analysis: Analysis) -> str:
    return software_version(analysis)


def _findings_by_label(analysis: Analysis) -> dict[int, Finding]:
    out: dict[int, Finding] = {}
    for f in analysis.findings:
        if f.label is not None and f.label not in out:
            out[f.label] = f
    return out


def _segment_description(value: int, number: int, finding: Finding | None, analysis: Analysis, digest: str):
    import highdicom as hd
    from pydicom.sr.codedict import codes

    liver = codes.SCT.Liver
    family = codes.cid7162.MorphologicalOperations
    if value == LABEL_LIVER and analysis.liver is not None and "totalseg" in analysis.liver.method.lower():
        family = codes.cid7162.ArtificialIntelligence
    algo = hd.AlgorithmIdentificationSequence(name="calcscope", family=family, version=_software_version(analysis))
    algorithm_type = hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC
    regions = None
    if value == LABEL_LIVER:
        category, ptype, text = codes.SCT.AnatomicalStructure, liver, "liver"
        method = (analysis.liver.method if analysis.liver else "") or ""
        if "user" in method.lower() or "manual" in method.lower():
            algorithm_type, algo = hd.seg.SegmentAlgorithmTypeValues.MANUAL, None
    elif value == LABEL_DUCT:
        category, ptype, text = codes.SCT.AnatomicalStructure, codes.SCT.BileDuct, "dilated intrahepatic bile ducts"
        regions = [liver]
    else:
        category = codes.SCT.MorphologicallyAbnormalStructure
        kind = finding.kind if finding is not None else ("calcification" if value > CALC_LABEL_BASE else "lesion")
        ptype = {"calcification": codes.SCT.PathologicCalcification, "cyst": codes.SCT.Cyst}.get(
            kind, codes.SCT.Lesion)
        text = label_name(value, analysis)
        regions = [liver]
    r, g, b, _ = label_colour(value)
    return hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=text[:64],
        segmented_property_category=category,
        segmented_property_type=ptype,
        algorithm_type=algorithm_type,
        algorithm_identification=algo,
        tracking_uid=_uid(digest, f"tracking:{value}"),
        tracking_id=(finding.id if finding is not None and finding.id and value != LABEL_DUCT else text)[:64],
        anatomic_regions=regions,
        display_color=hd.color.CIELabColor.from_rgb(r, g, b),
    )


def write_dicom_seg(
    path: str | os.PathLike,
    analysis: Analysis,
    volume: Volume,
    masks: Masks,
    *,
    digest: str | None = None,
    label_map: np.ndarray | None = None,
    sources: list | None = None,
) -> SegResult:
    """Write the DICOM Segmentation of ``label_map`` referencing ``volume.source_files``.

    Parameters
    ----------
    path:
        File to write (``segmentation.dcm``).
    analysis, volume, masks:
        The analysis, the DICOM-derived volume and its masks.
    digest:
        Content digest from which UIDs are derived (default:
        :func:`calcscope.report.content_digest` of the inputs).
    label_map:
        Precomputed ``masks.label_map()``.
    sources:
        Source datasets already read by :func:`read_source_datasets`.

    Raises
    ------
    DicomMismatch
        The volume's grid does not match its source files, or the label map is empty.
    """
    import highdicom as hd

    lm = masks.label_map() if label_map is None else label_map
    if digest is None:
        digest = content_digest(analysis, volume, lm)
    if sources is None:
        sources = read_source_datasets(volume)
        complete_sources(sources, digest)
    check_sources(volume, sources)
    values = present_labels(lm)
    if not values:
        raise DicomMismatch("the label map is empty, so there is no segment to write")
    lut = np.zeros(max(values) + 1, dtype=np.uint16)
    numbers = {}
    for i, v in enumerate(values, start=1):
        lut[v] = i
        numbers[v] = i
    seg_array = lut[lm]
    seg_array = seg_array.astype(np.uint8 if len(values) < 256 else np.uint16)
    by_label = _findings_by_label(analysis)
    descriptions = [_segment_description(v, numbers[v], by_label.get(v), analysis, digest) for v in values]
    seg = _build("SEG", lambda: hd.seg.Segmentation(
        source_images=sources,
        pixel_array=seg_array,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=_uid(digest, "seg-series"),
        series_number=SEG_SERIES_NUMBER,
        sop_instance_uid=_uid(digest, "seg-instance"),
        instance_number=1,
        manufacturer=_MANUFACTURER,
        manufacturer_model_name=_MODEL,
        software_versions=_software_version(analysis),
        device_serial_number="none",
        content_description="calcscope liver, lesion, duct and calcification masks",
        content_label="CALCSCOPE",
        series_description="calcscope segmentation",
    ))
    date, time = _content_datetime(analysis, sources)
    _fix_dates(seg, date, time)
    _pin_random_uids(seg, digest, "seg", keep=_source_uids(sources))
    out = Path(path)
    seg.save_as(out, enforce_file_format=True)
    return SegResult(path=out, dataset=seg, segment_numbers=numbers, digest=digest)


def _measurements(f: Finding) -> list:
    import highdicom as hd
    from pydicom.sr.codedict import codes

    out = []
    longest = f.longest_diameter_mm if f.longest_diameter_mm is not None else f.size_mm
    hu_mean = f.hu_mean if f.hu_mean is not None else f.hu
    spec = (
        (codes.SCT.Volume, f.volume_mm3, codes.UCUM.CubicMillimeter, None),
        (codes.SCT.LongAxis, longest, codes.UCUM.Millimeter, None),
        (codes.SCT.ShortAxis, f.short_axis_mm, codes.UCUM.Millimeter, None),
        (codes.DCM.AttenuationCoefficient, hu_mean, codes.UCUM.HounsfieldUnit, codes.SCT.Mean),
        (codes.DCM.AttenuationCoefficient, f.hu_max, codes.UCUM.HounsfieldUnit, codes.SCT.Maximum),
    )
    for name, value, unit, derivation in spec:
        if value is None:
            continue
        out.append(hd.sr.Measurement(name=name, value=float(value), unit=unit, derivation=derivation))
    return out


def _referenced_segment(seg: SegResult, label: int):
    """SR reference to the segment holding ``label``, with its frames and source images.

    highdicom's ``from_segmentation`` looks for the segment number in each frame's
    functional groups; a SEG with a single segment keeps it in the shared groups, so
    that SEG is referenced by its frames and source series directly.
    """
    import highdicom as hd

    number = seg.segment_numbers[label]
    try:
        return hd.sr.ReferencedSegment.from_segmentation(seg.dataset, number)
    except AttributeError:
        ds = seg.dataset
        return hd.sr.ReferencedSegment(
            sop_class_uid=ds.SOPClassUID, sop_instance_uid=ds.SOPInstanceUID, segment_number=number,
            frame_numbers=list(range(1, int(ds.NumberOfFrames) + 1)),
            source_series=hd.sr.SourceSeriesForSegmentation(ds.ReferencedSeriesSequence[0].SeriesInstanceUID),
        )


def _liver_group(analysis: Analysis, seg: SegResult, digest: str, algo) -> list:
    """The liver's own measurement group (volume, median HU), first in the SR.

    It gives every report one group to hold even when the liver has no finding, which
    the TID 1500 measurement report requires.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    liver = analysis.liver
    if liver is None or LABEL_LIVER not in seg.segment_numbers:
        return []
    measurements = [hd.sr.Measurement(name=codes.SCT.Volume, value=float(liver.volume_ml) * 1000.0,
                                      unit=codes.UCUM.CubicMillimeter)]
    if liver.hu_median is not None:
        measurements.append(hd.sr.Measurement(name=codes.DCM.AttenuationCoefficient, value=float(liver.hu_median),
                                              unit=codes.UCUM.HounsfieldUnit, derivation=codes.SCT.Median))
    return [_roi_group(seg, LABEL_LIVER, "liver", codes.SCT.Liver, measurements, digest, algo)]


def _roi_group(seg: SegResult, label: int, identifier: str, finding_type, measurements: list, digest: str, algo):
    """One TID 1411 volumetric group for the SEG segment of ``label`` (tracking UID = the segment's)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    return hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=_uid(digest, f"tracking:{label}"), identifier=identifier),
        referenced_segment=_referenced_segment(seg, label),
        finding_type=finding_type,
        algorithm_id=algo,
        finding_sites=[hd.sr.FindingSite(anatomic_location=codes.SCT.Liver)],
        measurements=measurements,
    )


def _finding_type(f: Finding):
    from pydicom.sr.codedict import codes

    return {
        "calcification": codes.SCT.PathologicCalcification,
        "cyst": codes.SCT.Cyst,
        "lesion": codes.SCT.Lesion,
        "duct_dilatation": codes.SCT.Dilatation,
    }.get(f.kind, codes.SCT.Lesion)


def write_dicom_sr(
    path: str | os.PathLike,
    analysis: Analysis,
    volume: Volume,
    seg: SegResult,
    *,
    digest: str | None = None,
    sources: list | None = None,
) -> Path:
    """Write the TID 1500 measurement report (Comprehensive 3D SR) of ``analysis``.

    Every finding whose label has a segment in ``seg`` gets one volumetric
    measurement group referencing that segment; findings without a segment (e.g.
    written by hand) are left out of the SR (they remain in analysis.json and FHIR).

    Parameters
    ----------
    path:
        File to write (``measurements.dcm``).
    analysis, volume:
        The analysis and its DICOM-derived volume.
    seg:
        What :func:`write_dicom_seg` returned for the same analysis.
    digest:
        Content digest for the UIDs (default: the SEG's).
    sources:
        Source datasets already read by :func:`read_source_datasets`.

    Raises
    ------
    DicomMismatch
        highdicom refused the source headers.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    if digest is None:
        digest = seg.digest
    if sources is None:
        sources = read_source_datasets(volume)
        complete_sources(sources, digest)
    version = _software_version(analysis)
    algo = hd.sr.AlgorithmIdentification(name="calcscope", version=version)
    groups = _liver_group(analysis, seg, digest, algo)
    for f in analysis.findings:
        if f.label is None or f.label not in seg.segment_numbers:
            continue
        measurements = _measurements(f)
        if not measurements:
            continue
        groups.append(_roi_group(seg, f.label, f.id or label_name(f.label, analysis), _finding_type(f),
                                 measurements, digest, algo))
    if not groups:
        raise DicomMismatch("there is no measurement to report (no liver summary and no measured finding)")
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=_uid(digest, "device"), name="calcscope", manufacturer_name=_MANUFACTURER, model_name=_MODEL,
        ),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=codes.LN.CTUnspecifiedBodyRegion,
        imaging_measurements=groups,
    )
    sr = _build("SR", lambda: hd.sr.Comprehensive3DSR(
        evidence=[*sources, seg.dataset],
        content=report,
        series_instance_uid=_uid(digest, "sr-series"),
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=_uid(digest, "sr-instance"),
        instance_number=1,
        manufacturer=_MANUFACTURER,
        is_complete=False,
        is_final=False,
        is_verified=False,
        series_description="calcscope measurements",
    ))
    date, time = _content_datetime(analysis, sources)
    _fix_dates(sr, date, time)
    _pin_random_uids(sr, digest, "sr", keep=_source_uids(sources) | {seg.dataset.SOPInstanceUID})
    out = Path(path)
    sr.save_as(out, enforce_file_format=True)
    return out
