"""``analysis.json``: the :class:`calcscope.model.Analysis` as stable, readable JSON."""

from __future__ import annotations

from ..model import Analysis

__all__ = ["analysis_json_bytes"]


def analysis_json_bytes(analysis: Analysis) -> bytes:
    """Serialise ``analysis`` as UTF-8 JSON, 2-space indent, trailing newline.

    Keys follow the field order of the pydantic models (fixed by the schema), and
    dictionaries keep their insertion order, so the same analysis always gives the
    same bytes. ``analysis.created`` is the only timestamp; it is ``null`` when the
    run was made without one.
    """
    return (analysis.model_dump_json(indent=2) + "\n").encode("utf-8")
