"""Job kinds: each turns a validated spec into a trained, evaluated model folder.

A kind has three entry points, called by :mod:`training.jobs` and :mod:`training.promotion`:

* ``train(spec, ctx) -> KindResult`` writes the model into ``ctx.out_dir / "model"`` and its
  held-out evaluation data into ``ctx.out_dir / "eval"``;
* ``compare(challenger, champion) -> Comparison`` scores both registered versions on the
  challenger's own held-out data (the job's evaluation) for promotion;
* ``publish(model, version, folder, history)`` hands a promoted version to its consumer (the
  gateway, an index) and may return what it did (a deployment, a rollout, an index version);
* optionally ``gate(model, version, folder, champion) -> dict`` — checks beyond the job's own
  evaluation that must pass before the alias moves (the evaluation gate for the generator, the
  index's retrieval metrics for the embedder); it raises
  :class:`~training.errors.PromotionRefused` with the numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from training.report import DataSourceRecord, SourceFigure

__all__ = [
    "Comparison",
    "Kind",
    "KindResult",
    "TrainContext",
    "get_kind",
    "hf_trainer_args",
    "quiet_trainer",
]

Progress = Callable[..., None]


@dataclass
class TrainContext:
    run_id: str
    out_dir: Path
    device: str
    progress: Progress
    log_metrics: Callable[[dict[str, float], int], None]


@dataclass
class KindResult:
    metrics: dict[str, float]
    data: list[DataSourceRecord]
    data_digest: dict[str, str]
    per_source: dict[str, SourceFigure] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Comparison:
    metric: str
    challenger: float
    champion: float
    details: dict[str, Any] = field(default_factory=dict)


def hf_trainer_args(ctx: TrainContext, seed: int) -> dict[str, Any]:
    """``TrainingArguments`` every transformers-trainer kind shares: seeded data order, a log
    line per step (``ctx.log_metrics`` sends it to MLflow), no checkpoints, no reporters."""
    return {
        "output_dir": str(ctx.out_dir / "hf"),
        "seed": seed,
        "data_seed": seed,
        "logging_steps": 1,
        "report_to": "none",
        "save_strategy": "no",
        "use_cpu": ctx.device == "cpu",
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
    }


def quiet_trainer(trainer: Any) -> Any:
    """Drop the trainer's stdout printers: progress goes to stderr and ``--json`` stays clean."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    for cb in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(cb)
    return trainer


class Kind(Protocol):
    def train(self, spec: Any, ctx: TrainContext) -> KindResult: ...

    def compare(self, challenger: Path, champion: Path, metric: str) -> Comparison: ...

    def publish(
        self, model: str, version: str, folder: Path, history: list[str]
    ) -> dict[str, Any] | None: ...


def get_kind(kind: str) -> Kind:
    if kind == "prompt_attack":
        from training.kinds.prompt_attack import PromptAttackKind

        return PromptAttackKind()
    if kind == "embedder":
        from training.kinds.embedder import EmbedderKind

        return EmbedderKind()
    if kind == "generator":
        from training.kinds.generator import GeneratorKind

        return GeneratorKind()
    raise KeyError(kind)
