"""Knowledge base: loads, validates, and refuses broken files with a clear message."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from calcscope.reason import KnowledgeBaseError, load_knowledge
from calcscope.reason._kb import KNOWLEDGE_DIR

SEEDS = Path(__file__).resolve().parents[1].parent / "shared" / "seeds"

REQUIRED = {
    "calcified_metastasis", "benign_calcification", "bile_duct_stone", "hemangioma", "fibrolamellar_hcc",
    "hepatoblastoma", "hcc", "hydatid_cyst", "schistosomiasis", "hepatic_tuberculosis", "healed_abscess",
    "pyogenic_abscess", "simple_cyst", "liver_metastasis",
}


def test_shipped_kb_loads_with_required_conditions():
    kb = load_knowledge()
    assert kb.version == "1.3.0"
    assert REQUIRED <= set(kb.condition_ids)
    assert abs(sum(c.prior for c in kb.conditions) - 1.0) < 1e-9
    met = kb.condition("calcified_metastasis")
    assert met.primary_site_ranking is not None
    assert met.primary_site_ranking.sites == [
        "colon", "breast", "stomach", "thyroid", "ovary", "lung", "leiomyosarcoma", "islet_cell", "osteosarcoma", "melanoma",
    ]


def test_every_condition_cites_a_seed_and_every_likelihood_resolves():
    kb = load_knowledge()
    for c in kb.conditions:
        assert c.citations
        for fid, lk in c.likelihoods.items():
            assert fid in kb.features
            assert lk.cite in kb.citations
            assert 0 < lk.p < 1
    seeds_cited = {c.source for c in kb.citations.values() if c.source}
    assert seeds_cited == {
        "seeds/000_4bac6cbc2ba33c76.txt", "seeds/001_fc47ebb88f3c1e60.txt", "seeds/002_164506dddd16c389.txt",
        "seeds/003_f4e56972f096d8df.txt", "seeds/004_bed3c69a800ae988.txt",
    }


def test_cited_seed_files_exist_when_shared_folder_present():
    if not SEEDS.is_dir():
        pytest.skip("../shared/seeds is absent")
    kb = load_knowledge()
    for c in kb.citations.values():
        if c.source:
            assert (SEEDS / Path(c.source).name).is_file(), c.source


def test_no_seed_sentence_pasted_into_kb():
    """Facts are written in our own words: no 8-word run of a seed appears in the KB."""
    if not SEEDS.is_dir():
        pytest.skip("../shared/seeds is absent")
    lines = (KNOWLEDGE_DIR / "conditions.yaml").read_text().lower().splitlines()
    # section hints quote the seeds' own headings on purpose; everything else must be our wording
    kb_text = " ".join(" ".join(ln for ln in lines if not ln.strip().startswith("section:")).split())
    for seed in sorted(SEEDS.glob("*.txt")):
        words = seed.read_text().lower().split()
        runs = {" ".join(words[i : i + 8]) for i in range(len(words) - 8)}
        pasted = [r for r in runs if r in kb_text and "seeds/" not in r]
        assert not pasted, f"{seed.name}: {pasted[:2]}"


@pytest.fixture()
def kb_copy(tmp_path: Path) -> Path:
    d = tmp_path / "kb"
    shutil.copytree(KNOWLEDGE_DIR, d)
    return d


def _edit(path: Path, fn) -> None:
    data = yaml.load(path.read_text(), Loader=yaml.CSafeLoader)
    fn(data)
    path.write_text(yaml.dump(data, Dumper=yaml.CSafeDumper, sort_keys=False))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["conditions"][0].update(unknown_key=1), "unknown_key"),
        (lambda d: d["conditions"][0]["likelihoods"]["calc_present"].update(p=1.2), "out of range"),
        (lambda d: d["conditions"][0]["likelihoods"]["calc_present"].update(p=0.0), "out of range"),
        (lambda d: d["conditions"][0]["likelihoods"]["calc_present"].update(cite="nowhere-1999"), "unknown citation 'nowhere-1999'"),
        (lambda d: d["conditions"][0]["likelihoods"].update(no_such_feature={"p": 0.5, "cite": "seed001-overview"}), "unknown feature 'no_such_feature'"),
        (lambda d: d["conditions"][0].update(prior=0.5), "priors sum to"),
        (lambda d: d["conditions"][1].update(id=d["conditions"][0]["id"]), "appears twice"),
        (lambda d: d["conditions"][0].update(description="This is a metastasis for sure."), "certain wording"),
        (lambda d: d["recommendations"][0].update(action="Treat; the diagnosis of cancer stands"), "certain wording"),
        (lambda d: d["citations"].update(bad={"source": "seeds/x.txt", "section": "s"}), "seeds/NNN"),
        (lambda d: d["citations"].update(bad={"authors": "A B"}), "literature citation needs"),
        (lambda d: d["conditions"][0]["likelihoods"].update(age_60_plus={"p": 0.9, "cite": "seed001-overview"}), "exclusive group 'age_band'"),
        (lambda d: d.update(version="9.9.9"), "differs from conditions.yaml"),
        (lambda d: d.update(schema="other/2"), "unsupported knowledge schema"),
        (lambda d: d["recommendations"][0]["when"].update(features_present=["nope"]), "unknown feature 'nope'"),
        (lambda d: d["recommendations"][0].update(condition=["calcified_metastasis", "no_such"]), "unknown condition 'no_such'"),
        (lambda d: d["recommendations"][0].update(condition=[]), "empty list of conditions"),
    ],
)
def test_invalid_kb_raises_naming_the_problem(kb_copy: Path, edit, message):
    _edit(kb_copy / "conditions.yaml", edit)
    with pytest.raises(KnowledgeBaseError, match="(?i)" + re.escape(message)):
        load_knowledge(kb_copy)


def test_missing_features_file(kb_copy: Path):
    (kb_copy / "features.yaml").unlink()
    with pytest.raises(KnowledgeBaseError, match="not found"):
        load_knowledge(kb_copy / "conditions.yaml")


def test_unknown_feature_key_refused(kb_copy: Path):
    _edit(kb_copy / "features.yaml", lambda d: d["features"]["fever"].update(weight=3))
    with pytest.raises(KnowledgeBaseError, match="weight"):
        load_knowledge(kb_copy)
