"""Shared output helpers for CLI commands: JSON for machines, rich for people."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

__all__ = ["StageBar", "console", "emit_json", "err_console"]

console = Console(stderr=False, highlight=False)
err_console = Console(stderr=True)


def emit_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str, ensure_ascii=False))


class StageBar:
    """One rich progress bar per stage on stderr, or nothing (``enabled=False``, for --json).

    Pass the instance as a ``progress(stage, done, total)`` callback::

        with StageBar(not json_) as bar:
            build_index(spec, progress=bar)
    """

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err_console,
            transient=True,
        )
        self.tasks: dict[str, TaskID] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        if stage not in self.tasks:
            self.tasks[stage] = self.bar.add_task(stage, total=total or 1)
        self.bar.update(self.tasks[stage], completed=done, total=total or 1)

    def __enter__(self) -> StageBar:
        if self.enabled:
            self.bar.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.enabled:
            self.bar.stop()
