"""``calcscope demo``: the whole pipeline on a synthetic phantom, with no data needed."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import typer

from ..errors import OutputError
from ._common import console, err_console

__all__ = ["register", "DEMO_CONTEXTS", "run_demo"]

#: clinical context paired with each preset for the demo (mirrors the seed cases)
DEMO_CONTEXTS: dict[str, dict] = {
    "calcified_metastases": {
        "age": 54,
        "sex": "female",
        "known_malignancy": True,
        "primary_site": "breast",
        "notes": "abdominal pain; right breast carcinoma treated five years earlier",
    },
    "liver_metastases": {
        "age": 63,
        "sex": "male",
        "known_malignancy": True,
        "primary_site": "colon",
        "markers": {"cea": {"status": "elevated"}},
        "notes": "sigmoid carcinoma resected two years earlier; staging CT",
    },
    "isolated_calcification": {"age": 35, "sex": "male", "notes": "incidental finding"},
    "duct_stones": {"age": 52, "sex": "female", "biliary_infection_history": True},
    "hydatid_cyst": {"age": 40, "sex": "male", "livestock_exposure": True},
    "schistosomiasis": {"age": 48, "sex": "male", "schistosomiasis_endemic": True},
    "tuberculosis": {"age": 45, "sex": "male", "tuberculosis_history": True},
}


def run_demo(preset: str, seed: int, out: Path, *, force: bool, shape_zyx=None, spacing_zyx=None, phase=None, quiet=False):
    """Generate a phantom, analyse it, write inputs/ and result/ under ``out`` and score it."""
    from ..evaluate import score
    from ..pipeline import analyze
    from ..report import write_outputs
    from ..synth import generate_phantom, write_phantom
    from ._analyze import run_with_progress

    if out.exists() and not force:
        raise OutputError("the output folder already exists", path=str(out), hint="choose another --out or add --force")
    kwargs = {}
    if shape_zyx:
        kwargs["shape_zyx"] = tuple(shape_zyx)
    if spacing_zyx:
        kwargs["spacing_zyx"] = tuple(spacing_zyx)
    if phase:
        kwargs["phase"] = phase
    ph = generate_phantom(preset, seed=seed, **kwargs)
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".calcscope-demo-", dir=out.parent))
    try:
        inputs = stage / "input"
        inputs.mkdir()
        write_phantom(ph, inputs)
        ct = inputs / "ct.nii.gz"
        context = DEMO_CONTEXTS.get(preset)
        if context is not None:
            (inputs / "context.json").write_text(json.dumps(context, indent=2) + "\n")
        run = run_with_progress(analyze, ct, quiet=quiet, context=context, timestamp=False)
        write_outputs(stage / "result", run.analysis, run.volume, run.masks)
        sc = score(ph.truth, run.analysis)
        (stage / "score.json").write_text(sc.model_dump_json(indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        stage.rename(out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return run, sc


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo_cmd(
        out: Path = typer.Option(Path("calcscope-demo"), "--out", "-o", help="Output folder."),
        preset: str = typer.Option("calcified_metastases", "--preset", help="Phantom preset (see `calcscope synth --help`)."),
        seed: int = typer.Option(0, "--seed", help="Random seed of the phantom."),
        force: bool = typer.Option(False, "--force", help="Replace an existing output folder."),
        quiet: bool = typer.Option(False, "--quiet", "-q"),
    ) -> None:
        """Generate a synthetic CT with known findings, analyse it and score the result (no data needed)."""
        from ._analyze import print_timings, summarise

        run, sc = run_demo(preset, seed, out, force=force, quiet=quiet)
        print_timings(run.timings_s)
        summarise(run.analysis)
        console.print(f"inputs in {out / 'input'}, report in {out / 'result' / 'report.html'}, score in {out / 'score.json'}", highlight=False)
