"""How far can a judge be trusted? Agreement with gold labels on a set built by swapping.

:func:`build_judge_set` makes labeled items from the sample QA set and corpus: for each question,
the ground-truth answer with its own document's text (``grounded``) and with another question's
document (``ungrounded``: contexts swapped) or with one invented claim appended (``ungrounded``,
harder: most words are still supported); and the question with its own answer (``relevant``)
and with another question's answer (``irrelevant``: answers swapped). :func:`measure_agreement`
scores them with a judge and reports accuracy and Cohen's kappa against the labels, counting
failed judgements instead of dropping them.

    >>> r = measure_agreement("datasets/sample/judge_labels.jsonl", "offline")  # doctest: +SKIP
    >>> r["metrics"]["groundedness"]["accuracy"]                         # doctest: +SKIP
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from evaluation.config import EvalConfig
from evaluation.errors import JudgeError
from evaluation.judges import GatewayJudge, OfflineJudge
from evaluation.metrics import CachingEmbedder, EvalSample
from evaluation.runtime.data import load_jsonl

__all__ = ["build_judge_set", "cohen_kappa", "doc_texts_from_index", "measure_agreement"]


FABRICATED = (
    "It also needs a paid license key from Northwind support.",
    "This only works on FreeBSD 12 with the legacy kernel module.",
    "Afterwards restart the collector daemon twice to apply it.",
    "The setting is ignored unless debug mode is enabled.",
)


def doc_texts_from_index(doc_ids: set[str], index: str = "sample") -> dict[str, str]:
    """Each document's text as indexed: its chunks (public retrieval API) in order."""
    from indexing import retrieve

    out = {}
    for d in sorted(doc_ids):
        chunks = retrieve(d, k=50, mode="lexical", filters={"doc_id": d}, index=index)
        out[d] = "\n".join(c.text for c in sorted(chunks, key=lambda c: c.start))
    return out


def build_judge_set(qa: str | Path, out: str | Path, index: str = "sample") -> int:
    """Write the labeled set to ``out`` (needs the ``index`` built); returns its size."""
    rows = load_jsonl(qa)
    doc_texts = doc_texts_from_index({d for r in rows for d in r["doc_ids"]}, index)
    items = []
    n = len(rows)
    for i, r in enumerate(rows):
        own = "\n".join(doc_texts[d] for d in r["doc_ids"])
        # the next question whose documents differ: a context that does not hold the answer
        j = next(
            (
                (i + s) % n
                for s in range(1, n)
                if set(rows[(i + s) % n]["doc_ids"]).isdisjoint(r["doc_ids"])
            ),
            (i + 1) % n,
        )
        other = "\n".join(doc_texts[d] for d in rows[j]["doc_ids"])
        base = {"qa_id": r["id"], "query": r["question"]}
        items += [
            base | {"metric": "groundedness", "response": r["answer"], "context": own, "label": 1},
            base
            | {"metric": "groundedness", "response": r["answer"], "context": other, "label": 0},
            # harder: a true answer plus one invented claim, with the right context
            base
            | {
                "metric": "groundedness",
                "context": own,
                "label": 0,
                "kind": "added_claim",
                "response": f"{r['answer']} {FABRICATED[i % len(FABRICATED)]}",
            },
            base | {"metric": "relevance", "response": r["answer"], "label": 1},
            base | {"metric": "relevance", "response": rows[j]["answer"], "label": 0},
        ]
    with open(out, "w", encoding="utf-8") as f:
        for it in items:
            f.write(json.dumps(it, ensure_ascii=False) + "\n")
    return len(items)


def cohen_kappa(gold: list[int], pred: list[int]) -> float:
    n = len(gold)
    if n == 0:
        return float("nan")
    po = sum(g == p for g, p in zip(gold, pred, strict=True)) / n
    pg, pp = sum(gold) / n, sum(pred) / n
    pe = pg * pp + (1 - pg) * (1 - pp)
    return 1.0 if pe == 1 else (po - pe) / (1 - pe)


def measure_agreement(
    labels: str | Path, judge: str = "offline", threshold: float = 3.0, concurrency: int = 1
) -> dict[str, Any]:
    """Accuracy / kappa of ``judge``'s pass (score ≥ threshold) against the gold labels."""
    EvalConfig(judge=judge)  # validates the judge spec
    items = load_jsonl(labels)
    j: Any = (
        OfflineJudge(CachingEmbedder())
        if judge == "offline"
        else GatewayJudge(judge.split(":", 1)[1])
    )
    result: dict[str, Any] = {
        "judge": judge,
        "threshold": threshold,
        "labels": str(labels),
        "metrics": {},
    }
    for metric in ("groundedness", "relevance"):
        sel = [it for it in items if it["metric"] == metric]
        if not sel:
            continue
        gold: list[int] = []
        pred: list[int] = []
        failed = 0
        scores: dict[int, list[float]] = {0: [], 1: []}
        by_kind: dict[str, list[int]] = {}

        errors: list[str] = []

        def one(
            it: dict[str, Any], metric: str = metric, errors: list[str] = errors
        ) -> float | None:
            sample = EvalSample(
                query=it["query"], response=it["response"], context=it.get("context")
            )
            try:
                return float(j.judge(metric, sample).score)
            except JudgeError as e:
                errors.append(str(e)[:200])
                return None

        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            judged = list(pool.map(one, sel))
        for it, s in zip(sel, judged, strict=True):
            if s is None:
                failed += 1
                continue
            gold.append(int(it["label"]))
            pred.append(int(s >= threshold))
            scores[int(it["label"])].append(s)
            kind = it.get("kind") or ("positive" if it["label"] else "swapped")
            by_kind.setdefault(kind, []).append(int(pred[-1] == gold[-1]))
        result["metrics"][metric] = {
            "n": len(sel),
            "failed": failed,
            "accuracy": sum(g == p for g, p in zip(gold, pred, strict=True)) / max(1, len(gold)),
            # a failed judgement counted as a wrong one (what a gate relying on it would see)
            "accuracy_failures_as_wrong": sum(g == p for g, p in zip(gold, pred, strict=True))
            / max(1, len(sel)),
            "kappa": cohen_kappa(gold, pred),
            "mean_score_positive": sum(scores[1]) / max(1, len(scores[1])),
            "mean_score_negative": sum(scores[0]) / max(1, len(scores[0])),
            "accuracy_by_kind": {k: sum(v) / len(v) for k, v in sorted(by_kind.items())},
            "failure_examples": sorted(set(errors))[:3],
        }
    return result


if __name__ == "__main__":  # python -m evaluation.agreement  (rebuilds the committed set)
    n = build_judge_set("datasets/sample/qa.jsonl", "datasets/sample/judge_labels.jsonl")
    print(f"wrote {n} labeled items to datasets/sample/judge_labels.jsonl")
