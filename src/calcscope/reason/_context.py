"""Clinical context and findings documents: loading, validation, marker reference ranges.

``load_context`` reads YAML or JSON into :class:`calcscope.model.Context`; every problem
(unknown field, impossible value, wrong unit, contradiction) raises
:class:`calcscope.errors.ContextError` naming the field. ``load_findings`` does the same
for :class:`calcscope.model.FindingsDocument` with :class:`calcscope.errors.FindingsError`.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import ValidationError

from ..errors import ContextError, FindingsError, InputNotFoundError
from ..model import SCHEMA_VERSION, Analysis, CalcificationPattern, Context, FindingsDocument, Marker

__all__ = [
    "MarkerRange",
    "MARKER_RANGES",
    "PRIMARY_SITES",
    "MarkerStatus",
    "marker_status",
    "normalise_primary_site",
    "validate_context",
    "load_context",
    "context_from_mapping",
    "load_findings",
    "load_findings_and_pattern",
    "findings_schema",
]

MarkerStatus = Literal["normal", "elevated", "markedly_elevated", "low"]


@dataclass(frozen=True)
class MarkerRange:
    """Adult reference interval of a marker, in its canonical unit.

    Attributes
    ----------
    unit: str
        Canonical unit, e.g. ``"ng/mL"``.
    upper: float
        Upper reference limit (values above are "elevated").
    lower: float | None
        Lower reference limit (values below are "low"), if clinically used.
    marked: float
        Threshold of "markedly elevated".
    factors: dict
        Accepted units (normalised spelling) -> factor converting to the canonical unit.
    """

    name: str
    unit: str
    upper: float
    lower: float | None
    marked: float
    factors: dict[str, float]


# Typical adult reference intervals; a laboratory's own interval takes precedence (state
# the status explicitly in the context to override). AFP: 1 IU/mL = 1.21 ng/mL (WHO
# standard 72/225); enzymes: 1 ukat/L = 60 U/L.
MARKER_RANGES: dict[str, MarkerRange] = {
    "afp": MarkerRange("AFP", "ng/mL", 10.0, None, 400.0,
                       {"ng/ml": 1.0, "ug/l": 1.0, "iu/ml": 1.21, "kiu/l": 1.21}),
    "cea": MarkerRange("CEA", "ng/mL", 5.0, None, 25.0, {"ng/ml": 1.0, "ug/l": 1.0}),
    "alp": MarkerRange("ALP", "U/L", 130.0, 40.0, 650.0,
                       {"u/l": 1.0, "iu/l": 1.0, "ukat/l": 60.0}),
    "ggt": MarkerRange("GGT", "U/L", 60.0, None, 300.0,
                       {"u/l": 1.0, "iu/l": 1.0, "ukat/l": 60.0}),
    "ca19_9": MarkerRange("CA 19-9", "U/mL", 37.0, None, 185.0,
                          {"u/ml": 1.0, "ku/l": 1.0, "iu/ml": 1.0}),
}

#: primary-site vocabulary (canonical names) with accepted synonyms
PRIMARY_SITES: dict[str, tuple[str, ...]] = {
    "colon": ("colon", "colorectal", "rectum", "rectal", "large_bowel", "sigmoid", "caecum", "cecum"),
    "breast": ("breast",),
    "stomach": ("stomach", "gastric"),
    "thyroid": ("thyroid", "medullary_thyroid"),
    "ovary": ("ovary", "ovarian"),
    "lung": ("lung", "bronchus", "bronchial", "pulmonary"),
    "leiomyosarcoma": ("leiomyosarcoma", "smooth_muscle", "smooth_muscle_sarcoma"),
    "islet_cell": ("islet_cell", "pancreatic_neuroendocrine", "neuroendocrine", "insulinoma", "carcinoid"),
    "osteosarcoma": ("osteosarcoma",),
    "melanoma": ("melanoma",),
    "pancreas": ("pancreas", "pancreatic"),
    "esophagus": ("esophagus", "oesophagus", "esophageal", "oesophageal"),
    "kidney": ("kidney", "renal"),
    "bladder": ("bladder", "urothelial"),
    "prostate": ("prostate",),
    "uterus": ("uterus", "endometrium", "endometrial", "cervix", "cervical"),
    "neuroblastoma": ("neuroblastoma",),
    "biliary": ("biliary", "gallbladder", "cholangiocarcinoma"),
    "other": ("other",),
    "unknown": ("unknown", "unknown_primary", "cup"),
}
_SITE_LOOKUP = {syn: canon for canon, syns in PRIMARY_SITES.items() for syn in syns}

_MARKER_ALIASES = {
    "afp": "afp", "alpha_fetoprotein": "afp", "alphafetoprotein": "afp",
    "cea": "cea", "carcinoembryonic_antigen": "cea",
    "alp": "alp", "alkaline_phosphatase": "alp", "alk_phos": "alp",
    "ggt": "ggt", "gamma_gt": "ggt", "ggtp": "ggt", "gamma_glutamyl_transferase": "ggt",
    "ca19_9": "ca19_9", "ca_19_9": "ca19_9", "ca199": "ca19_9",
}


def _norm_key(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.strip().lower()).strip("_")


def _norm_unit(unit: str) -> str:
    return unit.strip().lower().replace("µ", "u").replace("μ", "u").replace("mcg", "ug").replace(" ", "")


def normalise_primary_site(site: str, *, field: str = "primary_site") -> str:
    """Canonical name of a primary site (``"colorectal"`` -> ``"colon"``).

    Raises
    ------
    ContextError
        When the site is not in the vocabulary (the message lists accepted names).
    """
    key = _norm_key(site)
    if key.endswith("_cancer") or key.endswith("_carcinoma"):
        key = key.rsplit("_", 1)[0]
    if key in _SITE_LOOKUP:
        return _SITE_LOOKUP[key]
    raise ContextError(
        f"field {field}: unknown primary site '{site}'",
        hint="use one of " + ", ".join(PRIMARY_SITES) + " (or 'other')",
    )


def marker_status(name: str, marker: Marker, *, field: str | None = None) -> MarkerStatus:
    """Status of a marker: from its value and unit when given, else its stated status.

    Raises
    ------
    ContextError
        Unknown marker, value without unit, unit not accepted for the marker, neither
        value nor status, or a stated status that contradicts the value.
    """
    field = field or f"markers.{name}"
    if name not in MARKER_RANGES:
        raise ContextError(f"field {field}: unknown marker '{name}'", hint="use one of " + ", ".join(MARKER_RANGES))
    rng = MARKER_RANGES[name]
    if marker.value is None:
        if marker.status is None:
            raise ContextError(f"field {field}: give a value with unit or a status (normal / elevated / markedly_elevated / low)")
        if marker.unit is not None:
            raise ContextError(f"field {field}.unit: a unit was given without a value")
        return marker.status
    if marker.unit is None:
        raise ContextError(f"field {field}.unit: missing unit for value {marker.value:g}", hint=f"{rng.name} is expected in {rng.unit}")
    factor = rng.factors.get(_norm_unit(marker.unit))
    if factor is None:
        raise ContextError(
            f"field {field}.unit: '{marker.unit}' is not a unit for {rng.name}",
            hint=f"use {rng.unit} (accepted: " + ", ".join(sorted(rng.factors)) + ")",
        )
    value = marker.value * factor
    if value >= rng.marked:
        status: MarkerStatus = "markedly_elevated"
    elif value > rng.upper:
        status = "elevated"
    elif rng.lower is not None and value < rng.lower:
        status = "low"
    else:
        status = "normal"
    if marker.status is not None:
        high = {"elevated", "markedly_elevated"}
        if (marker.status in high) != (status in high):
            raise ContextError(
                f"field {field}.status: stated '{marker.status}' contradicts the value "
                f"{marker.value:g} {marker.unit} (reference upper limit {rng.upper:g} {rng.unit})",
                hint="give the laboratory's own status only when its range differs; otherwise omit status",
            )
        return marker.status
    return status


def validate_context(context: Context, *, today: _dt.date | None = None) -> Context:
    """Semantic checks of a Context beyond its field types; returns a normalised copy.

    Checks marker units and values, the primary-site vocabulary, contradictions
    (a primary site while ``known_malignancy`` is false) and prior-imaging dates in the future.

    Raises
    ------
    ContextError
        Naming the offending field.
    """
    for name, marker in context.markers.items():
        marker_status(name, marker)
    site = context.primary_site
    if site is not None:
        site = normalise_primary_site(site)
        if context.known_malignancy is False and site not in ("unknown",):
            raise ContextError(
                "field primary_site: a primary site was given while known_malignancy is false",
                hint="set known_malignancy: true or remove primary_site",
            )
    today = today or _dt.date.today()
    for i, d in enumerate(context.prior_imaging_dates):
        if d > today:
            raise ContextError(f"field prior_imaging_dates[{i}]: date {d.isoformat()} lies in the future")
    if site != context.primary_site:
        return context.model_copy(update={"primary_site": site})
    return context


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _read_mapping(path: Path, error: type[Exception], what: str) -> dict[str, Any]:
    if not path.exists():
        raise InputNotFoundError(f"{what} file not found", path=str(path))
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"cannot read the {what} file: {exc}", path=str(path)) from exc
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        kind = "JSON" if path.suffix.lower() == ".json" else "YAML"
        raise error(f"the {what} file is not valid {kind}: {exc}", path=str(path)) from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise error(f"the {what} file must hold a mapping (key: value pairs) at the top level", path=str(path))
    return data


_VALUE_UNIT_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?\d+)?)\s*([^\s].*)?$")


def _prepare_markers(raw: Any, path: Path | None) -> Any:
    """Accept shorthand marker forms: ``cea: 12 ng/mL``, ``afp: elevated``, ``CA 19-9``."""
    if not isinstance(raw, dict):
        return raw
    out: dict[str, Any] = {}
    for key, val in raw.items():
        name = _MARKER_ALIASES.get(_norm_key(str(key)))
        if name is None:
            raise ContextError(
                f"field markers.{key}: unknown marker", path=None if path is None else str(path), hint="use one of afp, cea, alp, ggt, ca19_9"
            )
        if isinstance(val, str):
            m = _VALUE_UNIT_RE.match(val)
            if m:
                val = {"value": float(m.group(1)), "unit": m.group(2)}
            else:
                val = {"status": val.strip().lower().replace(" ", "_")}
        elif isinstance(val, (int, float)) and not isinstance(val, bool):
            val = {"value": val}
        out[name] = val
    return out


def load_context(path: str | Path) -> Context:
    """Read a clinical context (YAML or JSON) into a validated :class:`~calcscope.model.Context`.

    Shorthands accepted: ``sex: F``/``M``; markers as ``cea: 12 ng/mL`` or ``afp: normal``;
    marker names in any case/spelling (``CA 19-9``). Every other problem (unknown field,
    impossible value, wrong or missing unit, contradiction) raises
    :class:`~calcscope.errors.ContextError` naming the field.
    """
    p = Path(path)
    return context_from_mapping(_read_mapping(p, ContextError, "context"), path=p)


def context_from_mapping(data: dict[str, Any], *, path: str | Path | None = None) -> Context:
    """Build a validated Context from a mapping (as read from YAML/JSON), shorthands allowed.

    Raises
    ------
    ContextError
        Naming the offending field (and ``path`` when given).
    """
    p = Path(path) if path is not None else None
    data = dict(data)
    if "markers" in data:
        data["markers"] = _prepare_markers(data["markers"], p)
    if isinstance(data.get("sex"), str):
        data["sex"] = {"f": "female", "m": "male", "woman": "female", "man": "male"}.get(
            data["sex"].strip().lower(), data["sex"].strip().lower()
        )
    try:
        ctx = Context.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        extra = "" if exc.error_count() == 1 else f" (and {exc.error_count() - 1} more problems)"
        msg = first["msg"]
        if first["type"] == "extra_forbidden":
            msg = "unknown field"
        raise ContextError(
            f"field {_loc(first['loc'])}: {msg}{extra}",
            path=None if p is None else str(p),
            hint="see `calcscope schema context` for the accepted fields",
        ) from exc
    try:
        return validate_context(ctx)
    except ContextError as exc:
        raise ContextError(exc.message, path=None if p is None else str(p), hint=exc.hint) from exc


def _validation_to_findings_error(exc: ValidationError, path: Path, prefix: tuple[Any, ...] = ()) -> FindingsError:
    first = exc.errors()[0]
    extra = "" if exc.error_count() == 1 else f" (and {exc.error_count() - 1} more problems)"
    msg = "unknown field" if first["type"] == "extra_forbidden" else first["msg"]
    return FindingsError(
        f"field {_loc(prefix + tuple(first['loc']))}: {msg}{extra}",
        path=str(path),
        hint="see docs/findings-vocabulary.md or `calcscope schema findings`",
    )


def _check_document(doc: FindingsDocument, path: Path) -> None:
    major = doc.schema_version.split(".")[0]
    if major != SCHEMA_VERSION.split(".")[0]:
        raise FindingsError(
            f"field schema_version: {doc.schema_version} is not compatible with {SCHEMA_VERSION}", path=str(path)
        )
    ids: dict[str, int] = {}
    for i, f in enumerate(doc.findings):
        if f.id is not None:
            if f.id in ids:
                raise FindingsError(f"field findings[{i}].id: '{f.id}' repeats findings[{ids[f.id]}].id", path=str(path))
            ids[f.id] = i
    for i, f in enumerate(doc.findings):
        if f.parent_id is not None:
            if f.parent_id not in ids:
                raise FindingsError(f"field findings[{i}].parent_id: no finding has id '{f.parent_id}'", path=str(path))
            if f.parent_id == f.id:
                raise FindingsError(f"field findings[{i}].parent_id: a finding cannot be its own parent", path=str(path))
        for j, child in enumerate(f.children):
            if child not in ids:
                raise FindingsError(f"field findings[{i}].children[{j}]: no finding has id '{child}'", path=str(path))


def load_findings_and_pattern(path: str | Path) -> tuple[FindingsDocument, CalcificationPattern | None, Context | None]:
    """Read a findings document, or an ``analysis.json`` (its findings, pattern and context).

    Raises
    ------
    FindingsError
        Naming the field path (e.g. ``findings[2].shape``) of the first problem.
    """
    p = Path(path)
    data = _read_mapping(p, FindingsError, "findings")
    is_analysis = "findings" in data and any(k in data for k in ("software", "input", "differential", "liver", "calcification_pattern", "timings_s"))
    if is_analysis:
        try:
            analysis = Analysis.model_validate(data)
        except ValidationError as exc:
            raise _validation_to_findings_error(exc, p) from exc
        doc = analysis.findings_document()
        _check_document(doc, p)
        return doc, analysis.calcification_pattern, analysis.context
    try:
        doc = FindingsDocument.model_validate(data)
    except ValidationError as exc:
        raise _validation_to_findings_error(exc, p) from exc
    _check_document(doc, p)
    return doc, None, None


def load_findings(path: str | Path) -> FindingsDocument:
    """Read a findings document (JSON or YAML; an ``analysis.json`` is accepted too).

    Raises
    ------
    FindingsError
        Naming the field path of the first problem, e.g. ``findings[0].shape``.
    """
    return load_findings_and_pattern(path)[0]


def findings_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of a findings document, from the pydantic model."""
    schema = FindingsDocument.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "calcscope findings document"
    schema["description"] = (
        "Findings of one liver study (CT or B-mode ultrasound), as produced by the calcscope image "
        "pipeline or written by hand for `calcscope reason`. Controlled vocabulary: "
        "docs/findings-vocabulary.md."
    )
    return schema
