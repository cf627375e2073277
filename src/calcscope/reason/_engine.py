"""Transparent naive-Bayes scoring of the knowledge base's conditions.

For each condition c the engine computes

    log_score(c) = log prior(c) + sum over known features f of w(f, c)
    w(f, c)      = log( P(state of f | c) / P(state of f) )

where P(present | c) comes from the knowledge base (or the feature's neutral default),
P(absent | c) = 1 - P(present | c), and P(state) = sum_k prior(k) P(state | k) is the
state's probability in the knowledge base's reference mixture. Features of one group
(e.g. the age band) count only through the member observed. Features are assumed
conditionally independent given the condition; correlated findings are therefore counted
more than once, which the ``method`` string of every result states.

Posterior probabilities are the softmax of the log scores, mixed with a uniform floor
(``FLOOR_MIX``) so that no probability reaches 0 or 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..model import (
    DISCLAIMER,
    CalcificationPattern,
    Context,
    Differential,
    EvidenceItem,
    FindingsDocument,
    RankedCondition,
    Recommendation,
)
from ._context import validate_context
from ._features import Observation, extract_features
from ._kb import Condition, KnowledgeBase, RecommendationRule, load_knowledge

__all__ = [
    "FLOOR_MIX",
    "MIN_TOP_PROBABILITY",
    "MIN_MARGIN",
    "MIN_EVIDENCE_WEIGHT",
    "ConditionScore",
    "score_features",
    "posterior",
    "reason",
    "method_text",
]

#: weight of the uniform distribution mixed into the posterior (bounds it away from 0 and 1)
FLOOR_MIX = 0.02
#: below this top probability the result is flagged "insufficient evidence"
MIN_TOP_PROBABILITY = 0.60
#: below this lead of the top condition over the second the result is flagged as well
MIN_MARGIN = 0.20
#: evidence items are listed when |weight| (natural log) reaches this value (LR <= 0.9 or >= 1.1)
MIN_EVIDENCE_WEIGHT = 0.1
#: missing-information items are listed when they move a top-3 probability by this much
MIN_MISSING_IMPACT = 0.05
MAX_MISSING_ITEMS = 6
_ROUND = 4


@dataclass(frozen=True)
class Contribution:
    feature: str
    present: bool
    weight: float
    likelihood: float
    specified: bool
    basis: str


@dataclass(frozen=True)
class ConditionScore:
    condition: Condition
    log_prior: float
    log_score: float
    contributions: tuple[Contribution, ...]


def method_text(kb: KnowledgeBase) -> str:
    """The scoring method in words (goes into every Differential)."""
    return (
        f"Naive Bayes over {len(kb.conditions)} mutually exclusive conditions (knowledge base "
        f"v{kb.version}): probability proportional to prior x product of P(feature state | condition). "
        "ASSUMPTION: features are treated as conditionally independent given the condition, so "
        "correlated findings are counted more than once. Evidence weights are natural-log likelihood "
        "ratios against the knowledge base's reference mixture; unknown features are left out. "
        f"Probabilities are mixed with a uniform floor ({FLOOR_MIX:g}) so none reaches 0 or 1. "
        "Likelihoods are expert estimates informed by the cited sources, not fitted to patient data. "
        f"'Insufficient evidence' is flagged when the top probability is below {MIN_TOP_PROBABILITY:g}, "
        f"its lead over the second below {MIN_MARGIN:g}, or no imaging finding is given."
    )


def _state_p(p_present: float, present: bool) -> float:
    return p_present if present else 1.0 - p_present


def score_features(kb: KnowledgeBase, observations: dict[str, Observation]) -> list[ConditionScore]:
    """Log scores of every condition (knowledge-base order) for a set of observed features."""
    out: list[ConditionScore] = []
    marginal: dict[tuple[str, bool], float] = {}
    for fid, ob in observations.items():
        if fid not in kb.features:
            raise KeyError(f"feature '{fid}' is not defined in the knowledge base")
        marginal[(fid, ob.present)] = sum(
            c.prior * _state_p(kb.likelihood(c, fid), ob.present) for c in kb.conditions
        )
    for c in kb.conditions:
        contribs = []
        total = math.log(c.prior)
        for fid, ob in observations.items():
            p = _state_p(kb.likelihood(c, fid), ob.present)
            w = math.log(p / marginal[(fid, ob.present)])
            total += w
            contribs.append(Contribution(fid, ob.present, w, p, fid in c.likelihoods, ob.basis))
        out.append(ConditionScore(c, math.log(c.prior), total, tuple(contribs)))
    return out


def posterior(scores: list[ConditionScore]) -> list[float]:
    """Softmax of the log scores, mixed with a uniform floor (FLOOR_MIX)."""
    m = max(s.log_score for s in scores)
    ex = [math.exp(s.log_score - m) for s in scores]
    z = sum(ex)
    k = len(scores)
    return [(1.0 - FLOOR_MIX) * e / z + FLOOR_MIX / k for e in ex]


def _ranking(kb: KnowledgeBase, probs: list[float]) -> list[int]:
    return sorted(range(len(kb.conditions)), key=lambda i: (-round(probs[i], 12), i))


def _evidence(kb: KnowledgeBase, cs: ConditionScore) -> tuple[list[EvidenceItem], list[EvidenceItem], list[str]]:
    """Evidence for and against a condition (sorted by weight) and the labels of the evidence for."""
    pro: list[EvidenceItem] = []
    con: list[EvidenceItem] = []
    labels: dict[str, str] = {}
    for ct in cs.contributions:
        if not ct.specified or abs(ct.weight) < MIN_EVIDENCE_WEIGHT:
            continue  # neutral defaults have no source; they count in the score only
        lk = cs.condition.likelihoods[ct.feature]
        fdef = kb.features[ct.feature]
        label = fdef.label if ct.present else fdef.absent_label
        lr = math.exp(ct.weight)
        direction = "raises" if ct.weight > 0 else "lowers"
        note = f" Source: {lk.note}." if lk.note else ""
        statement = (
            f"{label[0].upper() + label[1:]} ({ct.basis}): this {direction} the likelihood of "
            f"{cs.condition.name.lower()} (likelihood ratio {lr:.2f}).{note}"
        )
        labels[ct.feature] = label
        item = EvidenceItem(statement=statement, feature=ct.feature, weight=round(ct.weight, _ROUND), citation=kb.cite(lk.cite))
        (pro if ct.weight > 0 else con).append(item)
    pro.sort(key=lambda e: (-e.weight, e.feature))
    con.sort(key=lambda e: (e.weight, e.feature))
    return pro, con, [labels[e.feature] for e in pro]


def _summary(name: str, p: float, rank: int, insufficient: bool, pro_labels: list[str]) -> str:
    lower = name[0].lower() + name[1:]
    key = "; ".join(pro_labels[:2])
    because = f", mainly on: {key}" if key else ""
    if rank == 1 and not insufficient:
        return f"Findings favour {lower} (probability {p:.2f}){because}."
    if rank == 1:
        return f"Findings suggest {lower} as one possibility among several (probability {p:.2f}){because}."
    if p >= 0.10:
        return f"Findings suggest {lower} as a possibility (probability {p:.2f})."
    if p >= 0.02:
        return f"Findings make {lower} less likely (probability {p:.2f})."
    return f"Findings argue against {lower} (probability {p:.2f})."


def _primary_sites(c: Condition, context: Context | None) -> dict[str, object]:
    rk = c.primary_site_ranking
    if rk is None:
        return {}
    known = context.primary_site if context is not None else None
    if known is not None and known not in ("unknown", "other") and context.known_malignancy is not False:  # type: ignore[union-attr]
        rank = rk.sites.index(known) + 1 if known in rk.sites else None
        return {
            "suggested_primary_sites": [known],
            "primary_site_basis": "known primary site in the clinical context",
            "known_primary_rank_among_calcifying_primaries": rank,
            "primary_site_ranking": list(rk.sites),
        }
    return {
        "suggested_primary_sites": list(rk.sites),
        "primary_site_basis": f"no known primary in the context; {rk.note or 'ranking from the knowledge base'}",
        "primary_site_ranking": list(rk.sites),
    }


def _site_phrase(details: dict[str, object]) -> str:
    sites = details.get("suggested_primary_sites") or []
    if not sites:
        return ""
    if details.get("primary_site_basis", "").startswith("known"):  # type: ignore[union-attr]
        return f"{sites[0]} (the known primary)"  # type: ignore[index]
    return ", ".join(s.replace("_", " ") for s in sites) + " (in that order)"  # type: ignore[union-attr]


def _rule_condition(rule: RecommendationRule, rank_of: dict[str, int], prob_of: dict[str, float]) -> str | None:
    """The best-ranked of the rule's conditions that passes its rank and probability tests."""
    w = rule.when
    passing = [
        cid for cid in rule.condition_ids
        if (w.rank_at_most is None or rank_of[cid] <= w.rank_at_most)
        and (w.probability_at_least is None or prob_of[cid] >= w.probability_at_least)
    ]
    return min(passing, key=rank_of.__getitem__) if passing else None


def _rule_applies(
    rule: RecommendationRule,
    obs: dict[str, Observation],
    rank_of: dict[str, int],
    prob_of: dict[str, float],
    insufficient: bool,
) -> bool:
    w = rule.when
    if w.insufficient_evidence is not None and w.insufficient_evidence != insufficient:
        return False
    if rule.condition_ids and _rule_condition(rule, rank_of, prob_of) is None:
        return False
    if any(not (f in obs and obs[f].present) for f in w.features_present):
        return False
    if any(not (f in obs and not obs[f].present) for f in w.features_absent):
        return False
    if any(f in obs and obs[f].present for f in w.features_not_present):
        return False
    if w.any_present and not any(f in obs and obs[f].present for f in w.any_present):
        return False
    if w.any_unknown and all(f in obs for f in w.any_unknown):
        return False
    if w.all_unknown and any(f in obs for f in w.all_unknown):
        return False
    return True


def _recommendations(
    kb: KnowledgeBase,
    obs: dict[str, Observation],
    ranked: list[RankedCondition],
    insufficient: bool,
) -> list[Recommendation]:
    rank_of = {rc.condition_id: i + 1 for i, rc in enumerate(ranked)}
    prob_of = {rc.condition_id: rc.probability for rc in ranked}
    by_id = {rc.condition_id: rc for rc in ranked}
    picked: list[tuple[int, int, Recommendation]] = []
    for order, rule in enumerate(kb.recommendations):
        if not _rule_applies(rule, obs, rank_of, prob_of, insufficient):
            continue
        action = rule.action
        reason = rule.reason[0].upper() + rule.reason[1:]
        cid = _rule_condition(rule, rank_of, prob_of) if rule.condition_ids else None
        if cid is not None:
            rc = by_id[cid]
            reason += f" ({rc.name} ranked {rank_of[cid]}, probability {rc.probability:.2f})"
            if rule.append_primary_sites:
                phrase = _site_phrase(rc.details)
                if phrase:
                    action += f": {phrase}"
        else:
            triggers = [obs[f].basis for f in rule.when.features_present if f in obs]
            if triggers:
                reason += f" (triggered by {'; '.join(triggers)})"
        rec = Recommendation(action=action + ".", reason=reason + ".", condition_id=cid, citation=kb.cite(rule.cite))
        primary = 0 if cid is None else rank_of[cid]
        picked.append((primary, order, rec))
    picked.sort(key=lambda t: (t[0], t[1]))
    return [r for _, _, r in picked]


def _askable(fid: str, obs: dict[str, Observation]) -> bool:
    calc = obs.get("calc_present")
    lesion = obs.get("lesion_present")
    if fid.startswith("calc_") and not (calc and calc.present):
        return False
    if (fid.startswith("enh_") or fid.startswith("lesion_") or fid.startswith("sign_")) and not (lesion and lesion.present):
        return False
    return True


def _missing_information(kb: KnowledgeBase, obs: dict[str, Observation], probs: list[float]) -> list[str]:
    order = _ranking(kb, probs)
    top = order[0]
    watch = order[:3]
    candidates: list[tuple[str, list[tuple[str, str, bool]]]] = []
    for fid, f in kb.features.items():
        if f.question and fid not in obs and _askable(fid, obs):
            candidates.append((f.question, [(fid, f.label, True), (fid, f.absent_label, False)]))
    for gname, g in kb.groups.items():
        members = kb.group_members(gname)
        if g.question and not any(m in obs for m in members) and all(_askable(m, obs) for m in members):
            candidates.append((g.question, [(m, kb.features[m].label, True) for m in members]))
    items: list[tuple[int, float, str]] = []
    for question, scenarios in candidates:
        best_impact = 0.0
        changes_top = False
        parts: list[str] = []
        for fid, label, present in scenarios:
            trial = dict(obs)
            trial[fid] = Observation(present, "hypothetical")
            p2 = posterior(score_features(kb, trial))
            new_top = _ranking(kb, p2)[0]
            impact = max(abs(p2[i] - probs[i]) for i in watch)
            # the condition that moves most, among the current top three
            mover = max(watch, key=lambda i: (abs(p2[i] - probs[i]), -i))
            if impact > best_impact:
                best_impact = impact
            if new_top != top:
                changes_top = True
                parts.append(
                    f"if {label}, {kb.conditions[new_top].name.lower()} would lead "
                    f"({p2[new_top]:.2f}; {kb.conditions[top].name.lower()} {probs[top]:.2f} -> {p2[top]:.2f})"
                )
            elif impact >= MIN_MISSING_IMPACT:
                parts.append(
                    f"if {label}, {kb.conditions[mover].name.lower()} {probs[mover]:.2f} -> {p2[mover]:.2f}"
                )
        if best_impact >= MIN_MISSING_IMPACT or changes_top:
            items.append((0 if changes_top else 1, -best_impact, f"{question}: " + "; ".join(parts) + "."))
    items.sort(key=lambda t: (t[0], round(t[1], 9), t[2]))
    return [t[2] for t in items[:MAX_MISSING_ITEMS]]


def reason(
    doc: FindingsDocument,
    context: Context | None = None,
    *,
    pattern: CalcificationPattern | None = None,
    kb: KnowledgeBase | None = None,
) -> Differential:
    """Rank the knowledge base's conditions for a findings document and clinical context.

    Parameters
    ----------
    doc: FindingsDocument
        Findings from the image pipeline or written by hand.
    context: Context, optional
        Clinical context; validated (marker units, primary-site vocabulary) first.
    pattern: CalcificationPattern, optional
        The image pipeline's summary of the calcifications (distribution, counts, sizes).
    kb: KnowledgeBase, optional
        Knowledge base to use; default: the one shipped with calcscope.

    Returns
    -------
    Differential
        Ranked conditions with probabilities, evidence for and against (each cited),
        missing information, recommendations (each cited), the insufficient-evidence
        flag, an impression and the disclaimer. Identical input gives identical output.

    Raises
    ------
    ContextError
        When the context is invalid (e.g. a marker in a wrong unit).
    """
    kb = kb or load_knowledge()
    if context is not None:
        context = validate_context(context)
    obs = extract_features(doc, context, pattern=pattern)
    scores = score_features(kb, obs)
    probs = posterior(scores)
    order = _ranking(kb, probs)
    top_p = probs[order[0]]
    second_p = probs[order[1]] if len(order) > 1 else 0.0
    imaging_given = any(kb.features[f].source == "imaging" and o.present for f, o in obs.items())
    insufficient = (not imaging_given) or top_p < MIN_TOP_PROBABILITY or (top_p - second_p) < MIN_MARGIN

    ranked: list[RankedCondition] = []
    for rank, i in enumerate(order, start=1):
        cs = scores[i]
        c = cs.condition
        pro, con, pro_labels = _evidence(kb, cs)
        details: dict[str, object] = {
            "rank": rank,
            "log_prior": round(cs.log_prior, _ROUND),
            "log_score": round(cs.log_score, _ROUND),
            "prior": c.prior,
        }
        details.update(_primary_sites(c, context))
        cites = [kb.cite(x) for x in c.citations]
        for e in pro + con:
            if e.citation not in cites:
                cites.append(e.citation)
        ranked.append(
            RankedCondition(
                condition_id=c.id,
                name=c.name,
                probability=round(probs[i], _ROUND),
                summary=_summary(c.name, probs[i], rank, insufficient, pro_labels),
                evidence_for=pro,
                evidence_against=con,
                citations=cites,
                details=details,
            )
        )

    recs = _recommendations(kb, obs, ranked, insufficient)
    missing = _missing_information(kb, obs, probs)
    return Differential(
        knowledge_version=kb.version,
        method=method_text(kb),
        ranked=ranked,
        insufficient_evidence=insufficient,
        impression=_impression(ranked, insufficient, obs, imaging_given),
        missing_information=missing,
        recommendations=recs,
        disclaimer=DISCLAIMER,
    )


def _impression(ranked: list[RankedCondition], insufficient: bool, obs: dict[str, Observation], imaging_given: bool) -> str:
    top, others = ranked[0], ranked[1:3]
    tail = " and ".join(f"{r.name.lower()} ({r.probability:.2f})" for r in others)
    if not imaging_given:
        text = (
            "No liver finding was found or given, so the evidence does not favour any condition; "
            f"by prior and context alone the leading possibilities would be {top.name.lower()} "
            f"({top.probability:.2f}), {tail}."
        )
    elif insufficient:
        text = (
            "The findings do not clearly favour one condition (insufficient evidence); leading "
            f"possibilities: {top.name.lower()} ({top.probability:.2f}), {tail}."
        )
    else:
        text = f"Findings favour {top.name.lower()} (probability {top.probability:.2f}); {tail} remain in the differential."
    phrase = _site_phrase(top.details)
    if phrase and not insufficient:
        text += f" Primary sites to look for: {phrase}."
    if "calc_growing" in obs and obs["calc_growing"].present:
        text += " A calcification grew between studies, which should raise suspicion of malignant transformation."
    return text
