"""``calcscope compare``: follow-up of a prior and a current study."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Optional

import typer

from ..errors import UsageError
from ._common import err_console, print_json

__all__ = ["register", "parse_date"]


def parse_date(value: str | None, option: str) -> _dt.date | None:
    """A YYYY-MM-DD date, or a UsageError naming the option."""
    if value is None:
        return None
    try:
        return _dt.date.fromisoformat(value)
    except ValueError as exc:
        raise UsageError(f"{option} must be a date written YYYY-MM-DD; got '{value}'") from exc


def register(app: typer.Typer) -> None:
    @app.command("compare")
    def compare_cmd(
        prior: Path = typer.Argument(..., help="Prior study: a CT or a folder written by 'calcscope analyze --out'."),
        current: Path = typer.Argument(..., help="Current study: a CT or an analysed-study folder."),
        prior_date: Optional[str] = typer.Option(None, "--prior-date", help="Date of the prior study, YYYY-MM-DD."),
        current_date: Optional[str] = typer.Option(None, "--current-date", help="Date of the current study, YYYY-MM-DD."),
        out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder (refused if it exists, unless --force)."),
        force: bool = typer.Option(False, "--force", help="Replace an existing output folder."),
        as_json: bool = typer.Option(False, "--json", help="Print comparison.json to stdout."),
        deformable: bool = typer.Option(False, "--deformable", help="Add a B-spline stage to the rigid + affine registration."),
        context: Optional[Path] = typer.Option(None, "--context", help="Clinical context, YAML or JSON (default: the current analysis' context)."),
        no_timestamp: bool = typer.Option(False, "--no-timestamp", help="Leave out the creation time, so reruns give identical files."),
    ) -> None:
        """Compare a current study with a prior one: registration, matched findings, growth, RECIST 1.1."""
        from ..errors import OutputError
        from ..track import compare_studies, write_comparison

        if out is None and not as_json:
            raise UsageError("give --out DIR for the report files, or --json to print the comparison")
        if out is not None and out.exists() and not force:
            raise OutputError("the output folder already exists", path=str(out), hint="choose another --out or add --force to replace it")
        d_prior = parse_date(prior_date, "--prior-date")
        d_current = parse_date(current_date, "--current-date")
        if d_prior and d_current and d_current <= d_prior:
            raise UsageError("--current-date must be after --prior-date")
        ctx = None
        if context is not None:
            from ..reason import load_context

            ctx = load_context(context)
        run = compare_studies(
            prior, current, prior_date=d_prior, current_date=d_current, deformable=deformable, context=ctx,
            timestamp=not no_timestamp,
        )
        if out is not None:
            write_comparison(out, run, force=force)
        c = run.comparison
        if as_json:
            print_json(c.model_dump(mode="json"))
        err_console.print(
            f"registration: liver Dice {c.registration.liver_dice_before:.3f} -> {c.registration.liver_dice_after:.3f}; "
            f"{len(c.matches)} matched, {len(c.new)} new, {len(c.resolved)} resolved; "
            f"RECIST 1.1 {c.recist.category}; {len(c.growth_alerts)} growing calcification(s)"
            + (f"; written to {out}" if out is not None else ""),
            highlight=False,
        )
