"""Context and findings loading: clear errors naming the field; JSON Schema of findings."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import jsonschema
import pytest

from calcscope.errors import ContextError, FindingsError, InputNotFoundError
from calcscope.model import Context, Marker
from calcscope.reason import findings_schema, load_context, load_findings, marker_status
from calcscope.reason._context import load_findings_and_pattern

VIGNETTES = Path(__file__).parent / "vignettes"


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_context_yaml_with_shorthands(tmp_path):
    p = write(tmp_path, "c.yaml", "age: 54\nsex: F\nknown_malignancy: true\nprimary_site: Breast cancer\n"
              "markers:\n  CEA: 12.5 ng/mL\n  CA 19-9: normal\n  ALP: {value: 3.0, unit: µkat/L}\n"
              "prior_imaging_dates: [2023-01-05]\n")
    ctx = load_context(p)
    assert ctx.sex == "female" and ctx.primary_site == "breast"
    assert ctx.markers["cea"].value == 12.5 and ctx.markers["cea"].unit == "ng/mL"
    assert marker_status("cea", ctx.markers["cea"]) == "elevated"
    assert ctx.markers["ca19_9"].status == "normal"
    assert marker_status("alp", ctx.markers["alp"]) == "elevated"  # 3 ukat/L = 180 U/L
    assert ctx.prior_imaging_dates == [dt.date(2023, 1, 5)]


def test_context_json(tmp_path):
    p = write(tmp_path, "c.json", json.dumps({"age": 2, "markers": {"afp": {"value": 500, "unit": "IU/mL"}}}))
    ctx = load_context(p)
    assert marker_status("afp", ctx.markers["afp"]) == "markedly_elevated"  # 605 ng/mL


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("age: 54\nfavourite_colour: blue\n", "favourite_colour"),
        ("age: 190\n", "age"),
        ("age: -3\n", "age"),
        ("sex: robot\n", "sex"),
        ("markers:\n  cea: 3 mmol/L\n", "markers.cea.unit"),
        ("markers:\n  afp: {value: 12}\n", "markers.afp.unit"),
        ("markers:\n  afp: {value: -1, unit: ng/mL}\n", "markers.afp.value"),
        ("markers:\n  psa: 3 ng/mL\n", "markers.psa"),
        ("markers:\n  cea: {value: 2, unit: ng/mL, status: elevated}\n", "markers.cea.status"),
        ("markers:\n  ggt: {}\n", "markers.ggt"),
        ("known_malignancy: false\nprimary_site: colon\n", "primary_site"),
        ("primary_site: spleen-ish\n", "primary_site"),
        ("prior_imaging_dates: [2999-01-01]\n", "prior_imaging_dates[0]"),
        ("fever: maybe\n", "fever"),
        ("- a\n- b\n", "mapping"),
        ("age: [\n", "not valid YAML"),
    ],
)
def test_context_errors_name_the_field(tmp_path, text, field):
    p = write(tmp_path, "c.yaml", text)
    with pytest.raises(ContextError) as ei:
        load_context(p)
    assert field in str(ei.value)
    assert ei.value.exit_code == 11
    assert str(p) in str(ei.value)


def test_missing_context_file(tmp_path):
    with pytest.raises(InputNotFoundError):
        load_context(tmp_path / "nope.yaml")


def test_marker_reference_ranges():
    assert marker_status("afp", Marker(value=9, unit="ng/mL")) == "normal"
    assert marker_status("afp", Marker(value=11, unit="ng/mL")) == "elevated"
    assert marker_status("afp", Marker(value=400, unit="ng/mL")) == "markedly_elevated"
    assert marker_status("cea", Marker(value=5.5, unit="ug/L")) == "elevated"
    assert marker_status("alp", Marker(value=30, unit="U/L")) == "low"
    assert marker_status("alp", Marker(value=120, unit="IU/L")) == "normal"
    assert marker_status("ggt", Marker(value=61, unit="U/L")) == "elevated"
    assert marker_status("ca19_9", Marker(value=36, unit="kU/L")) == "normal"
    assert marker_status("ca19_9", Marker(status="elevated")) == "elevated"


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"findings": [{"kind": "calcification", "shape": "triangle"}]}, "findings[0].shape"),
        ({"findings": [{"kind": "tumour"}]}, "findings[0].kind"),
        ({"findings": [{"kind": "lesion", "size_mm": -4}]}, "findings[0].size_mm"),
        ({"findings": [{"kind": "lesion", "colour": "red"}]}, "findings[0].colour"),
        ({"modality": "MR", "findings": []}, "modality"),
        ({"findings": [{"kind": "lesion", "change": {"growth_percent": -150}}]}, "findings[0].change.growth_percent"),
        ({"findings": [{"id": "a", "kind": "lesion"}, {"id": "a", "kind": "cyst"}]}, "findings[1].id"),
        ({"findings": [{"id": "c", "kind": "calcification", "parent_id": "ghost"}]}, "findings[0].parent_id"),
        ({"schema_version": "2.0.0", "findings": []}, "schema_version"),
    ],
)
def test_findings_errors_name_the_field_path(tmp_path, doc, field):
    p = write(tmp_path, "f.json", json.dumps(doc))
    with pytest.raises(FindingsError) as ei:
        load_findings(p)
    assert field in str(ei.value)
    assert ei.value.exit_code == 12


def test_findings_yaml_and_analysis_json(tmp_path):
    p = write(tmp_path, "f.yaml", "modality: US\nfindings:\n  - {kind: calcification, shape: pin, location: [right_lobe]}\n")
    doc = load_findings(p)
    assert doc.modality == "US" and doc.findings[0].shape == "pin"
    analysis = {
        "software": {"calcscope": "0"},
        "findings": [{"id": "calc-001", "kind": "calcification", "size_mm": 3.0}],
        "calcification_pattern": {"count": 1, "distribution": "single"},
        "context": {"age": 40},
    }
    p2 = write(tmp_path, "analysis.json", json.dumps(analysis))
    doc2, pattern, ctx = load_findings_and_pattern(p2)
    assert doc2.findings[0].id == "calc-001" and pattern.distribution == "single" and ctx.age == 40


def test_findings_schema_validates_vignette_documents():
    schema = findings_schema()
    assert schema["$schema"].startswith("https://json-schema.org/draft/2020-12")
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    import yaml

    for p in sorted(VIGNETTES.glob("*.yaml")):
        doc = yaml.safe_load(p.read_text())["findings"]
        assert not list(validator.iter_errors(doc)), p.name
    assert list(validator.iter_errors({"findings": [{"kind": "calcification", "shape": "triangle"}]}))


def test_python_context_validated_by_reason():
    from calcscope.model import FindingsDocument
    from calcscope.reason import reason

    with pytest.raises(ContextError, match="primary_site"):
        reason(FindingsDocument(), Context(primary_site="atlantis"))
    d = reason(FindingsDocument(), Context(known_malignancy=True, primary_site="colorectal"))
    met = next(r for r in d.ranked if r.condition_id == "calcified_metastasis")
    assert met.details["suggested_primary_sites"] == ["colon"]
