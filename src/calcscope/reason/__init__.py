"""Reasoning: from findings and clinical context to a ranked, cited differential.

Public API
----------
reason(doc, context=None, *, pattern=None, kb=None) -> model.Differential
load_knowledge(path=None) -> KnowledgeBase
load_context(path) -> model.Context              (errors.ContextError naming the field)
load_findings(path) -> model.FindingsDocument    (errors.FindingsError naming the field path)
findings_schema() -> dict                         (JSON Schema of a findings document)

The knowledge lives in ``knowledge/conditions.yaml`` and ``knowledge/features.yaml``
(versioned, validated on load). Output is decision support: wording is suggestive and
every result carries :data:`calcscope.model.DISCLAIMER`.
"""

from __future__ import annotations

from ._context import (
    MARKER_RANGES,
    findings_schema,
    load_context,
    load_findings,
    load_findings_and_pattern,
    marker_status,
    validate_context,
)
from ._engine import method_text, posterior, reason, score_features
from ._features import Observation, extract_features
from ._kb import KnowledgeBase, KnowledgeBaseError, load_knowledge

__all__ = [
    "reason",
    "load_knowledge",
    "load_context",
    "load_findings",
    "load_findings_and_pattern",
    "findings_schema",
    "validate_context",
    "marker_status",
    "MARKER_RANGES",
    "KnowledgeBase",
    "KnowledgeBaseError",
    "Observation",
    "extract_features",
    "score_features",
    "posterior",
    "method_text",
]
