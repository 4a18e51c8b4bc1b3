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
   (``indexing/`` and ``genaiops/`` extracted with ``git archive`` into a temporary folder) in a
   subprocess running at the same time as this tree's, so both see the same load.
   Threads: torch pinned to 1 (as ``bench/_common.torch_threads``); ONNX Runtime and FAISS at
   the library defaults (``GENAIOPS_TORCH_THREADS`` unset), which is what the changes touch.
   A backend whose index is not built yet gets its query embedding timed only.

Each ``--backends`` subset can run as its own process (the quality files are per backend).

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

from _common import RESULTS, ROOT, load, log, machine, percentiles, scifact_dir, write_result
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


def build_all(build_threads: int, backends: tuple[str, ...] = BACKENDS) -> dict[str, dict]:
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
    for b in backends:
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
    """nDCG@10 per built backend and mode over all SciFact train queries."""
    from indexing import Retriever

    qrels = load_qrels(scifact_dir())
    queries = load_queries(scifact_dir())
    qids = sorted(q for q in qrels if q in queries)
    out: dict[str, dict] = {}
    for b in built:
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
    return out


def quality_deltas(per_backend: dict[str, dict]) -> dict[str, dict]:
    """Each ONNX backend's nDCG@10 minus torch's, per mode."""
    out: dict[str, dict] = {}
    if "torch" not in per_backend:
        return out
    for b in BACKENDS[1:]:
        if b in per_backend:
            out[b] = {
                mode: round(
                    per_backend[b][f"ndcg@10_{mode}"] - per_backend["torch"][f"ndcg@10_{mode}"], 4
                )
                for mode in MODES
            }
    return out


def worker(code: Path, queries: list[str]) -> dict[str, dict[str, list[float]]]:
    """Per backend: seconds per retrieve() for each mode, per query embedding and per store
    search, with ``indexing``/``genaiops`` imported from ``code``; prints them as JSON."""
    sys.path.insert(0, str(code))
    import torch

    torch.set_num_threads(1)  # as bench/_common.torch_threads: torch pinned, ONNX at its default
    import indexing
    from genaiops.providers import make_embedder
    from genaiops.providers.embeddings import EmbedderConfig
    from indexing import Retriever

    assert Path(indexing.__file__).resolve().is_relative_to(code.resolve()), indexing.__file__
    home = Path(os.environ.get("QUERY_PATH_HOME", HOME))
    built = [b for b in BACKENDS if (home / "indexes" / f"scifact-{b}" / "aliases").is_dir()]
    rs = {b: Retriever(f"scifact-{b}", "current", home=home) for b in built}
    embs = {b: make_embedder(EmbedderConfig(backend=b)) for b in BACKENDS}  # type: ignore[arg-type]
    for q in queries[:20]:  # warm up: model, faiss, bm25, sqlite
        for b in BACKENDS:
            embs[b].embed([q])
            for mode in MODES if b in rs else ():
                rs[b].retrieve(q, k=10, mode=mode)  # type: ignore[arg-type]
    out: dict[str, dict[str, list[float]]] = {
        b: {k: [] for k in (*MODES, "embed", "search_hybrid")} for b in BACKENDS
    }
    for q in queries:  # interleaved: load drift hits every backend and mode alike
        for b in BACKENDS:
            o = out[b]
            t = time.perf_counter()
            vec = embs[b].embed([q])[0]
            o["embed"].append(time.perf_counter() - t)
            r = rs.get(b)
            if r is None:  # no index for this backend (yet): embedding only
                continue
            for mode in MODES:
                t = time.perf_counter()
                r.retrieve(q, k=10, mode=mode)  # type: ignore[arg-type]
                o[mode].append(time.perf_counter() - t)
            index = r._current().index
            t = time.perf_counter()
            index.search(q, vec, 10, "hybrid")
            o["search_hybrid"].append(time.perf_counter() - t)
    return {b: {k: xs for k, xs in ser.items() if xs} for b, ser in out.items()}


def export_code(rev: str, into: Path) -> Path:
    """``indexing/`` and ``genaiops/`` as of git revision ``rev``, extracted into ``into``."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev, "indexing", "genaiops"],
        check=True,
        capture_output=True,
    ).stdout
    into.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def older_home(into: Path) -> Path:
    """The indexes of ``HOME`` as code from before the ``engine`` spec key reads them: files
    hard-linked, each ``manifest.json`` rewritten without ``spec.engine`` (the local engine's
    default, so the same build)."""
    subprocess.run(["cp", "-al", str(HOME), str(into)], check=True)
    for m in into.glob("indexes/*/versions/*/manifest.json"):
        data = json.loads(m.read_text())
        if (data.get("spec") or {}).pop("engine", "local") != "local":
            continue  # built by another engine: leave it alone
        m.unlink()  # break the hard link before writing
        m.write_text(json.dumps(data, indent=2))
    return into


def latency(before: str | None, rounds: int, n_queries: int) -> dict:
    """retrieve() latency per backend and mode; this tree and (optionally) ``before`` alternate
    in ``rounds`` subprocess rounds and their samples are pooled per code version."""
    with (scifact_dir() / "queries.jsonl").open() as f:
        queries = [r["text"] for r in map(json.loads, f)][:n_queries]
    samples: dict[str, dict[str, dict[str, list[float]]]] = {}
    loads: list[list[float]] = [load()]
    with tempfile.TemporaryDirectory(prefix="genaiops-before-") as tmp:
        codes = {"after": ROOT}
        homes = {"after": HOME}
        if before:
            codes = {"before": export_code(before, Path(tmp) / "code"), **codes}
            homes["before"] = older_home(Path(tmp) / "home")
        env = {k: v for k, v in os.environ.items() if k != "GENAIOPS_TORCH_THREADS"}
        for rnd in range(rounds):
            # the code versions run at the same time, so they share whatever load there is
            # (run one after the other, a load change between them reads as a speedup)
            t = time.perf_counter()
            procs = {
                name: subprocess.Popen(
                    [sys.executable, __file__, "--worker", str(code), "--queries", str(n_queries)],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    text=True,
                    env={**env, "QUERY_PATH_HOME": str(homes[name])},
                )
                for name, code in codes.items()
            }
            for name, proc in procs.items():
                stdout, _ = proc.communicate()
                if proc.returncode:
                    raise SystemExit(f"latency worker {name} failed ({proc.returncode})")
                got = json.loads(stdout.strip().splitlines()[-1])
                mine = samples.setdefault(name, {})
                for b, series in got.items():
                    for key, xs in series.items():
                        mine.setdefault(b, {}).setdefault(key, []).extend(xs)
            loads.append(load())
            log(f"round {rnd}: {time.perf_counter() - t:.0f} s, load {loads[-1]}")
    out: dict = {"queries": len(queries), "rounds": rounds, "load_per_round": loads}
    if before:
        out["before_rev"] = before
    for name, per_b in samples.items():
        out[name] = {b: {k: percentiles(xs) for k, xs in ser.items()} for b, ser in per_b.items()}
    a = out["after"]
    if before:
        out["speedup"] = {
            b: {
                k: {p: round(out["before"][b][k][p] / a[b][k][p], 2) for p in ("p50_ms", "p99_ms")}
                for k in (*MODES, "embed")
                if k in a[b]
            }
            for b in BACKENDS
        }
    out["targets"] = {
        b: {
            "embed_p50_le_5ms": a[b]["embed"]["p50_ms"] <= 5,
            "hybrid_p99_le_15ms": a[b]["hybrid"]["p99_ms"] <= 15 if "hybrid" in a[b] else None,
        }
        for b in BACKENDS
    }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stage", choices=("all", "quality", "latency"), default="all")
    ap.add_argument("--build-threads", type=int, default=2)
    ap.add_argument("--query-threads", type=int, default=1)
    ap.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    ap.add_argument("--before", help="git revision to time alongside this tree (latency)")
    ap.add_argument("--rounds", type=int, default=2, help="latency rounds per code version")
    ap.add_argument("--queries", type=int, default=200, help="latency: SciFact queries timed")
    ap.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    setup_env(args.query_threads)
    if args.worker:  # library defaults for threads (ONNX, FAISS); the parent pins torch
        os.environ.pop("GENAIOPS_TORCH_THREADS", None)
        with (scifact_dir() / "queries.jsonl").open() as f:
            queries = [r["text"] for r in map(json.loads, f)][: args.queries]
        print(json.dumps(worker(args.worker, queries)))
        return
    result: dict = {"machine": machine()}
    path = RESULTS / "query_path.json"
    if path.exists():  # the stages fill one result file
        result = {**json.loads(path.read_text()), "machine": machine()}
    backends = tuple(args.backends)
    if args.stage in ("all", "quality"):
        # one file per backend: the three builds may run as separate processes
        built = build_all(args.build_threads, backends)
        for b, q in quality(built).items():
            part = RESULTS / "query_path" / f"quality_{b}.json"
            rec = {"index": built[b], **q, "machine": machine(), "date": time.ctime()}
            part.write_text(json.dumps(rec, indent=2))
    parts = {b: RESULTS / "query_path" / f"quality_{b}.json" for b in BACKENDS}
    result["quality"] = {b: json.loads(p.read_text()) for b, p in parts.items() if p.exists()}
    result["quality_delta_vs_torch"] = quality_deltas(result["quality"])
    write_result("query_path", result)
    if args.stage in ("all", "latency"):
        result["latency"] = latency(args.before, args.rounds, args.queries)
        result["query_threads"] = args.query_threads
        write_result("query_path", result)
    log(f"wrote {path}")


if __name__ == "__main__":
    main()
