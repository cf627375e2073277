"""``calcscope analyze``: the end-to-end run on one CT."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from ..errors import UsageError
from ._common import err_console, print_json

__all__ = ["register", "run_with_progress"]


def run_with_progress(fn, *args, quiet: bool = False, **kwargs):
    """Call a pipeline function with a rich progress display on stderr."""
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from ..pipeline import STAGES

    if quiet:
        return fn(*args, **kwargs)
    with Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} stages"),
        TimeElapsedColumn(),
        console=err_console,
        transient=False,
    ) as bar:
        task = bar.add_task("analysing", total=len(STAGES))

        def progress(stage: str, event: str) -> None:
            if event == "start":
                bar.update(task, description=f"{stage}…")
            else:
                bar.advance(task)

        return fn(*args, progress=progress, **kwargs)


def print_timings(timings: dict[str, float]) -> None:
    parts = ", ".join(f"{k} {v:.2f} s" for k, v in timings.items())
    err_console.print(f"stage timings: {parts} (total {sum(timings.values()):.2f} s)", highlight=False)


def register(app: typer.Typer) -> None:
    @app.command("analyze")
    def analyze_cmd(
        input_path: Path = typer.Argument(..., help="CT: NIfTI/NRRD/MHA file, DICOM folder, or zip of either."),
        out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder (refused if it exists, unless --force)."),
        context: Optional[Path] = typer.Option(None, "--context", help="Clinical context, YAML or JSON."),
        liver_mask: Optional[Path] = typer.Option(None, "--liver-mask", help="Liver mask or label map (TotalSegmentator outputs recognised)."),
        liver_label: Optional[int] = typer.Option(None, "--liver-label", help="Liver label value in --liver-mask."),
        phase: Optional[str] = typer.Option(None, "--phase", help="non_contrast | arterial | portal_venous | delayed (estimated when omitted)."),
        segmenter: str = typer.Option("auto", "--segmenter", help="auto (classical, no weights) | totalsegmentator."),
        series: Optional[str] = typer.Option(None, "--series", help="SeriesInstanceUID when the folder holds several CT series."),
        allow_modality: bool = typer.Option(False, "--allow-modality", help="Accept non-CT images (results unreliable)."),
        capsular_margin_mm: float = typer.Option(3.0, "--capsular-margin-mm", help="Shell outside the liver searched for capsular calcification."),
        force: bool = typer.Option(False, "--force", help="Replace an existing output folder."),
        as_json: bool = typer.Option(False, "--json", help="Print analysis.json to stdout."),
        no_timestamp: bool = typer.Option(False, "--no-timestamp", help="Leave out the creation time, so reruns give identical files."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display."),
    ) -> None:
        """Analyse one CT: liver, calcifications, lesions, ducts, differential, reports."""
        from ..model import Phase
        from ..pipeline import analyze

        if out is None and not as_json:
            raise UsageError("give --out DIR for the report files, or --json to print the analysis")
        if out is not None and out.exists() and not force:
            from ..errors import OutputError

            raise OutputError("the output folder already exists", path=str(out), hint="choose another --out or add --force to replace it")
        if phase is not None:
            try:
                phase = Phase(phase).value
            except ValueError:
                raise UsageError(
                    f"unknown --phase '{phase}'", hint="use one of " + ", ".join(p.value for p in Phase if p is not Phase.UNKNOWN)
                ) from None
        run = run_with_progress(
            analyze,
            input_path,
            quiet=quiet or as_json and out is None,
            series=series,
            allow_modality=allow_modality,
            context=context,
            liver_mask=liver_mask,
            liver_label=liver_label,
            phase=phase,
            segmenter=segmenter,
            capsular_margin_mm=capsular_margin_mm,
            timestamp=not no_timestamp,
        )
        if out is not None:
            from ..report import write_outputs

            written = write_outputs(out, run.analysis, run.volume, run.masks, force=force)
            if not quiet:
                print_timings(run.timings_s)
                summarise(run.analysis)
                err_console.print(f"wrote {len(written)} files to {out}", highlight=False)
        if as_json:
            print_json(run.analysis.model_dump(mode="json"))


def summarise(analysis) -> None:
    """Short human summary on stderr."""
    n = {}
    for f in analysis.findings:
        n[f.kind] = n.get(f.kind, 0) + 1
    counts = ", ".join(f"{v} {k}" for k, v in sorted(n.items())) or "no findings"
    err_console.print(f"phase: {analysis.phase.phase.value if analysis.phase else '?'}; liver {analysis.liver.volume_ml:.0f} mL; {counts}", highlight=False)
    d = analysis.differential
    if d is not None and not analysis.findings:
        # priors alone are not a differential: listing them would read as a suggestion
        err_console.print("differential: none (no liver finding, so no condition is favoured)", highlight=False)
    elif d is not None:
        if d.insufficient_evidence:
            err_console.print("differential: insufficient evidence to rank conditions", highlight=False)
        for rc in d.ranked[:3]:
            err_console.print(f"  {rc.probability:5.1%}  {rc.name}", highlight=False)
    for w in analysis.warnings:
        err_console.print(f"[yellow]warning:[/] {escape(w)}", highlight=False)
    err_console.print(f"[dim]{analysis.disclaimer}[/]")
