"""Generator LoRA on the Python FAQ: validation metrics base vs LoRA, training tokens/s, time per
epoch.

Runs ``training/specs/generator_faq.yaml`` in a private ``GENAIOPS_HOME`` under
``bench/results/`` and reports the run's own validation evaluation (FAQ pairs never trained on,
answered greedily through the serving code): ROUGE-L and answer similarity against the official
answer, offline groundedness (1–5), validation loss, and the trainer's throughput.  The spec's
full settings take hours on a 2-core CPU; ``--max-train``/``--max-validation``/``--max-length``
/``--epochs`` shrink the run (the defaults: 24 training pairs, 8 validation pairs, 256 tokens,
1 epoch) and are printed with the figures.

    python bench/training_generator.py [--max-train 24] [--max-validation 8] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from typing import Any

from _common import RESULTS, ROOT, log, machine, python_docs_dir, write_result

SPEC = ROOT / "training" / "specs" / "generator_faq.yaml"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-train", type=int, default=24)
    ap.add_argument("--max-validation", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--full", action="store_true", help="the spec's own settings")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    home = RESULTS / "training-generator-home"
    if home.exists():
        shutil.rmtree(home)
    os.environ["GENAIOPS_HOME"] = str(home)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.environ["PYTHON_DOCS_DIR"] = str(python_docs_dir())
    from genaiops.settings import reset_settings

    reset_settings()
    from training import load_spec, run_job

    sets = [] if args.full else [
        f"data.max_train={args.max_train}",
        f"data.max_validation={args.max_validation}",
        f"params.max_length={args.max_length}",
        f"params.epochs={args.epochs}",
        f"params.max_new_tokens={args.max_new_tokens}",
    ]  # fmt: skip
    log("training generator-faq " + " ".join(sets))
    t0 = time.perf_counter()
    report = run_job(load_spec(SPEC, sets, device="cpu"), spec_path=SPEC)
    m = report.metrics
    out: dict[str, Any] = {
        "machine": machine(),
        "wall_s": round(time.perf_counter() - t0, 1),
        "overrides": sets,
        "context_source": report.extra.get("context_source"),
        "metrics": {k: round(v, 4) for k, v in m.items()},
    }
    path = write_result("training_generator", out)
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print("| FAQ validation | base | LoRA (merged) |")
        print("|---|---|---|")
        for k in ("rougeL", "answer_similarity", "groundedness", "val_loss"):
            print(f"| {k} | {m[f'base_{k}']:.3f} | {m[k]:.3f} |")
        print(
            f"\n{int(m['train_examples'])} training / {int(m['validation_examples'])} validation "
            f"pairs, context: {out['context_source']}; {int(m['train_steps'])} steps, "
            f"{m['train_tokens_per_s']:.1f} tokens/s, {m['time_per_epoch_s']:.0f} s per epoch, "
            f"job {out['wall_s']} s"
        )
    log(f"wrote {path}")


if __name__ == "__main__":
    main()
