"""Reasoning engine: seed cases, wording, citations, determinism, insufficient evidence."""

from __future__ import annotations

import math
import re

import pytest

from calcscope.errors import ContextError
from calcscope.model import DISCLAIMER, CalcificationPattern, Change, Context, Finding, FindingsDocument, Marker
from calcscope.reason import load_knowledge, posterior, reason, score_features
from calcscope.reason._engine import FLOOR_MIX
from calcscope.reason._features import Observation

KB = load_knowledge()

# wording that would state a diagnosis as certain
CERTAIN = re.compile(
    r"\bdiagnosis of\b|\bdiagnostic of\b|\bconfirm(s|ed)?\b|\bdefinite(ly)?\b|\bcertain(ly)?\b|\bproves?\b"
    r"|\b(this|it|the lesion|the finding|the calcification|findings?) (is|are) (a |an )?"
    r"(calcified|benign|liver|hepatic|metasta|hemangioma|cyst|abscess|stone|carcinoma|hcc|tuberc|schisto|hydatid)",
    re.IGNORECASE,
)


def breast_case() -> tuple[FindingsDocument, Context]:
    doc = FindingsDocument(
        modality="CT",
        phase="portal_venous",
        findings=[Finding(id="l", kind="lesion", count=5, density="hypodense", shape="punctate", location=["both_lobes"])],
    )
    return doc, Context(age=54, sex="female", known_malignancy=True, primary_site="breast")


def isolated_case() -> FindingsDocument:
    return FindingsDocument(
        modality="US",
        findings=[Finding(id="c1", kind="calcification", shape="pin", echo="hyperechoic", location=["right_lobe"], size_mm=4)],
    )


def stones_case() -> FindingsDocument:
    return FindingsDocument(
        modality="US",
        findings=[
            Finding(id="d1", kind="duct_dilatation", location=["left_lobe"]),
            Finding(id="s", kind="calcification", count=4, shape="beaded", location=["left_lobe", "along_duct"],
                    signs=["acoustic_shadow"], parent_id="d1", relation="in_duct", size_mm=7),
        ],
    )


def all_texts(d) -> list[str]:
    out = [d.impression, *d.missing_information]
    for rc in d.ranked:
        out.append(rc.summary)
        out += [e.statement for e in rc.evidence_for + rc.evidence_against]
    for r in d.recommendations:
        out += [r.action, r.reason]
    return out


def test_seed000_breast_case_ranks_metastasis_with_breast_primary():
    doc, ctx = breast_case()
    d = reason(doc, ctx)
    top = d.ranked[0]
    assert top.condition_id == "calcified_metastasis"
    assert top.probability > 0.8
    assert top.details["suggested_primary_sites"] == ["breast"]
    assert top.details["known_primary_rank_among_calcifying_primaries"] == 2
    assert not d.insufficient_evidence
    assert "breast" in d.impression
    actions = " ".join(r.action for r in d.recommendations)
    assert "primary tumour: breast" in actions


def test_unknown_primary_gives_seed_ranking_colon_first():
    doc, _ = breast_case()
    d = reason(doc, Context(age=60, known_malignancy=True))
    top = d.ranked[0]
    assert top.condition_id == "calcified_metastasis"
    assert top.details["suggested_primary_sites"][:3] == ["colon", "breast", "stomach"]
    assert len(top.details["suggested_primary_sites"]) == 10


def test_seed001_isolated_focus_benign_with_follow_up():
    d = reason(isolated_case(), Context(age=35, sex="male"))
    assert d.ranked[0].condition_id == "benign_calcification"
    rec = next(r for r in d.recommendations if r.condition_id == "benign_calcification")
    assert "No treatment" in rec.action and "every 3-6 months" in rec.action and "2-3 years" in rec.action
    assert rec.citation.startswith("seeds/001_fc47ebb88f3c1e60.txt")


def test_seed001_beaded_stones_rank_first_and_recommend_treatment():
    d = reason(stones_case(), Context(age=52))
    assert d.ranked[0].condition_id == "bile_duct_stone"
    actions = [r.action for r in d.recommendations]
    assert any("treatment of the intrahepatic duct stones" in a for a in actions)
    assert not any("No treatment suggested; ultrasound review" in a for a in actions)


def test_seed003_growth_triggers_surgical_evaluation():
    doc = FindingsDocument(findings=[Finding(id="c", kind="calcification", size_mm=9, location=["right_lobe"],
                                             change=Change(growth_percent=60, interval_days=180))])
    d = reason(doc, None)
    rec = d.recommendations[0]
    assert "malignant transformation" in rec.action and "surgical" in rec.action
    assert rec.citation.startswith("seeds/003_f4e56972f096d8df.txt")
    assert "grew" in d.impression
    # slow growth over 3 years (10 %/year) is not "growing"
    slow = FindingsDocument(findings=[Finding(id="c", kind="calcification", size_mm=9,
                                              change=Change(growth_percent=30, interval_days=1095))])
    d2 = reason(slow, None)
    assert not any("malignant transformation" in r.action for r in d2.recommendations)


def test_active_abscess_recommends_drainage_and_antibiotics():
    doc = FindingsDocument(findings=[Finding(id="l", kind="lesion", size_mm=60, density="hypodense", enhancement="rim")])
    d = reason(doc, Context(fever=True, leukocytosis=True))
    assert d.ranked[0].condition_id == "pyogenic_abscess"
    assert any("drainage" in r.action and "antibiotics" in r.action for r in d.recommendations)


def test_no_findings_is_insufficient_evidence():
    """A liver without findings favours nothing, and there is no finding to describe further:
    the "describe the finding" work-up is offered only once there is one."""
    d = reason(FindingsDocument(), Context(age=50))
    assert d.insufficient_evidence
    assert not any("Describe the finding" in r.action for r in d.recommendations)
    assert "No liver finding" in d.impression
    one = reason(FindingsDocument(findings=[Finding(id="l", kind="lesion")]), None)
    assert one.insufficient_evidence
    assert any(r.citation.startswith("seeds/001") and "ultrasound" in r.action for r in one.recommendations)


def test_non_discriminative_single_lesion_is_insufficient():
    doc = FindingsDocument(findings=[Finding(id="l", kind="lesion")])
    d = reason(doc, None)
    assert d.insufficient_evidence
    assert d.ranked[0].probability < 0.6


def test_probabilities_normalised_and_bounded():
    for doc, ctx in [breast_case(), (isolated_case(), None), (stones_case(), None), (FindingsDocument(), None)]:
        d = reason(doc, ctx)
        ps = [r.probability for r in d.ranked]
        assert sum(ps) == pytest.approx(1.0, abs=1e-3)
        floor = FLOOR_MIX / len(KB.conditions)
        assert min(ps) >= round(floor, 4) - 1e-4
        assert max(ps) <= 1 - floor * (len(KB.conditions) - 1) + 1e-4
        assert ps == sorted(ps, reverse=True)


def test_wording_is_suggestive_never_certain():
    for doc, ctx in [breast_case(), (isolated_case(), None), (stones_case(), None), (FindingsDocument(), None)]:
        d = reason(doc, ctx)
        for text in all_texts(d):
            assert not CERTAIN.search(text), text
        assert d.ranked[0].summary.startswith("Findings ")
        assert d.disclaimer == DISCLAIMER
        assert "independent" in d.method


def test_every_statement_carries_a_resolvable_citation():
    known = KB.rendered_citations()
    doc, ctx = breast_case()
    for d in (reason(doc, ctx), reason(stones_case(), None), reason(FindingsDocument(), None)):
        for rc in d.ranked:
            for e in rc.evidence_for + rc.evidence_against:
                assert e.citation in known
            assert rc.citations and set(rc.citations) <= known
        # an empty document has no finding to work up, so it may carry no recommendation
        assert d.recommendations or "No liver finding" in d.impression
        for r in d.recommendations:
            assert r.citation in known


def test_evidence_weights_sum_with_prior_to_log_score_when_all_specified():
    doc, ctx = breast_case()
    d = reason(doc, ctx)
    top = d.ranked[0]
    listed = sum(e.weight for e in top.evidence_for + top.evidence_against)
    # listed evidence explains the score up to small unlisted/default contributions
    assert top.details["log_score"] - top.details["log_prior"] == pytest.approx(listed, abs=1.0)
    assert all(e.weight > 0 for e in top.evidence_for)
    assert all(e.weight < 0 for e in top.evidence_against)


def test_missing_information_names_markers_for_metastasis_vs_hcc():
    doc = FindingsDocument(findings=[
        Finding(id="l1", kind="lesion", size_mm=45, density="hypodense"),
        Finding(id="c1", kind="calcification", size_mm=6, parent_id="l1", relation="centre"),
    ])
    d = reason(doc, None)
    joined = " ".join(d.missing_information)
    assert d.missing_information
    assert "History of malignancy" in joined or "CEA not given" in joined or "AFP not given" in joined
    # known items are not asked for
    d2 = reason(doc, Context(known_malignancy=True, primary_site="colon", markers={"cea": Marker(value=30, unit="ng/mL")}))
    joined2 = " ".join(d2.missing_information)
    assert "History of malignancy" not in joined2 and "CEA not given" not in joined2


def test_missing_information_is_computed_from_the_model():
    """The first missing item really moves a top-3 probability by at least 0.05."""
    doc = FindingsDocument(findings=[
        Finding(id="l1", kind="lesion", size_mm=45, density="hypodense"),
        Finding(id="c1", kind="calcification", size_mm=6, parent_id="l1", relation="centre"),
    ])
    d = reason(doc, None)
    first = d.missing_information[0]
    nums = [float(x) for x in re.findall(r"(\d\.\d\d) -> (\d\.\d\d)", first)[0]]
    assert abs(nums[1] - nums[0]) >= 0.05 or "would lead" in first


def test_wrong_marker_unit_raises_context_error_naming_field():
    doc, _ = breast_case()
    with pytest.raises(ContextError, match=r"markers\.cea\.unit"):
        reason(doc, Context(markers={"cea": Marker(value=3, unit="mmol/L")}))


def test_identical_input_identical_json_bytes():
    doc, ctx = breast_case()
    a = reason(doc, ctx).model_dump_json()
    b = reason(doc.model_copy(deep=True), ctx.model_copy(deep=True)).model_dump_json()
    assert a == b


def test_pipeline_style_document_with_pattern():
    """One finding per object with parent links, plus the pipeline's CalcificationPattern."""
    findings = [
        Finding(id="lesion-001", kind="lesion", size_mm=42.0, density="hypodense", lobe="right", children=["calc-001"]),
        Finding(id="lesion-002", kind="lesion", size_mm=35.0, density="hypodense", lobe="left", children=["calc-002"]),
        Finding(id="calc-001", kind="calcification", size_mm=6.0, lobe="right", parent_id="lesion-001",
                relation="centre", location=["in_lesion_centre"], shape="punctate"),
        Finding(id="calc-002", kind="calcification", size_mm=4.0, lobe="left", parent_id="lesion-002",
                relation="periphery", location=["in_lesion_rim"], shape="coarse"),
    ]
    pattern = CalcificationPattern(count=2, distribution="scattered", size_mm_min=4.0, size_mm_median=5.0,
                                   size_mm_max=6.0, right_lobe_count=1, left_lobe_count=1, in_lesion_count=2)
    d = reason(FindingsDocument(modality="CT", phase="portal_venous", findings=findings),
               Context(age=54, sex="female", known_malignancy=True, primary_site="breast"), pattern=pattern)
    assert d.ranked[0].condition_id == "calcified_metastasis"
    feats = {e.feature for e in d.ranked[0].evidence_for}
    assert {"calc_in_lesion", "lesion_multiple", "lesion_large_with_small_calc", "calc_lobe_both"} <= feats


def test_score_features_matches_posterior_definition():
    obs = {"calc_present": Observation(True, "t"), "duct_dilatation": Observation(False, "t")}
    scores = score_features(KB, obs)
    probs = posterior(scores)
    raw = [math.exp(s.log_score) for s in scores]
    z = sum(raw)
    for p, r in zip(probs, raw):
        assert p == pytest.approx((1 - FLOOR_MIX) * r / z + FLOOR_MIX / len(scores), rel=1e-9)


def test_growth_suppresses_no_treatment_advice():
    """A reported growth never comes with 'no treatment' advice, whatever ranks first."""
    doc = FindingsDocument(findings=[Finding(id="c", kind="calcification", size_mm=9, location=["right_lobe"],
                                             change=Change(growth_percent=60, interval_days=180))])
    actions = [r.action for r in reason(doc, Context(age=55)).recommendations]
    assert any("malignant transformation" in a for a in actions)
    assert not any(a.startswith("No treatment") for a in actions)


def _scattered_lesions(calcified: bool) -> FindingsDocument:
    findings = [Finding(id="l", kind="lesion", count=5, size_mm=28, density="hypodense", enhancement="rim",
                        signs=["bulls_eye"], location=["both_lobes"])]
    if calcified:
        findings.append(Finding(id="c", kind="calcification", count=3, size_mm=4, shape="punctate", parent_id="l",
                                relation="centre"))
    return FindingsDocument(modality="CT", phase="portal_venous", findings=findings)


def test_metastases_with_and_without_calcium_are_told_apart():
    # seed 004: scattered hypodense bull's-eye masses in a patient with cancer suggest metastases;
    # the calcium inside them is what moves the differential to the calcified entry (seed 001)
    ctx = Context(age=63, sex="male", known_malignancy=True, primary_site="colon")
    plain = reason(_scattered_lesions(calcified=False), ctx)
    calc = reason(_scattered_lesions(calcified=True), ctx)
    assert plain.ranked[0].condition_id == "liver_metastasis" and plain.ranked[0].probability > 0.6
    assert calc.ranked[0].condition_id == "calcified_metastasis" and calc.ranked[0].probability > 0.6
    p_calc_entry = {r.condition_id: r.probability for r in plain.ranked}["calcified_metastasis"]
    assert p_calc_entry < 0.2
    for d, cid in ((plain, "liver_metastasis"), (calc, "calcified_metastasis")):
        # the shared rules (markers, multidisciplinary meeting) speak of the entry that leads
        for word in ("multidisciplinary", "CEA"):
            rec = next(r for r in d.recommendations if word in r.action)
            assert rec.condition_id == cid
            assert f"({KB.condition(cid).name} ranked 1" in rec.reason


def test_rule_naming_several_conditions_applies_through_the_best_ranked_passing_one():
    from calcscope.reason._engine import _rule_applies, _rule_condition
    from calcscope.reason._kb import RecommendationRule

    rule = RecommendationRule(id="r", condition=["a", "b"], when={"rank_at_most": 2, "probability_at_least": 0.2},
                              action="x", reason="y", cite="z")
    assert rule.condition_ids == ["a", "b"]
    rank = {"a": 3, "b": 1}
    # b passes, a is ranked too low
    assert _rule_condition(rule, rank, {"a": 0.3, "b": 0.5}) == "b"
    assert _rule_applies(rule, {}, rank, {"a": 0.3, "b": 0.5}, False)
    # neither passes the probability test
    assert _rule_condition(rule, rank, {"a": 0.3, "b": 0.1}) is None
    assert not _rule_applies(rule, {}, rank, {"a": 0.3, "b": 0.1}, False)
    # both pass: the better-ranked one is named
    assert _rule_condition(rule, {"a": 2, "b": 1}, {"a": 0.3, "b": 0.5}) == "b"
    assert RecommendationRule(id="s", action="x", reason="y", cite="z").condition_ids == []


def test_cyst_like_deposits_without_contrast_in_a_cancer_patient_are_sent_for_characterisation():
    # three fluid-density (20 HU) lesions on a non-contrast scan of a patient with colon cancer:
    # the cyst may lead, but metastases stay in view (seed 004) and the report must not advise
    # "no follow-up" while the evidence is flagged insufficient; it asks for the enhancement pattern
    findings = [Finding(id=f"l{i}", kind="cyst", size_mm=s, hu=20.0, density="cystic", margin="well_defined",
                        location=["right_lobe"]) for i, s in enumerate((29.0, 37.0, 33.0))]
    doc = FindingsDocument(modality="CT", phase="non_contrast", findings=findings)
    d = reason(doc, Context(age=66, sex="female", known_malignancy=True, primary_site="colon"))
    ids = [r.condition_id for r in d.ranked]
    assert d.insufficient_evidence
    assert "liver_metastasis" in ids[:2]
    actions = [r.action for r in d.recommendations]
    assert not any(a.startswith("No treatment") for a in actions)
    char = [r for r in d.recommendations if "multiphase contrast CT or MRI" in r.action]
    assert len(char) == 1 and char[0].condition_id == "liver_metastasis"
    assert "bull's-eye" in char[0].action
    # the same lesions without the cancer history: a clear simple cyst keeps its advice
    d0 = reason(doc, Context(age=66, sex="female", known_malignancy=False))
    assert d0.ranked[0].condition_id == "simple_cyst" and not d0.insufficient_evidence
    assert any(r.action.startswith("No treatment") for r in d0.recommendations)
