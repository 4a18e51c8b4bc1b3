"""Shared output helpers for CLI commands: JSON for machines, rich for people."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console

console = Console(stderr=False, highlight=False)
err_console = Console(stderr=True)


def emit_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str, ensure_ascii=False))
