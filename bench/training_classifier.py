"""Prompt-attack classifier: detection vs the offline default on the held-out split, and latency.

Trains ``training/specs/prompt_attack.yaml`` (and its lexical-only variant, the measurement the
feature choice rests on) in a private ``GENAIOPS_HOME`` under ``bench/results/``, promotes the
spec's model, then measures on the run's held-out test split:

* detection per source: the classifier vs the offline default detector (same texts, same roles);
* latency per prompt: the classifier alone, and the gateway's ``SafetyEngine.check_input`` with
  the default detectors before and after promotion (what a request pays), torch at 1 thread.

    python bench/training_classifier.py [--quick] [--json]   # results: bench/results/*.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from _common import (
    RESULTS,
    ROOT,
    log,
    machine,
    percentiles,
    python_docs_dir,
    scifact_dir,
    torch_threads,
    write_result,
)

SPEC = ROOT / "training" / "specs" / "prompt_attack.yaml"
VARIANTS = {
    "embedding + lexical": ["params.features=[embedding,lexical]"],
    "lexical only (spec default)": ["params.features=[lexical]"],
}


def _setup_home() -> Path:
    home = RESULTS / "training-home"
    if home.exists():
        shutil.rmtree(home)
    (home / "cache" / "wheels").mkdir(parents=True)
    for cached in (ROOT / "bench" / ".cache" / "wheels", ROOT / ".genaiops" / "cache" / "wheels"):
        for w in cached.glob("*.whl"):
            shutil.copy(w, home / "cache" / "wheels" / w.name)
    os.environ["GENAIOPS_HOME"] = str(home)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.environ["PYTHON_DOCS_DIR"] = str(python_docs_dir())
    os.environ["SCIFACT_DIR"] = str(scifact_dir())
    from genaiops.settings import reset_settings

    reset_settings()
    return home


def _cold() -> None:
    """Forget cached embeddings: every timed prompt is embedded, as a new request is."""
    from gateway.safety import classifier

    with classifier._CACHE_LOCK:
        classifier._EMB_CACHE.clear()


def _time_each(fn: Any, items: list[Any]) -> dict[str, float]:
    fn(items[0])
    _cold()
    secs = []
    for it in items:
        t0 = time.perf_counter()
        fn(it)
        secs.append(time.perf_counter() - t0)
    return percentiles(secs)


async def _engine_latency(engine: Any, rows: list[dict]) -> dict[str, float]:
    from gateway.errors import ContentFiltered

    async def one(r: dict) -> None:
        msgs = [{"role": "user", "content": r["text"]}]
        if r["role"] == "document":
            msgs = [
                {"role": "user", "content": "Summarise."},
                {"role": "tool", "content": r["text"]},
            ]
        with contextlib.suppress(ContentFiltered):
            await engine.check_input(msgs, [], None)

    await one(rows[0])
    _cold()
    secs = []
    for r in rows:
        t0 = time.perf_counter()
        await one(r)
        secs.append(time.perf_counter() - t0)
    return percentiles(secs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="max_per_source 60 (smoke run)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument(
        "--latency-only", action="store_true", help="re-time the last run's models (no training)"
    )
    args = ap.parse_args()
    if args.latency_only:
        return latency_only()
    _setup_home()
    threads = torch_threads(1)
    from gateway.config import SafetyConfig
    from gateway.safety import SafetyEngine
    from gateway.safety.classifier import PromptAttackScorer
    from training import Tracker, load_spec, promote, run_job

    extra = ["data.max_per_source=60"] if args.quick else []
    out: dict[str, Any] = {"machine": machine(), "torch_threads": threads, "variants": {}}
    tracker = Tracker()
    engine_off = SafetyEngine(SafetyConfig(detectors=["offline"]))
    for i, (name, overrides) in enumerate(VARIANTS.items()):
        log(f"training {name}")
        t0 = time.perf_counter()
        report = run_job(load_spec(SPEC, overrides + extra), spec_path=SPEC)
        wall = time.perf_counter() - t0
        folder = tracker.download(report.run_id, "", RESULTS / "training-home" / f"art{i}")
        rows = [json.loads(x) for x in (folder / "eval/test.jsonl").read_text().splitlines()]
        scorer = PromptAttackScorer(folder / "model")
        sample = rows[:: max(1, len(rows) // 300)]
        v: dict[str, Any] = {
            "run_id": report.run_id,
            "train_wall_s": round(wall, 1),
            "metrics": {k: round(x, 4) for k, x in report.metrics.items()},
            "per_source": {k: f.model_dump() for k, f in report.per_source.items()},
            "offline_per_source": report.extra.get("offline_per_source"),
            "latency_classifier": _time_each(lambda r, s=scorer: s.scores([r["text"]]), sample),
        }
        if i == 0:
            promote(report.model)
            engine_on = SafetyEngine(SafetyConfig())
            v["default_detectors_after_promotion"] = list(engine_on.config.detectors)
            v["latency_engine_offline"] = asyncio.run(_engine_latency(engine_off, sample))
            v["latency_engine_with_classifier"] = asyncio.run(_engine_latency(engine_on, sample))
        out["variants"][name] = v
        log(f"{name}: f1 {report.metrics['f1']:.3f} p99 {v['latency_classifier']['p99_ms']} ms")
    out["data"] = [r.model_dump() for r in report.data]
    path = write_result("training_classifier", out)
    print(json.dumps(out, indent=2) if args.json else markdown(out))
    log(f"wrote {path}")


class _FolderDetector:
    """The gateway detector's decision for one saved model folder (no promotion needed)."""

    name = "prompt-attack"

    def __init__(self, scorer: Any):
        self.scorer = scorer
        self.blocking_io = "embedding" in scorer.manifest.features  # as the gateway decides

    def analyze(self, text: str, role: str) -> Any:
        from gateway.safety import Analysis

        a = Analysis(source=self.name)
        if role != "completion":
            a.attack = bool(self.scorer.scores([text])[0] >= self.scorer.threshold)
        return a


def latency_only() -> None:
    """Re-time the models the last full run saved (``art<i>``), with cold embedding caches."""
    home = RESULTS / "training-home"
    os.environ["GENAIOPS_HOME"] = str(home)
    from genaiops.settings import reset_settings

    reset_settings()
    torch_threads(1)
    from gateway.config import SafetyConfig
    from gateway.safety import OfflineDetector, SafetyEngine
    from gateway.safety.classifier import PromptAttackScorer

    result = json.loads((RESULTS / "training_classifier.json").read_text())
    for i, (name, v) in enumerate(result["variants"].items()):
        folder = home / f"art{i}"
        rows = [json.loads(x) for x in (folder / "eval/test.jsonl").read_text().splitlines()]
        sample = rows[:: max(1, len(rows) // 300)]
        scorer = PromptAttackScorer(folder / "model")
        v["latency_classifier"] = _time_each(lambda r, s=scorer: s.scores([r["text"]]), sample)
        short = [r for r in sample if len(r["text"]) <= 300]
        v["latency_classifier_short_prompts"] = _time_each(
            lambda r, s=scorer: s.scores([r["text"]]), short
        )
        det = _FolderDetector(scorer)
        off = SafetyEngine(SafetyConfig(detectors=["offline"]))
        on = SafetyEngine(SafetyConfig(detectors=["offline"]), [OfflineDetector(), det])
        v["latency_engine_offline"] = asyncio.run(_engine_latency(off, sample))
        v["latency_engine_with_classifier"] = asyncio.run(_engine_latency(on, sample))
        log(f"{name}: {v['latency_classifier']} short {v['latency_classifier_short_prompts']}")
    result["latency_machine"] = machine()
    write_result(
        "training_classifier", {k: v for k, v in result.items() if k not in ("benchmark", "date")}
    )
    print(markdown(result))


def markdown(r: dict[str, Any]) -> str:
    first = next(iter(r["variants"].values()))
    lines = ["| held-out source | n | classifier | offline default |", "|---|---|---|---|"]
    for src, f in first["per_source"].items():
        off = (first["offline_per_source"] or {}).get(src, {})
        lines.append(f"| {src} | {f['n']} | {f['rate']:.1%} | {off.get('rate', 0):.1%} |")
    lines += [
        "",
        "| variant | precision | recall | F1 | ROC-AUC | FPR | innocent FPR | "
        "p50 ms | p99 ms | train s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, v in r["variants"].items():
        m, lat = v["metrics"], v["latency_classifier"]
        lines.append(
            f"| {name} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | "
            f"{m.get('roc_auc', 0):.3f} | {m['fpr']:.3f} | {m.get('fpr_innocent_triggers', 0):.3f}"
            f" | {lat['p50_ms']} | {lat['p99_ms']} | {v['train_wall_s']} |"
        )
    m = first["metrics"]
    lines.append(
        f"| offline default | {m['offline_precision']:.3f} | {m['offline_recall']:.3f} | "
        f"{m['offline_f1']:.3f} | – | {m['offline_fpr']:.3f} | | | | |"
    )
    if "latency_engine_offline" in first:
        a, b = first["latency_engine_offline"], first["latency_engine_with_classifier"]
        lines.append(
            f"\ncheck_input p50/p99: offline {a['p50_ms']}/{a['p99_ms']} ms, with the "
            f"promoted classifier {b['p50_ms']}/{b['p99_ms']} ms"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
