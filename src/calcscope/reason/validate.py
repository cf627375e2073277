"""Clinical validation of the reasoning engine on case vignettes.

Usage::

    python -m calcscope.reason.validate tests/vignettes [--json] [--strict]

Each vignette (YAML) holds ``id``, ``title``, ``source`` (citation), ``findings`` (a
findings document), ``context`` (clinical context), ``expected_top`` (condition id),
``acceptable_top3`` (condition ids a clinician would accept among the top three) and
optionally ``expect`` with ``suggested_primary_first`` (site) and
``recommendation_contains`` (phrases that must appear in the recommendations).

Reported: top-1 accuracy (expected condition ranked first), top-3 accuracy (expected
condition among the first three), and how many vignettes meet their extra expectations.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from ..model import Context, FindingsDocument
from ._context import context_from_mapping
from ._engine import reason
from ._kb import KnowledgeBase, load_knowledge

__all__ = ["Vignette", "VignetteResult", "load_vignettes", "run_vignettes", "main"]

TARGET_TOP1 = 0.80
TARGET_TOP3 = 0.95


class _Expect(BaseModel):
    model_config = ConfigDict(extra="forbid")
    suggested_primary_first: str | None = None
    recommendation_contains: list[str] = Field(default_factory=list)


class Vignette(BaseModel):
    """One case vignette written from the literature."""

    model_config = ConfigDict(extra="forbid")
    id: str
    title: str
    source: str
    findings: FindingsDocument
    context: Context = Field(default_factory=Context)
    expected_top: str
    acceptable_top3: list[str]
    expect: _Expect = Field(default_factory=_Expect)


@dataclass
class VignetteResult:
    id: str
    expected: str
    predicted: list[str]
    probabilities: list[float]
    top1: bool
    top3: bool
    top1_acceptable: bool
    insufficient_evidence: bool
    expectation_failures: list[str] = field(default_factory=list)


def load_vignettes(folder: str | Path) -> list[Vignette]:
    """All ``*.yaml`` vignettes of a folder, sorted by file name (validated)."""
    out = []
    for p in sorted(Path(folder).glob("*.yaml")):
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
        data["context"] = context_from_mapping(data.get("context") or {}, path=p)
        out.append(Vignette.model_validate(data))
    return out


def _check(v: Vignette, diff: Any, kb: KnowledgeBase) -> list[str]:
    fails = []
    for cid in [v.expected_top, *v.acceptable_top3]:
        if cid not in kb.condition_ids:
            fails.append(f"unknown condition id '{cid}' in the vignette")
    if v.expect.suggested_primary_first:
        met = next((r for r in diff.ranked if r.condition_id == "calcified_metastasis"), None)
        sites = (met.details.get("suggested_primary_sites") or []) if met else []
        if not sites or sites[0] != v.expect.suggested_primary_first:
            fails.append(f"suggested primary {sites[:1]} != {v.expect.suggested_primary_first}")
    text = " ".join(f"{r.action} {r.reason}" for r in diff.recommendations)
    for phrase in v.expect.recommendation_contains:
        if phrase.lower() not in text.lower():
            fails.append(f"no recommendation mentions '{phrase}'")
    return fails


def run_vignettes(vignettes: list[Vignette], *, kb: KnowledgeBase | None = None) -> list[VignetteResult]:
    """Run the engine on each vignette and compare with its expectations."""
    kb = kb or load_knowledge()
    results = []
    for v in vignettes:
        diff = reason(v.findings, v.context, kb=kb)
        predicted = [r.condition_id for r in diff.ranked]
        results.append(
            VignetteResult(
                id=v.id,
                expected=v.expected_top,
                predicted=predicted[:3],
                probabilities=[r.probability for r in diff.ranked[:3]],
                top1=predicted[0] == v.expected_top,
                top3=v.expected_top in predicted[:3],
                top1_acceptable=predicted[0] in v.acceptable_top3,
                insufficient_evidence=diff.insufficient_evidence,
                expectation_failures=_check(v, diff, kb),
            )
        )
    return results


def summarise(results: list[VignetteResult]) -> dict[str, Any]:
    n = len(results)
    return {
        "vignettes": n,
        "top1_accuracy": sum(r.top1 for r in results) / n if n else 0.0,
        "top3_accuracy": sum(r.top3 for r in results) / n if n else 0.0,
        "top1_acceptable": sum(r.top1_acceptable for r in results) / n if n else 0.0,
        "expectations_met": sum(not r.expectation_failures for r in results),
        "insufficient_evidence_flags": sum(r.insufficient_evidence for r in results),
        "targets": {"top1": TARGET_TOP1, "top3": TARGET_TOP3},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m calcscope.reason.validate", description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path, help="folder of vignette YAML files (e.g. tests/vignettes)")
    ap.add_argument("--json", action="store_true", help="print results as JSON")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a target or an expectation is missed")
    args = ap.parse_args(argv)
    results = run_vignettes(load_vignettes(args.folder))
    summary = summarise(results)
    if args.json:
        print(json.dumps({"summary": summary, "results": [asdict(r) for r in results]}, indent=2))
    else:
        print(f"{'vignette':45s} {'expected':22s} {'ranked first (p)':34s} top1 top3")
        for r in results:
            first = f"{r.predicted[0]} ({r.probabilities[0]:.2f})"
            print(f"{r.id:45s} {r.expected:22s} {first:34s} {'yes' if r.top1 else 'NO':4s} {'yes' if r.top3 else 'NO'}")
            for f in r.expectation_failures:
                print(f"    expectation not met: {f}")
        print(
            f"\n{summary['vignettes']} vignettes: top-1 {summary['top1_accuracy']:.1%} (target {TARGET_TOP1:.0%}), "
            f"top-3 {summary['top3_accuracy']:.1%} (target {TARGET_TOP3:.0%}), first-ranked acceptable "
            f"{summary['top1_acceptable']:.1%}, extra expectations met {summary['expectations_met']}/{summary['vignettes']}, "
            f"insufficient-evidence flags {summary['insufficient_evidence_flags']}"
        )
    ok = (
        summary["top1_accuracy"] >= TARGET_TOP1
        and summary["top3_accuracy"] >= TARGET_TOP3
        and summary["expectations_met"] == summary["vignettes"]
    )
    return 0 if (ok or not args.strict) else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
