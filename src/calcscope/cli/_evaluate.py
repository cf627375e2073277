"""``calcscope evaluate``: score an analysis against a phantom's (or insertion's) truth."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ._common import console, print_json

__all__ = ["register", "run_evaluate"]


def _auto_labels(truth: Path, result: Path) -> tuple[Path | None, Path | None]:
    """Label maps next to folder inputs: ``objects.nii.gz`` (truth) and ``segmentation.nii.gz`` (result)."""
    t = truth / "objects.nii.gz" if truth.is_dir() else None
    if t is None and truth.name.endswith("_truth.json"):
        t = truth.with_name(truth.name[: -len("_truth.json")] + "_objects.nii.gz")
    r = result / "segmentation.nii.gz" if result.is_dir() else result.with_name("segmentation.nii.gz")
    return (t if t is not None and t.exists() else None, r if r.exists() else None)


def run_evaluate(truth: Path, result: Path, *, truth_labels: Path | None = None, result_labels: Path | None = None):
    """Score ``result`` (analysis.json or its folder) against ``truth`` (truth.json or its folder)."""
    import SimpleITK as sitk

    from ..evaluate import score

    if truth_labels is None and result_labels is None:
        tl, rl = _auto_labels(truth, result)
        if tl is not None and rl is not None:
            # use them only when they share a grid
            a, b = sitk.ReadImage(str(tl)), sitk.ReadImage(str(rl))
            if a.GetSize() == b.GetSize():
                truth_labels, result_labels = tl, rl
    return score(truth, result, truth_labels=truth_labels, result_labels=result_labels)


def register(app: typer.Typer) -> None:
    @app.command("evaluate")
    def evaluate_cmd(
        truth: Path = typer.Option(..., "--truth", help="truth.json from `calcscope synth` (or its folder)."),
        result: Path = typer.Option(..., "--result", help="analysis.json from `calcscope analyze` (or its result folder)."),
        truth_labels: Optional[Path] = typer.Option(None, "--truth-labels", help="Truth objects label map (for Dice)."),
        result_labels: Optional[Path] = typer.Option(None, "--result-labels", help="Result segmentation.nii.gz (for Dice)."),
        as_json: bool = typer.Option(False, "--json", help="Print the full score as JSON."),
        out: Optional[Path] = typer.Option(None, "--out", "-o", help="Also write the score JSON here."),
    ) -> None:
        """Match findings to the truth; report sensitivity by size, false positives, volume error, Dice and agreement."""
        sc = run_evaluate(truth, result, truth_labels=truth_labels, result_labels=result_labels)
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(sc.model_dump_json(indent=2) + "\n", encoding="utf-8")
        if as_json:
            print_json(sc.model_dump(mode="json"))
            return
        from rich.table import Table

        console.print(f"[bold]{sc.preset}[/] seed {sc.seed}: {sc.summary}", highlight=False)
        tab = Table("type", "found / truth", "<2 mm", "2-5 mm", "5-10 mm", ">=10 mm", "FP", "median vol. err %", "mean Dice")
        for name, k in (("calcification", sc.calcifications), ("lesion", sc.lesions), ("duct", sc.ducts)):
            bands = [f"{b.n_found}/{b.n_truth}" if b.n_truth else "-" for b in k.by_size]
            tab.add_row(name, f"{k.n_found}/{k.n_truth}", *bands, str(k.false_positives),
                        "-" if k.median_volume_error_pct is None else f"{k.median_volume_error_pct:+.1f}",
                        "-" if k.mean_dice is None else f"{k.mean_dice:.3f}")
        console.print(tab)

        def pct(v: float | None) -> str:
            return "n/a" if v is None else f"{100 * v:.0f}%"

        console.print(f"shape agreement {pct(sc.shape_agreement)}, cyst/solid agreement {pct(sc.cyst_solid_agreement)}, "
                      f"lobe agreement {pct(sc.lobe_agreement)}, parent agreement {pct(sc.parent_agreement)}; "
                      f"distribution {sc.distribution_found or 'none'} vs truth {sc.distribution_truth or 'none'}; "
                      f"false positives per scan {sc.false_positives_per_scan}", highlight=False)
