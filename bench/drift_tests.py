"""Two-sample tests for question drift: speed and verdicts on ~500 vs ~500 MiniLM vectors.

Candidates (all from kept libraries, each with a permutation p-value):

* ``hyppo.ksample.MMD`` (Gaussian kernel, median bandwidth), ``hyppo.ksample.Energy``;
* a classifier two-sample test: scikit-learn ``permutation_test_score`` around a
  ``LogisticRegression`` (held-out accuracy against label permutations).

Cases: a same-distribution split of SciFact queries (must NOT be flagged) and SciFact queries vs
Python FAQ questions (must be flagged).

    python bench/drift_tests.py [--n 500] [--reps 200] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "datasets"
SCIFACT = Path(os.environ.get("SCIFACT_DIR", SHARED / "scifact"))
PY_DOCS = Path(os.environ.get("PYTHON_DOCS_DIR", SHARED / "python-docs"))
RESULTS = REPO / "bench" / "results"


def _texts(path: Path, key: str) -> list[str]:
    return [json.loads(line)[key] for line in path.read_text().splitlines() if line.strip()]


def _hyppo(name: str, x: np.ndarray, y: np.ndarray, reps: int) -> tuple[float, float]:
    from hyppo.ksample import MMD, Energy

    test = MMD(compute_kernel="gaussian") if name == "mmd" else Energy()
    stat, p = test.test(x, y, reps=reps, workers=1, auto=False, random_state=0)
    return float(stat), float(p)


def _c2st(x: np.ndarray, y: np.ndarray, reps: int) -> tuple[float, float]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, permutation_test_score

    data = np.vstack([x, y])
    labels = np.r_[np.zeros(len(x)), np.ones(len(y))]
    acc, _, p = permutation_test_score(
        LogisticRegression(C=1.0, max_iter=200),
        data,
        labels,
        cv=StratifiedKFold(2, shuffle=True, random_state=0),
        n_permutations=reps,
        random_state=0,
        n_jobs=1,
    )
    return float(acc), float(p)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--tests", default="mmd,energy,c2st")
    args = ap.parse_args()
    from genaiops.providers import EmbedderConfig, make_embedder

    emb = make_embedder(EmbedderConfig())
    rng = np.random.default_rng(0)
    sci = _texts(SCIFACT / "queries.jsonl", "text")
    faq = _texts(PY_DOCS / "faq_qa.jsonl", "question")
    idx = rng.permutation(len(sci))
    n = min(args.n, len(sci) // 2)
    t0 = time.perf_counter()
    sci_v = np.asarray(emb.embed([sci[i] for i in idx[: 2 * n]]), dtype=np.float64)
    faq_v = np.asarray(emb.embed(faq), dtype=np.float64)
    embed_s = time.perf_counter() - t0
    # the FAQ set has 115 questions: the shifted case samples it with replacement up to n
    faq_n = faq_v[rng.integers(0, len(faq_v), n)]
    cases = {"same_split": (sci_v[:n], sci_v[n:]), "scifact_vs_faq": (sci_v[:n], faq_n)}
    out: dict[str, Any] = {
        "n_per_sample": n,
        "reps": args.reps,
        "embed_s": round(embed_s, 2),
        "machine": f"{platform.machine()} {os.cpu_count()} cpus (shared load)",
        "tests": {},
    }
    for name in args.tests.split(","):
        for case, (x, y) in cases.items():
            t = time.perf_counter()
            stat, p = _c2st(x, y, args.reps) if name == "c2st" else _hyppo(name, x, y, args.reps)
            dt = time.perf_counter() - t
            out["tests"].setdefault(name, {})[case] = {
                "statistic": round(stat, 5),
                "p": round(p, 4),
                "seconds": round(dt, 2),
            }
            if not args.json:
                print(f"{name:7s} {case:15s} stat={stat:.4f} p={p:.4f} {dt:.2f}s", flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "drift_tests.json").write_text(json.dumps(out, indent=2))
    if args.json:
        print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
