"""``calcscope reason``: a ranked, cited differential from a findings document, without images."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ._common import console, print_json

__all__ = ["register", "render_differential"]


def render_differential(diff, *, doc=None, context=None) -> None:  # diff: model.Differential
    """Print a Differential for a human reader (rich tables, evidence, next steps, disclaimer)."""
    from rich.markup import escape
    from rich.panel import Panel
    from rich.table import Table

    title = "Differential (decision support — not a diagnosis)"
    flag = "[bold yellow]insufficient evidence[/]" if diff.insufficient_evidence else "[green]discriminative[/]"
    console.print(Panel(escape(diff.impression), title=title, subtitle=f"evidence: {flag}", expand=True))

    table = Table(title=f"Ranked conditions (knowledge base v{diff.knowledge_version})", show_lines=False)
    table.add_column("#", justify="right")
    table.add_column("condition")
    table.add_column("probability", justify="right")
    table.add_column("", no_wrap=True)
    for i, rc in enumerate(diff.ranked, start=1):
        style = "bold" if i == 1 else ("" if rc.probability >= 0.02 else "dim")
        bar = "█" * max(1, round(rc.probability * 30)) if rc.probability >= 0.01 else ""
        table.add_row(str(i), escape(rc.name), f"{rc.probability:.3f}", bar, style=style)
    console.print(table)

    for rc in diff.ranked[:3]:
        console.print(f"\n[bold]{escape(rc.name)}[/] — probability {rc.probability:.3f}")
        console.print(f"  {escape(rc.summary)}", highlight=False)
        sites = rc.details.get("suggested_primary_sites")
        if sites and rc is diff.ranked[0]:
            console.print(f"  suggested primary site(s): {escape(', '.join(sites))} ({escape(str(rc.details.get('primary_site_basis')))})")
        for label, items, colour in (("for", rc.evidence_for, "green"), ("against", rc.evidence_against, "red")):
            for e in items[:6]:
                console.print(f"  [{colour}]{label:>7}[/] {escape(e.statement)}", highlight=False)
                console.print(f"          [dim]{escape(e.citation)}[/]", highlight=False)
            if len(items) > 6:
                console.print(f"          [dim]... {len(items) - 6} more (use --json)[/]")

    if diff.recommendations:
        console.print("\n[bold]Suggested next steps[/]")
        for i, r in enumerate(diff.recommendations, start=1):
            console.print(f"  {i}. {escape(r.action)}", highlight=False)
            console.print(f"     [dim]why:[/] {escape(r.reason)}", highlight=False)
            console.print(f"     [dim]source: {escape(r.citation)}[/]", highlight=False)
    if diff.missing_information:
        console.print("\n[bold]Information that would change the ranking most[/]")
        for m in diff.missing_information:
            console.print(f"  • {escape(m)}", highlight=False)
    console.print(f"\n[dim]Method: {escape(diff.method)}[/]", highlight=False)
    console.print(f"\n[bold]{escape(diff.disclaimer)}[/]", highlight=False)


def register(app: typer.Typer) -> None:
    @app.command("reason")
    def reason_cmd(
        findings: Path = typer.Argument(..., help="Findings document (JSON or YAML; an analysis.json is accepted)."),
        context: Optional[Path] = typer.Option(None, "--context", help="Clinical context, YAML or JSON."),
        as_json: bool = typer.Option(False, "--json", help="Print the differential as JSON instead of text."),
    ) -> None:
        """Rank conditions for described findings (no images needed); cited, with next steps.

        FINDINGS follows `calcscope schema findings` and docs/findings-vocabulary.md.
        """
        from ..reason import load_context, load_findings_and_pattern, reason

        doc, pattern, analysis_ctx = load_findings_and_pattern(findings)
        ctx = load_context(context) if context is not None else analysis_ctx
        diff = reason(doc, ctx, pattern=pattern)
        if as_json:
            print_json(diff.model_dump(mode="json"))
        else:
            render_differential(diff, doc=doc, context=ctx)
