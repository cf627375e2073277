"""CLI shell behaviour: schema output, error paragraphs and exit codes, no tracebacks."""

from __future__ import annotations

import json

import pytest

from calcscope.cli import INTERNAL_ERROR_EXIT, app, main
from calcscope.errors import CalcscopeError, InputNotFoundError


def test_schema_findings_is_valid_json_schema(capsys):
    import jsonschema

    assert main(["schema", "findings"]) == 0
    schema = json.loads(capsys.readouterr().out)
    jsonschema.Draft202012Validator.check_schema(schema)
    doc = {"modality": "CT", "findings": [{"kind": "calcification", "shape": "pin", "location": ["right_lobe"]}]}
    jsonschema.validate(doc, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"findings": [{"kind": "calcification", "colour": "red"}]}, schema)


def test_unknown_schema_is_a_usage_error(capsys):
    assert main(["schema", "nope"]) == 2
    err = capsys.readouterr().err
    assert "Unknown schema" in err and "Traceback" not in err


def test_error_paragraph_has_what_file_and_hint():
    exc = InputNotFoundError("the input path does not exist", path="x.nii", hint="check the spelling")
    assert exc.paragraph() == "The input path does not exist. File: x.nii. Check the spelling."
    assert exc.exit_code == 3
    assert issubclass(InputNotFoundError, CalcscopeError)


def test_internal_error_has_no_traceback_without_debug(capsys, monkeypatch):
    @app.command("_boom", hidden=True)
    def _boom() -> None:
        raise RuntimeError("kaboom")

    assert main(["_boom"]) == INTERNAL_ERROR_EXIT
    err = capsys.readouterr().err
    assert "internal error" in err and "kaboom" in err and "Traceback" not in err
    with pytest.raises(RuntimeError):
        main(["--debug", "_boom"])


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("calcscope ")
