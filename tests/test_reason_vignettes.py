"""Clinical validation on the case vignettes in tests/vignettes (targets: top-1 >= 80 %, top-3 >= 95 %)."""

from __future__ import annotations

from pathlib import Path

import pytest

from calcscope.reason.validate import TARGET_TOP1, TARGET_TOP3, load_vignettes, main, run_vignettes, summarise

VIGNETTES = Path(__file__).parent / "vignettes"


@pytest.fixture(scope="module")
def results():
    return run_vignettes(load_vignettes(VIGNETTES))


def test_at_least_25_vignettes_each_with_a_source(results):
    vs = load_vignettes(VIGNETTES)
    assert len(vs) >= 25
    assert all(v.source and v.expected_top in v.acceptable_top3 for v in vs)


def test_accuracy_targets(results):
    s = summarise(results)
    assert s["top1_accuracy"] >= TARGET_TOP1
    assert s["top3_accuracy"] >= TARGET_TOP3


@pytest.mark.parametrize("vid", ["seed000-breast-calcified-metastases", "seed001-isolated-pin-focus", "seed001-beaded-duct-stones"])
def test_seed_cases_ranked_first_with_their_expectations(results, vid):
    r = next(r for r in results if r.id == vid)
    assert r.top1
    assert r.expectation_failures == []


def test_every_vignette_meets_its_extra_expectations(results):
    assert [r.id for r in results if r.expectation_failures] == []


def test_validate_cli_returns_zero(capsys):
    assert main([str(VIGNETTES), "--strict"]) == 0
    assert "top-1" in capsys.readouterr().out
