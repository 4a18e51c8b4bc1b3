"""Promotion and rollback of registered models (MLflow aliases ``champion`` / ``challenger``).

``promote(model)`` takes the challenger (or ``version``), compares it with the champion on the
challenger's own held-out evaluation (the kind re-scores both versions on the same data), and
moves the ``champion`` alias only if the challenger beats it by the spec's ``min_delta``;
otherwise :class:`~training.errors.PromotionRefused` carries both numbers.  The first version
of a model has nothing to beat and is promoted (the generator's must beat its base model).  A
kind may add a ``gate`` that must pass too (:mod:`training.handoff`: the evaluation gate for the
generator, the index's retrieval metrics for the embedder).  A promoted version is handed to
its consumer (``publish``: the gateway's serving folder for the classifier, a gateway
deployment and rollout for the generator, a new index version for the embedder) before the
alias moves.  ``rollback(model)`` returns the alias, and the consumer, to the previous
champion.

    >>> promote("prompt-attack")                                    # doctest: +SKIP
    {'model': 'prompt-attack', 'version': '2', 'previous': '1', ...}
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml

from training.errors import PromotionRefused, RunNotFound, TrainingError
from training.kinds import get_kind
from training.tracking import CHALLENGER, CHAMPION, Tracker

__all__ = ["promote", "rollback"]


def _run_folder(tracker: Tracker, model: str, version: str, into: Path) -> tuple[Path, dict]:
    """The registered version's run artifacts (model + eval + spec) in a local folder."""
    mv = tracker.version(model, version)
    folder = tracker.download(mv.run_id, "", into / f"v{version}")
    spec = (
        yaml.safe_load((folder / "spec.yaml").read_text())
        if (folder / "spec.yaml").is_file()
        else {}
    )
    return folder, spec


def promote(
    model: str, version: str | None = None, tracker: Tracker | None = None
) -> dict[str, Any]:
    """Make ``version`` (default: the challenger) the champion if it beats the current one."""
    tracker = tracker or Tracker()
    tracker.aliases(model)  # RunNotFound for an unknown model
    target = version or tracker.alias_version(model, CHALLENGER)
    if target is None:
        raise RunNotFound(f"{model} has no challenger; run a job or pass --version")
    tracker.version(model, target)
    champion = tracker.alias_version(model, CHAMPION)
    if champion == target:
        raise TrainingError(f"{model} v{target} is already the champion")
    work = Path(tempfile.mkdtemp(prefix="genaiops-promote-"))
    try:
        folder, spec = _run_folder(tracker, model, target, work)
        kind = get_kind(spec.get("kind", "prompt_attack"))
        promo = spec.get("promotion") or {}
        metric, min_delta = promo.get("metric", "f1"), float(promo.get("min_delta", 0.0))
        comparison = None
        if champion is not None:
            champ_folder, _ = _run_folder(tracker, model, champion, work)
            c = kind.compare(folder, champ_folder, metric)
            comparison = {
                "metric": c.metric,
                "challenger": round(c.challenger, 6),
                "champion": round(c.champion, 6),
                "min_delta": min_delta,
                "challenger_version": target,
                "champion_version": champion,
                "n": c.details.get("n"),
            }
            if not c.challenger > c.champion + min_delta:
                raise PromotionRefused(
                    f"{model} v{target} does not beat champion v{champion} on its held-out "
                    f"evaluation: {c.metric} {c.challenger:.4f} vs {c.champion:.4f}"
                    + (f" (+{min_delta} required)" if min_delta else ""),
                    comparison,
                )
        gate = getattr(kind, "gate", None)
        gated = gate(model, target, folder, champion) if gate is not None else None
        history = tracker.history(model) + ([champion] if champion else [])
        handoff = kind.publish(model, target, folder, history)
        tracker.set_champion(model, target, history=history)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {
        "model": model,
        "version": target,
        "previous": champion,
        "comparison": comparison,
        "gate": gated,
        "handoff": handoff,
        "aliases": tracker.aliases(model),
    }


def rollback(model: str, tracker: Tracker | None = None) -> dict[str, Any]:
    """Return ``champion`` (and the serving copy) to the previous champion."""
    tracker = tracker or Tracker()
    tracker.aliases(model)
    history = tracker.history(model)
    current = tracker.alias_version(model, CHAMPION)
    if not history:
        raise TrainingError(f"{model} has no previous champion to roll back to")
    previous = history[-1]
    work = Path(tempfile.mkdtemp(prefix="genaiops-rollback-"))
    try:
        folder, spec = _run_folder(tracker, model, previous, work)
        kind = get_kind(spec.get("kind", "prompt_attack"))
        handoff = kind.publish(model, previous, folder, history[:-1])
        tracker.set_champion(model, previous, history=history[:-1])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {
        "model": model,
        "version": previous,
        "rolled_back": current,
        "handoff": handoff,
        "aliases": tracker.aliases(model),
    }
