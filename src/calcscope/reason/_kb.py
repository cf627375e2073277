"""Loading and validation of the knowledge base (``knowledge/conditions.yaml`` + ``features.yaml``).

The knowledge base is data: conditions with priors, feature likelihoods, next steps and
citations. It is validated on load; any problem (unknown key, missing citation,
probability out of range, priors that do not sum to one, certain wording) raises
:class:`KnowledgeBaseError` naming the offending entry.
"""

from __future__ import annotations

import functools
import math
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..errors import KnowledgeBaseError

__all__ = [
    "KNOWLEDGE_DIR",
    "KB_SCHEMA",
    "KnowledgeBaseError",
    "Citation",
    "FeatureDef",
    "GroupDef",
    "Likelihood",
    "Condition",
    "When",
    "RecommendationRule",
    "KnowledgeBase",
    "load_knowledge",
    "CERTAIN_WORDING",
]

KNOWLEDGE_DIR = Path(__file__).resolve().parent / "knowledge"
KB_SCHEMA = "calcscope-knowledge/1"

#: phrases that state a diagnosis as certain; refused in every text of the knowledge base
#: and never produced by the engine (tested).
CERTAIN_WORDING = (
    r"\bdiagnosis of\b",
    r"\bdiagnostic of\b",
    r"\bis an? [a-z]",
    r"\bconfirm(s|ed)\b",
    r"\bdefinite(ly)?\b",
    r"\bcertain(ly)?\b",
    r"\bprove[sn]?\b",
    r"\bpathognomonic\b",
)
_CERTAIN_RE = re.compile("|".join(CERTAIN_WORDING), re.IGNORECASE)
_SEED_RE = re.compile(r"^seeds/\d{3}_[0-9a-f]{16}\.txt$")


_Strict = ConfigDict(extra="forbid", frozen=True)


class Citation(BaseModel):
    """A source: a seed text (``source`` + ``section``) or a publication."""

    model_config = _Strict
    source: str | None = None
    section: str | None = None
    description: str | None = None
    authors: str | None = None
    title: str | None = None
    journal: str | None = None
    year: int | None = Field(default=None, ge=1800, le=2100)
    locator: str | None = None

    @model_validator(mode="after")
    def _complete(self) -> "Citation":
        if self.source is not None:
            if not _SEED_RE.match(self.source):
                raise ValueError(f"source '{self.source}' must look like seeds/NNN_<16 hex>.txt")
            if not self.section:
                raise ValueError("a seed citation needs a section hint")
        elif not (self.authors and self.title and self.journal and self.year):
            raise ValueError("a literature citation needs authors, title, journal and year")
        return self

    def render(self) -> str:
        """One-line human-readable reference."""
        if self.source is not None:
            return f"{self.source}, section '{self.section}'"
        loc = f";{self.locator}" if self.locator else ""
        return f"{self.authors} {self.title}. {self.journal} {self.year}{loc}."


class GroupDef(BaseModel):
    model_config = _Strict
    exclusive: bool = False
    question: str | None = None


class FeatureDef(BaseModel):
    model_config = _Strict
    id: str
    source: Literal["imaging", "clinical"]
    label: str
    absent_label: str
    group: str | None = None
    default_p: float = Field(gt=0, lt=1)
    question: str | None = None


class Likelihood(BaseModel):
    model_config = _Strict
    p: float
    cite: str
    note: str | None = None

    @field_validator("p")
    @classmethod
    def _open_unit(cls, v: float) -> float:
        if not (0.0 < v < 1.0) or math.isnan(v):
            raise ValueError(f"probability {v} out of range: must lie strictly between 0 and 1")
        return v


class PrimarySiteRanking(BaseModel):
    model_config = _Strict
    sites: list[str] = Field(min_length=1)
    cite: str
    note: str | None = None


class Condition(BaseModel):
    model_config = _Strict
    id: str
    name: str
    prior: float
    description: str
    citations: list[str] = Field(min_length=1)
    primary_site_ranking: PrimarySiteRanking | None = None
    likelihoods: dict[str, Likelihood]

    @field_validator("prior")
    @classmethod
    def _open_unit(cls, v: float) -> float:
        if not (0.0 < v < 1.0) or math.isnan(v):
            raise ValueError(f"prior {v} out of range: must lie strictly between 0 and 1")
        return v


class When(BaseModel):
    model_config = _Strict
    rank_at_most: int | None = Field(default=None, ge=1)
    probability_at_least: float | None = Field(default=None, ge=0, le=1)
    features_present: list[str] = Field(default_factory=list)
    features_absent: list[str] = Field(default_factory=list)
    features_not_present: list[str] = Field(default_factory=list)
    #: at least one of these observed present (e.g. some finding to describe further)
    any_present: list[str] = Field(default_factory=list)
    any_unknown: list[str] = Field(default_factory=list)
    all_unknown: list[str] = Field(default_factory=list)
    insufficient_evidence: bool | None = None

    def feature_ids(self) -> list[str]:
        return [*self.features_present, *self.features_absent, *self.features_not_present, *self.any_present,
                *self.any_unknown, *self.all_unknown]


class RecommendationRule(BaseModel):
    model_config = _Strict
    id: str
    #: the condition the rule is about; a list names alternatives of one disease (metastases
    #: with and without calcium): the rule then applies when one of them passes the rank and
    #: probability tests, and speaks of the best-ranked one that does
    condition: str | list[str] | None = None
    when: When = Field(default_factory=When)
    action: str
    reason: str
    cite: str
    append_primary_sites: bool = Field(
        default=False, description="append the condition's suggested primary sites to the action"
    )

    @property
    def condition_ids(self) -> list[str]:
        """The condition(s) the rule is about ([] for a rule on features only)."""
        if self.condition is None:
            return []
        return [self.condition] if isinstance(self.condition, str) else list(self.condition)


class _ConditionsFile(BaseModel):
    model_config = _Strict
    schema_: str = Field(alias="schema")
    version: str
    released: str
    population: str
    citations: dict[str, Citation]
    conditions: list[Condition]
    recommendations: list[RecommendationRule]


class _FeatureEntry(BaseModel):
    model_config = _Strict
    source: Literal["imaging", "clinical"]
    label: str
    absent_label: str
    group: str | None = None
    default_p: float
    question: str | None = None

    @field_validator("default_p")
    @classmethod
    def _open_unit(cls, v: float) -> float:
        if not (0.0 < v < 1.0) or math.isnan(v):
            raise ValueError(f"default_p {v} out of range: must lie strictly between 0 and 1")
        return v


class _FeaturesFile(BaseModel):
    model_config = _Strict
    version: str
    groups: dict[str, GroupDef]
    features: dict[str, _FeatureEntry]


class KnowledgeBase(BaseModel):
    """The validated knowledge base: features, conditions, recommendation rules, citations."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    version: str
    released: str
    population: str
    citations: dict[str, Citation]
    features: dict[str, FeatureDef]
    groups: dict[str, GroupDef]
    conditions: list[Condition]
    recommendations: list[RecommendationRule]

    # ---- look-ups ---------------------------------------------------------------------
    def condition(self, condition_id: str) -> Condition:
        for c in self.conditions:
            if c.id == condition_id:
                return c
        raise KeyError(condition_id)

    @property
    def condition_ids(self) -> list[str]:
        return [c.id for c in self.conditions]

    def cite(self, citation_id: str) -> str:
        """Rendered reference of a citation id (the string put into every output statement)."""
        return self.citations[citation_id].render()

    def rendered_citations(self) -> set[str]:
        return {c.render() for c in self.citations.values()}

    def likelihood(self, condition: Condition, feature_id: str) -> float:
        """P(feature present | condition), falling back to the feature's neutral default."""
        lk = condition.likelihoods.get(feature_id)
        return lk.p if lk is not None else self.features[feature_id].default_p

    def group_members(self, group: str) -> list[str]:
        return [f for f, d in self.features.items() if d.group == group]


def _loc(err: dict[str, Any]) -> str:
    out = ""
    for part in err.get("loc", ()):
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise KnowledgeBaseError(f"cannot read knowledge file: {exc.strerror}", path=str(path)) from exc
    try:
        return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506 - safe loader
    except yaml.YAMLError as exc:
        raise KnowledgeBaseError(f"knowledge file is not valid YAML: {exc}", path=str(path)) from exc


def _parse(model: type[BaseModel], data: Any, path: Path) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        more = f" (and {exc.error_count() - 1} more problems)" if exc.error_count() > 1 else ""
        raise KnowledgeBaseError(f"invalid knowledge entry at {_loc(first)}: {first['msg']}{more}", path=str(path)) from exc


def _check_wording(text: str, where: str, path: Path) -> None:
    m = _CERTAIN_RE.search(text)
    if m:
        raise KnowledgeBaseError(
            f"certain wording '{m.group(0)}' in {where}; the knowledge base must use suggestive wording",
            path=str(path),
        )


def _cross_validate(cf: _ConditionsFile, ff: _FeaturesFile, path: Path) -> None:
    err = functools.partial(KnowledgeBaseError, path=str(path))
    if cf.schema_ != KB_SCHEMA:
        raise err(f"unsupported knowledge schema '{cf.schema_}' (expected '{KB_SCHEMA}')")
    if not re.fullmatch(r"\d+\.\d+\.\d+", cf.version):
        raise err(f"version '{cf.version}' is not MAJOR.MINOR.PATCH")
    if ff.version != cf.version:
        raise err(f"features.yaml version {ff.version} differs from conditions.yaml version {cf.version}")
    for fid, f in ff.features.items():
        if f.group is not None and f.group not in ff.groups:
            raise err(f"feature '{fid}' names unknown group '{f.group}'")
    seen: set[str] = set()
    for c in cf.conditions:
        if c.id in seen:
            raise err(f"condition id '{c.id}' appears twice")
        seen.add(c.id)
        for cid in c.citations:
            if cid not in cf.citations:
                raise err(f"condition '{c.id}' cites unknown citation '{cid}'")
        if c.primary_site_ranking and c.primary_site_ranking.cite not in cf.citations:
            raise err(f"condition '{c.id}' primary_site_ranking cites unknown citation '{c.primary_site_ranking.cite}'")
        _check_wording(c.description, f"conditions[{c.id}].description", path)
        for fid, lk in c.likelihoods.items():
            if fid not in ff.features:
                raise err(f"conditions[{c.id}].likelihoods names unknown feature '{fid}'")
            if lk.cite not in cf.citations:
                raise err(f"conditions[{c.id}].likelihoods.{fid} cites unknown citation '{lk.cite}'")
            if lk.note:
                _check_wording(lk.note, f"conditions[{c.id}].likelihoods.{fid}.note", path)
        for gname, g in ff.groups.items():
            if not g.exclusive:
                continue
            members = [fid for fid, f in ff.features.items() if f.group == gname]
            total = sum(c.likelihoods[m].p if m in c.likelihoods else ff.features[m].default_p for m in members)
            if total > 1.0 + 1e-6:
                raise err(
                    f"conditions[{c.id}]: probabilities of the exclusive group '{gname}' sum to {total:.4f} (> 1)"
                )
    total_prior = sum(c.prior for c in cf.conditions)
    if abs(total_prior - 1.0) > 1e-6:
        raise err(f"condition priors sum to {total_prior:.6f}; they must sum to 1")
    for gname, g in ff.groups.items():
        members = [fid for fid, f in ff.features.items() if f.group == gname]
        if g.exclusive:
            total = sum(ff.features[m].default_p for m in members)
            if total > 1.0 + 1e-6:
                raise err(f"default probabilities of the exclusive group '{gname}' sum to {total:.4f} (> 1)")
    rids: set[str] = set()
    for r in cf.recommendations:
        if r.id in rids:
            raise err(f"recommendation id '{r.id}' appears twice")
        rids.add(r.id)
        if isinstance(r.condition, list) and not r.condition:
            raise err(f"recommendation '{r.id}' names an empty list of conditions")
        for cid in r.condition_ids:
            if cid not in seen:
                raise err(f"recommendation '{r.id}' names unknown condition '{cid}'")
        if r.cite not in cf.citations:
            raise err(f"recommendation '{r.id}' cites unknown citation '{r.cite}'")
        for fid in r.when.feature_ids():
            if fid not in ff.features:
                raise err(f"recommendation '{r.id}' names unknown feature '{fid}'")
        _check_wording(r.action, f"recommendations[{r.id}].action", path)
        _check_wording(r.reason, f"recommendations[{r.id}].reason", path)
    for fid, f in ff.features.items():
        for text in (f.label, f.absent_label, f.question or ""):
            _check_wording(text, f"features[{fid}]", path)


def load_knowledge(path: str | Path | None = None) -> KnowledgeBase:
    """Load and validate a knowledge base.

    Parameters
    ----------
    path: str or Path, optional
        Folder holding ``conditions.yaml`` and ``features.yaml``, or the path of a
        ``conditions.yaml`` (``features.yaml`` is read beside it). Default: the knowledge
        base shipped with calcscope (cached).

    Raises
    ------
    KnowledgeBaseError
        When a file is missing or any entry is invalid; the message names the entry.
    """
    if path is None:
        return _load_default()
    return _load(Path(path))


@functools.lru_cache(maxsize=1)
def _load_default() -> KnowledgeBase:
    return _load(KNOWLEDGE_DIR)


def _load(path: Path) -> KnowledgeBase:
    cpath = path / "conditions.yaml" if path.is_dir() else path
    fpath = cpath.parent / "features.yaml"
    for p in (cpath, fpath):
        if not p.is_file():
            raise KnowledgeBaseError("knowledge file not found", path=str(p))
    cf = _parse(_ConditionsFile, _read_yaml(cpath), cpath)
    ff = _parse(_FeaturesFile, _read_yaml(fpath), fpath)
    _cross_validate(cf, ff, cpath)
    features = {fid: FeatureDef(id=fid, **f.model_dump()) for fid, f in ff.features.items()}
    return KnowledgeBase(
        version=cf.version,
        released=cf.released,
        population=cf.population,
        citations=cf.citations,
        features=features,
        groups=ff.groups,
        conditions=cf.conditions,
        recommendations=cf.recommendations,
    )
