"""Query path per embedder backend (torch, onnx, onnx-int8), in one run: quality and latency.

1. **Quality** (``--stage quality``): the SciFact spec (``indexing/specs/scifact.yaml``, the full
   5,183 abstracts) is built once per backend (``embedder.backend`` overridden, index name
   ``scifact-<backend>``) into ``bench/results/query_path/home``, and every SciFact train query
   is run through the public ``Retriever`` in each mode; nDCG@10 per mode exactly as
   ``bench/retrieval_quality.py`` scores it (top 10 distinct documents of a ``k=20`` call).
   The deltas to torch are the figures that matter (targets: |onnx - torch| <= 0.005,
   |onnx-int8 - torch| <= 0.01 dense nDCG@10).
2. **Latency** (``--stage latency``): p50/p99 of ``Retriever.retrieve(query, k=10, mode)`` for
   dense / lexical / hybrid on those indexes, and of embedding one query on its own, per
   backend; backends interleaved query by query so load drift hits all of them alike.  With
   ``--before REV`` the same measurement also runs on the code of git revision ``REV``
   (``indexing/`` and ``genaiops/`` extracted with ``git archive`` into a temporary folder and
   run in a subprocess) alternating with this tree, so before/after come from one run.

    nice python bench/query_path.py                      # both stages
    nice python bench/query_path.py --stage latency --before d0c6c3c
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import RESULTS, ROOT, log, machine, percentiles, scifact_dir, write_result
from retrieval_quality import K_NDCG, dedupe, load_qrels, load_queries, ndcg

BACKENDS = ("torch", "onnx", "onnx-int8")
MODES = ("dense", "lexical", "hybrid")
SPEC = ROOT / "indexing" / "specs" / "scifact.yaml"
HOME = RESULTS / "query_path" / "home"


def setup_env(query_threads: int) -> None:
    os.environ["GENAIOPS_HOME"] = str(HOME)
    os.environ.setdefault("SCIFACT_DIR", str(scifact_dir()))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ["GENAIOPS_TORCH_THREADS"] = str(query_threads)


def build_all(build_threads: int) -> dict[str, dict]:
    """Build (or find) the SciFact index for each backend; returns version ids and timings."""
    import torch

    from genaiops.providers import onnx as onnx_mod
    from genaiops.settings import reset_settings
    from indexing import build_index, load_index_spec

    os.environ["GENAIOPS_TORCH_THREADS"] = str(build_threads)
    reset_settings()
    torch.set_num_threads(build_threads)
    base = load_index_spec(SPEC)
    out: dict[str, dict] = {}
    for b in BACKENDS:
        onnx_mod._SESSIONS.clear()  # a session is sized at creation: one for the build threads
        spec = base.model_copy(
            update={
                "name": f"scifact-{b}",
                "embedder": base.embedder.model_copy(update={"backend": b}),
            }
        )
        t = time.perf_counter()
        res = build_index(spec, home=HOME, promote="current")
        secs = time.perf_counter() - t
        log(f"{b}: {res.message} in {secs:.0f} s")
        out[b] = {"version_id": res.version_id, "chunks": res.chunks, "build_s": round(secs)}
    onnx_mod._SESSIONS.clear()
    return out


def quality(built: dict[str, dict]) -> dict[str, dict]:
    """nDCG@10 per backend and mode over all SciFact train queries."""
    from indexing import Retriever

    qrels = load_qrels(scifact_dir())
    queries = load_queries(scifact_dir())
    qids = sorted(q for q in qrels if q in queries)
    out: dict[str, dict] = {}
    for b in BACKENDS:
        r = Retriever(f"scifact-{b}", built[b]["version_id"], home=HOME)
        out[b] = {"queries": len(qids)}
        for mode in MODES:
            got = {
                q: dedupe([h.doc_id for h in r.retrieve(queries[q], k=K_NDCG, mode=mode)])[:10]
                for q in qids
            }
            out[b][f"ndcg@10_{mode}"] = round(
                sum(ndcg(got[q], qrels[q]) for q in qids) / len(qids), 4
            )
        log(f"{b}: {out[b]}")
    for b in BACKENDS[1:]:
        for mode in ("dense", "hybrid"):
            key = f"ndcg@10_{mode}"
            out[b][f"delta_vs_torch_{mode}"] = round(out[b][key] - out["torch"][key], 4)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stage", choices=("all", "quality", "latency"), default="all")
    ap.add_argument("--build-threads", type=int, default=2)
    ap.add_argument("--query-threads", type=int, default=1)
    args = ap.parse_args()
    setup_env(args.query_threads)
    result: dict = {"machine": machine()}
    path = RESULTS / "query_path.json"
    if path.exists():  # the stages fill one result file
        result = {**json.loads(path.read_text()), "machine": machine()}
    built = build_all(args.build_threads)
    result["indexes"] = built
    if args.stage in ("all", "quality"):
        result["quality"] = quality(built)
        result["quality_load_after"] = machine()["load"]
        write_result("query_path", result)
    log(f"wrote {path}")


if __name__ == "__main__":
    main()
