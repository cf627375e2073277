"""``fhir.json``: a FHIR R5 Bundle (type ``collection``) with one DiagnosticReport and
one Observation per finding, validated with the ``fhir.resources`` models.

The FHIR version is stated in the Bundle itself as ``Bundle.meta.tag`` with the
code system ``http://hl7.org/fhir/FHIR-version`` and code ``5.0.0``. Resource ids
and ``fullUrl`` values are name-based UUIDs derived from the content digest, so the
same analysis always yields the same bundle; ``Bundle.timestamp`` and
``DiagnosticReport.issued`` appear only when the analysis carries a timestamp.
"""

from __future__ import annotations

import datetime as _dt
import json
from typing import Any

from ..model import DISCLAIMER, Analysis, Finding
from ._common import KIND_WORDS, analysis_digest, stable_uuid

__all__ = ["build_fhir_bundle", "fhir_json_bytes", "FHIR_VERSION"]

FHIR_VERSION = "5.0.0"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
KIND_SYSTEM = "urn:calcscope:finding-kind"
FINDING_ID_SYSTEM = "urn:calcscope:finding-id"

#: SNOMED CT concept of each finding kind (None: calcscope's own code only)
KIND_SNOMED: dict[str, tuple[str, str] | None] = {
    "calcification": ("18115005", "Pathologic calcification, calcified structure"),
    "lesion": ("52988006", "Lesion"),
    "cyst": ("367643001", "Cyst"),
    "duct_dilatation": ("25322007", "Dilatation"),
    "duct_stone": None,
}
LIVER = {"system": SNOMED, "code": "10200004", "display": "Liver"}

#: (Finding attribute, code system, code, display, UCUM unit) of each Observation component
COMPONENTS: tuple[tuple[str, str, str, str, str], ...] = (
    ("volume_mm3", SNOMED, "118565006", "Volume", "mm3"),
    ("longest_diameter_mm", SNOMED, "103339001", "Long axis", "mm"),
    ("short_axis_mm", SNOMED, "103340004", "Short axis", "mm"),
    ("hu_mean", DCM, "112181", "Mean Attenuation Coefficient", "[hnsf'U]"),
    ("hu_max", DCM, "112180", "Maximum Attenuation Coefficient", "[hnsf'U]"),
)


def _quantity(value: float, unit: str) -> dict[str, Any]:
    return {"value": round(float(value), 4), "unit": unit, "system": UCUM, "code": unit}


def _fhir_datetime(created: str | None) -> str | None:
    if not created:
        return None
    try:
        t = _dt.datetime.fromisoformat(created)
    except ValueError:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=_dt.timezone.utc)
    return t.isoformat()


def _finding_text(f: Finding) -> str:
    parts = [KIND_WORDS.get(f.kind, f.kind)]
    size = f.longest_diameter_mm if f.longest_diameter_mm is not None else f.size_mm
    if size is not None:
        parts.append(f"{size:.1f} mm")
    if f.lobe:
        parts.append(f"{f.lobe} lobe")
    if f.segment:
        parts.append(f"segment {f.segment}")
    if f.shape:
        parts.append(f"shape {f.shape}")
    if f.location:
        parts.append("location " + ", ".join(x.replace("_", " ") for x in f.location))
    if f.relation and f.parent_id:
        parts.append(f"{f.relation} of {f.parent_id}")
    if f.centroid_mm is not None:
        parts.append("centre LPS (" + ", ".join(f"{c:.1f}" for c in f.centroid_mm) + ") mm")
    return "; ".join(parts)


def _observation(f: Finding, obs_id: str, when: str | None) -> dict[str, Any]:
    codings = [{"system": KIND_SYSTEM, "code": f.kind, "display": KIND_WORDS.get(f.kind, f.kind)}]
    sct = KIND_SNOMED.get(f.kind)
    if sct is not None:
        codings.insert(0, {"system": SNOMED, "code": sct[0], "display": sct[1]})
    components = []
    for attr, system, code, display, unit in COMPONENTS:
        v = getattr(f, attr)
        if attr == "longest_diameter_mm" and v is None:
            v = f.size_mm
        if attr == "hu_mean" and v is None:
            v = f.hu
        if v is None:
            continue
        components.append({
            "code": {"coding": [{"system": system, "code": code, "display": display}], "text": display},
            "valueQuantity": _quantity(v, unit),
        })
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "id": obs_id,
        "status": "preliminary",
        "category": [{
            "coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                "code": "imaging",
                "display": "Imaging",
            }]
        }],
        "code": {"coding": codings, "text": f"Liver {KIND_WORDS.get(f.kind, f.kind)} ({f.id or 'finding'})"},
        "bodySite": {"coding": [LIVER], "text": f"liver, {f.lobe} lobe" if f.lobe else "liver"},
        "valueString": _finding_text(f),
        "note": [{"text": "Image-derived measurement by calcscope; to be confirmed by a physician."}],
    }
    if f.id:
        obs["identifier"] = [{"system": FINDING_ID_SYSTEM, "value": f.id}]
    if when:
        obs["effectiveDateTime"] = when
    if f.count > 1:
        obs["note"].append({"text": f"Group of {f.count} alike findings."})
    if components:
        obs["component"] = components
    return obs


def build_fhir_bundle(analysis: Analysis, *, digest: str | None = None) -> dict[str, Any]:
    """The FHIR R5 Bundle of ``analysis`` as a JSON-ready dict, validated by ``fhir.resources``.

    Parameters
    ----------
    analysis:
        What to report.
    digest:
        Content digest (see :func:`calcscope.report.content_digest`) from which
        every id is derived; by default a digest of the analysis alone (without
        ``created`` and ``timings_s``).

    Raises
    ------
    pydantic.ValidationError
        When the bundle does not satisfy the R5 models (a programming error).
    """
    from fhir.resources.bundle import Bundle

    if digest is None:
        digest = analysis_digest(analysis)
    when = _fhir_datetime(analysis.created)
    obs_entries = []
    for i, f in enumerate(analysis.findings):
        oid = stable_uuid(digest, "observation", f.id or f"#{i}")
        obs_entries.append({"fullUrl": f"urn:uuid:{oid}", "resource": _observation(f, oid, when)})
    diff = analysis.differential
    impression = (diff.impression if diff and diff.impression else "").strip()
    if not impression:
        impression = (
            f"{len(analysis.findings)} finding(s) recorded; no differential was computed."
            if analysis.findings else "No liver calcification, lesion or dilated duct was detected."
        )
    disclaimer = analysis.disclaimer or DISCLAIMER
    rid = stable_uuid(digest, "diagnostic-report")
    report: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "id": rid,
        "identifier": [{"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{rid}"}],
        "status": "preliminary",
        "category": [{
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "RAD",
                        "display": "Radiology"}]
        }],
        "code": {
            "coding": [{"system": LOINC, "code": "18748-4", "display": "Diagnostic imaging study"}],
            "text": "CT liver calcification and lesion analysis (calcscope decision support)",
        },
        "conclusion": f"{impression}\n\n{disclaimer}",
    }
    if diff is not None and diff.ranked:
        report["conclusionCode"] = [
            {"text": f"{c.name} (estimated probability {c.probability:.2f})"} for c in diff.ranked
        ]
    if when:
        report["effectiveDateTime"] = when
        report["issued"] = when
    if obs_entries:
        report["result"] = [{"reference": e["fullUrl"]} for e in obs_entries]
    if analysis.input and analysis.input.series_uid:
        report["note"] = [{"text": f"Source DICOM series urn:oid:{analysis.input.series_uid}"}]
    bid = stable_uuid(digest, "bundle")
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": bid,
        "meta": {"tag": [{"system": "http://hl7.org/fhir/FHIR-version", "code": FHIR_VERSION,
                          "display": "FHIR R5"}]},
        "identifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{bid}"},
        "type": "collection",
        "entry": [{"fullUrl": f"urn:uuid:{rid}", "resource": report}, *obs_entries],
    }
    if when:
        bundle["timestamp"] = when
    Bundle.model_validate(bundle)
    return bundle


def fhir_json_bytes(bundle: dict[str, Any]) -> bytes:
    """The bundle as UTF-8 JSON (2-space indent, trailing newline)."""
    return (json.dumps(bundle, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
