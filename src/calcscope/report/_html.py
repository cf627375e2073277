"""``report.html``: one self-contained page for a clinician (images embedded, no external resource)."""

from __future__ import annotations

import base64
from importlib.resources import files


from ..model import DISCLAIMER, SCHEMA_VERSION, Analysis, Finding, Masks, Volume
from ._common import KIND_WORDS, fmt, software_version
from ._images import Orienter, finding_image, liver_mip_image

__all__ = ["render_html", "MAX_CALCIFICATION_IMAGES"]

#: calcifications drawn one by one (largest first); the rest appear on the liver MIP
MAX_CALCIFICATION_IMAGES = 24

_PHASE_WORDS = {
    "non_contrast": "non-contrast",
    "arterial": "arterial",
    "portal_venous": "portal venous",
    "delayed": "delayed",
    "unknown": "unknown",
}

_CONTEXT_LABELS = {
    "age": "Age (years)",
    "sex": "Sex",
    "known_malignancy": "Known malignancy",
    "primary_site": "Primary site",
    "fever": "Fever",
    "leukocytosis": "Leukocytosis",
    "hbv": "Hepatitis B",
    "hcv": "Hepatitis C",
    "cirrhosis": "Cirrhosis",
    "collagen_vascular_disease": "Collagen vascular disease",
    "livestock_exposure": "Livestock exposure",
    "schistosomiasis_endemic": "Schistosomiasis-endemic exposure",
    "tuberculosis_history": "Tuberculosis history",
    "biliary_infection_history": "Biliary infection history",
    "notes": "Notes",
}


def _yes_no(v: object) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _context_rows(analysis: Analysis) -> list[tuple[str, str]]:
    ctx = analysis.context
    if ctx is None:
        return []
    rows: list[tuple[str, str]] = []
    for key, label in _CONTEXT_LABELS.items():
        v = getattr(ctx, key)
        if v is not None:
            rows.append((label, _yes_no(v)))
    for name, m in ctx.markers.items():
        parts = []
        if m.value is not None:
            parts.append(f"{m.value:g} {m.unit or ''}".strip())
        if m.status:
            parts.append(m.status.replace("_", " "))
        rows.append((f"Marker {name.upper().replace('_', '-')}", ", ".join(parts) or "given"))
    if ctx.prior_imaging_dates:
        rows.append(("Prior imaging", ", ".join(d.isoformat() for d in ctx.prior_imaging_dates)))
    return rows


def _technique_rows(analysis: Analysis, volume: Volume | None) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    inp = analysis.input
    if inp is not None:
        rows.append(("Input", f"{inp.description or inp.path} ({inp.modality})"))
        rows.append(("Grid (z, y, x)", " x ".join(str(n) for n in inp.shape_zyx) + " voxels"))
        rows.append(("Spacing (z, y, x)", " x ".join(f"{s:.3g}" for s in inp.spacing_zyx_mm) + " mm"))
        rows.append(("Orientation", inp.orientation))
        if inp.series_uid:
            rows.append(("Series UID", inp.series_uid))
    elif volume is not None:
        rows.append(("Input", f"{volume.source or 'in-memory volume'} ({volume.modality})"))
        rows.append(("Grid (z, y, x)", " x ".join(str(n) for n in volume.shape) + " voxels"))
        rows.append(("Spacing (z, y, x)", " x ".join(f"{s:.3g}" for s in volume.spacing_zyx) + " mm"))
        rows.append(("Orientation", volume.orientation_code()))
    thickness = None
    if volume is not None:
        thickness = volume.meta.get("slice_thickness_mm", volume.meta.get("slice_thickness"))
    if thickness is not None:
        rows.append(("Slice thickness", f"{float(thickness):.3g} mm"))
    elif volume is not None:
        rows.append(("Slice thickness", f"not recorded (slice spacing {volume.spacing_zyx[0]:.3g} mm)"))
    ph = analysis.phase
    if ph is not None:
        values = [
            (name, v)
            for name, v in (("aorta", ph.aorta_hu), ("portal vein", ph.portal_vein_hu), ("liver", ph.liver_hu),
                            ("spleen", ph.spleen_hu))
            if v is not None
        ]
        text = f"{_PHASE_WORDS.get(ph.phase.value, ph.phase.value)} ({ph.source})"
        if values:
            text += "; from " + ", ".join(f"{n} {v:.0f} HU" for n, v in values)
        if ph.reason:
            text += f". {ph.reason}"
        rows.append(("Contrast phase", text))
    liv = analysis.liver
    if liv is not None:
        text = f"{liv.volume_ml:.0f} mL by {liv.method}"
        if liv.hu_median is not None:
            text += f"; median {liv.hu_median:.0f} HU"
            if liv.hu_iqr is not None:
                text += f" (IQR {liv.hu_iqr[0]:.0f} to {liv.hu_iqr[1]:.0f})"
        if liv.right_lobe_ml is not None and liv.left_lobe_ml is not None:
            text += f"; right lobe {liv.right_lobe_ml:.0f} mL, left lobe {liv.left_lobe_ml:.0f} mL"
        if liv.capsular_margin_mm:
            text += f"; capsular margin searched {liv.capsular_margin_mm:g} mm"
        rows.append(("Liver", text))
        for note in liv.notes:
            rows.append(("Liver note", note))
    return rows


def _location_text(f: Finding) -> str:
    parts = []
    if f.lobe:
        parts.append(f"{f.lobe} lobe")
    if f.segment:
        parts.append(f.segment)
    if f.depth:
        parts.append(f.depth + (f" ({f.depth_mm:.1f} mm deep)" if f.depth_mm is not None else ""))
    for loc in f.location:
        word = loc.replace("_", " ")
        if word not in parts and f"{word}" != f"{f.lobe} lobe":
            parts.append(word)
    return ", ".join(parts) or "\u2013"


def _relation_text(f: Finding) -> str:
    parts = []
    if f.relation:
        parts.append(f.relation.replace("_", " ") + (f" of {f.parent_id}" if f.parent_id else ""))
    elif f.parent_id:
        parts.append(f"in {f.parent_id}")
    if f.children:
        parts.append("contains " + ", ".join(f.children))
    return "; ".join(parts) or "\u2013"


def _finding_row(f: Finding) -> dict[str, str]:
    size = f.longest_diameter_mm if f.longest_diameter_mm is not None else f.size_mm
    kind = KIND_WORDS.get(f.kind, f.kind)
    if f.count > 1:
        kind += f" (x{f.count})"
    return {
        "id": f.id or "\u2013",
        "kind": kind,
        "location": _location_text(f),
        "size": fmt(size),
        "short_axis": fmt(f.short_axis_mm),
        "volume": fmt(f.volume_mm3, 0),
        "hu_mean": fmt(f.hu_mean if f.hu_mean is not None else f.hu, 0),
        "hu_max": fmt(f.hu_max, 0),
        "shape": (f.shape or "\u2013").replace("_", " "),
        "relation": _relation_text(f),
    }


def _pattern_text(analysis: Analysis) -> str:
    p = analysis.calcification_pattern
    if p is None or p.count == 0:
        return ""
    text = f"Calcification pattern: {p.count} calcification{'s' if p.count != 1 else ''}"
    if p.distribution:
        text += f", distribution {p.distribution.replace('_', ' ')}"
    if p.size_mm_median is not None:
        text += f", size median {p.size_mm_median:.1f} mm"
        if p.size_mm_min is not None and p.size_mm_max is not None:
            text += f" (range {p.size_mm_min:.1f} to {p.size_mm_max:.1f} mm)"
    text += f"; right lobe {p.right_lobe_count}, left lobe {p.left_lobe_count}"
    text += f", in lesions {p.in_lesion_count}, in ducts {p.in_duct_count}, capsular {p.capsular_count}."
    if p.reason:
        text += f" {p.reason}"
    return text


def _caption(f: Finding) -> str:
    size = f.longest_diameter_mm if f.longest_diameter_mm is not None else f.size_mm
    bits = [f"{f.id}: {KIND_WORDS.get(f.kind, f.kind)}"]
    if size is not None:
        bits.append(f"{size:.1f} mm")
    hu = f.hu_mean if f.hu_mean is not None else f.hu
    if hu is not None:
        bits.append(f"mean {hu:.0f} HU")
    if f.lobe:
        bits.append(f"{f.lobe} lobe")
    window = "W 1000 / L 250" if f.kind == "calcification" else "W 400 / L 40"
    return ", ".join(bits) + f". Axial slice, {window}."


def _b64(png: bytes) -> str:
    return base64.b64encode(png).decode("ascii")


def _select_for_images(findings: list[Finding], max_calcification_images: int) -> tuple[list[Finding], int]:
    calcs = [f for f in findings if f.kind == "calcification" and f.centroid_voxel is not None]
    keep_calcs = sorted(calcs, key=lambda f: (-(f.volume_mm3 or 0.0), f.id or ""))[:max_calcification_images]
    keep_ids = {id(f) for f in keep_calcs}
    chosen = [
        f for f in findings
        if f.centroid_voxel is not None and (f.kind != "calcification" or id(f) in keep_ids)
    ]
    return chosen, len(calcs) - len(keep_calcs)


def render_html(
    analysis: Analysis,
    volume: Volume | None = None,
    masks: Masks | None = None,
    *,
    has_dicom: bool = False,
    max_calcification_images: int = MAX_CALCIFICATION_IMAGES,
) -> str:
    """Render the report page.

    Parameters
    ----------
    analysis:
        What to report.
    volume, masks:
        The analysed CT and its masks, for the key images; without them the page
        has text and tables only.
    has_dicom:
        Mention the DICOM SEG/SR files in the footer.
    max_calcification_images:
        Calcifications drawn one by one (the largest by volume); all of them are
        marked on the liver MIP.

    Returns
    -------
    str
        The HTML document. Every text from the analysis is HTML-escaped; images are
        base64 PNG data URIs, so the page needs no other file and no network.
    """
    import jinja2

    key_images: list[dict[str, str]] = []
    mip = None
    note = ""
    if volume is not None and masks is not None:
        orienter = Orienter.from_volume(volume)
        chosen, left_out = _select_for_images(analysis.findings, max_calcification_images)
        for f in chosen:
            png = finding_image(volume, masks, f, orienter=orienter)
            if png is not None:
                key_images.append({"id": f.id or f.kind, "png": _b64(png), "caption": _caption(f)})
        if left_out:
            note = (f"{left_out} smaller calcification{'s are' if left_out != 1 else ' is'} not drawn one by one; "
                    "every calcification is marked on the liver MIP.")
        calcs = [f for f in analysis.findings if f.kind == "calcification"]
        png = liver_mip_image(volume, masks, calcs, orienter=orienter)
        if png is not None:
            mip = _b64(png)
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    template = env.from_string(
        (files("calcscope.report") / "templates" / "report.html.j2").read_text(encoding="utf-8")
    )
    return template.render(
        software_version=software_version(analysis),
        schema_version=analysis.schema_version or SCHEMA_VERSION,
        created=analysis.created,
        input=analysis.input,
        disclaimer=analysis.disclaimer or DISCLAIMER,
        context_rows=_context_rows(analysis),
        technique_rows=_technique_rows(analysis, volume),
        pattern_text=_pattern_text(analysis),
        findings=[_finding_row(f) for f in analysis.findings],
        key_images=key_images,
        mip=mip,
        images_note=note,
        differential=analysis.differential,
        warnings=analysis.warnings,
        has_dicom=has_dicom,
    )


