"""``calcscope schema``: publish the JSON Schemas of calcscope's documents."""

from __future__ import annotations

import typer

from ..errors import UsageError
from ._common import print_json

__all__ = ["register", "SCHEMAS"]

SCHEMAS = ("analysis", "findings", "context")


def schema_for(name: str) -> dict:
    """JSON Schema (draft 2020-12, from the pydantic models) of a calcscope document."""
    from ..model import Analysis, Context, FindingsDocument

    models = {"analysis": Analysis, "findings": FindingsDocument, "context": Context}
    if name not in models:
        raise UsageError(f"unknown schema '{name}'", hint="use one of " + ", ".join(SCHEMAS))
    schema = models[name].model_json_schema(mode="serialization")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def register(app: typer.Typer) -> None:
    @app.command("schema")
    def schema_cmd(name: str = typer.Argument(..., help="analysis | findings | context")) -> None:
        """Print the JSON Schema of analysis.json, a findings document or a clinical context."""
        print_json(schema_for(name))
