"""Shared helpers of the command modules."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console

__all__ = ["STATE", "console", "err_console", "print_json"]

STATE: dict[str, Any] = {"debug": False}
console = Console()
err_console = Console(stderr=True)


def print_json(data: Any) -> None:
    """Print JSON to stdout without rich markup (for pipelines)."""
    import sys

    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
