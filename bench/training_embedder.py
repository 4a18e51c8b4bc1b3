"""Embedder fine-tune on SciFact: dev nDCG@10 / recall@100, base vs fine-tuned, dense and hybrid.

Runs ``training/specs/embedder_scifact.yaml`` in a private ``GENAIOPS_HOME`` under
``bench/results/`` and reports the run's own dev evaluation (half of the train-qrels queries,
never trained on) and the trainer's samples/s.  ``--corpus-limit N`` evaluates on the judged
abstracts plus random others up to N (the default 1,500 keeps the run under a few minutes on a
busy 2-core CPU; ``--corpus-limit 0`` uses all 5,183 abstracts).

    python bench/training_embedder.py [--corpus-limit 1500] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from typing import Any

from _common import RESULTS, ROOT, log, machine, scifact_dir, write_result

SPEC = ROOT / "training" / "specs" / "embedder_scifact.yaml"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus-limit", type=int, default=1500)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    home = RESULTS / "training-embedder-home"
    if home.exists():
        shutil.rmtree(home)
    os.environ["GENAIOPS_HOME"] = str(home)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.environ["SCIFACT_DIR"] = str(scifact_dir())
    from genaiops.settings import reset_settings

    reset_settings()
    from training import load_spec, run_job

    sets = [f"data.corpus_limit={args.corpus_limit}"] if args.corpus_limit else []
    log("training embedder-scifact")
    t0 = time.perf_counter()
    report = run_job(load_spec(SPEC, sets, device="cpu"), spec_path=SPEC)
    m = report.metrics
    out: dict[str, Any] = {
        "machine": machine(),
        "wall_s": round(time.perf_counter() - t0, 1),
        "corpus_limit": args.corpus_limit or None,
        "metrics": {k: round(v, 4) for k, v in m.items()},
    }
    path = write_result("training_embedder", out)
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(
            "| retrieval (SciFact dev) | base nDCG@10 | tuned nDCG@10 | base R@100 | tuned R@100 |"
        )
        print("|---|---|---|---|---|")
        for mode in ("dense", "hybrid"):
            print(
                f"| {mode} | {m[f'base_ndcg_at_10_{mode}']:.3f} | {m[f'ndcg_at_10_{mode}']:.3f} | "
                f"{m[f'base_recall_at_100_{mode}']:.3f} | {m[f'recall_at_100_{mode}']:.3f} |"
            )
        print(
            f"\n{int(m['train_pairs'])} pairs, {int(m['dev_queries'])} dev queries, "
            f"{int(m['eval_corpus'])} abstracts; {m['train_samples_per_s']:.1f} samples/s, "
            f"train {m['train_runtime_s']:.0f} s, job {out['wall_s']} s"
        )
    log(f"wrote {path}")


if __name__ == "__main__":
    main()
