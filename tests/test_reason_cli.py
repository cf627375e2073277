"""`calcscope reason` command: human and JSON output, error exit codes."""

from __future__ import annotations

import json
from pathlib import Path

from calcscope.cli import main

VIGNETTE = Path(__file__).parent / "vignettes" / "seed000-breast-calcified-metastases.yaml"


def _write_case(tmp_path: Path) -> tuple[Path, Path]:
    import yaml

    v = yaml.safe_load(VIGNETTE.read_text())
    f = tmp_path / "findings.json"
    f.write_text(json.dumps(v["findings"]))
    c = tmp_path / "context.yaml"
    c.write_text(yaml.safe_dump(v["context"]))
    return f, c


def test_reason_json(tmp_path, capsys):
    f, c = _write_case(tmp_path)
    assert main(["reason", str(f), "--context", str(c), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ranked"][0]["condition_id"] == "calcified_metastasis"
    assert out["ranked"][0]["details"]["suggested_primary_sites"] == ["breast"]
    assert out["disclaimer"].startswith("calcscope is research decision-support software")


def test_reason_human_output(tmp_path, capsys):
    f, c = _write_case(tmp_path)
    assert main(["reason", str(f), "--context", str(c)]) == 0
    out = capsys.readouterr().out
    assert "Calcified liver metastasis" in out and "Suggested next steps" in out
    assert "not a diagnostic device" in out


def test_reason_errors_exit_codes(tmp_path, capsys):
    f, _ = _write_case(tmp_path)
    bad_ctx = tmp_path / "bad.yaml"
    bad_ctx.write_text("markers:\n  cea: 3 mmol/L\n")
    assert main(["reason", str(f), "--context", str(bad_ctx)]) == 11
    assert "markers.cea.unit" in capsys.readouterr().err
    bad_f = tmp_path / "bad.json"
    bad_f.write_text(json.dumps({"findings": [{"kind": "calcification", "shape": "triangle"}]}))
    assert main(["reason", str(bad_f)]) == 12
    assert "findings[0].shape" in capsys.readouterr().err
