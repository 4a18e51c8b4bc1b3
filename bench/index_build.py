"""Build throughput, peak RSS and incremental rebuilds on the python-docs corpus.

What is measured, each build in its own subprocess (so each peak RSS is that build's alone):

1. **cold build**: ``build_index(python-docs spec)`` into a fresh ``GENAIOPS_HOME`` (empty
   embedding cache, model not loaded yet: the build pays for importing sentence-transformers and
   loading the model, as ``genaiops index build`` does).  chunks/s = chunks / build seconds.
   Right after it, *in the same process*, raw ``SentenceTransformer.encode`` over exactly the
   texts the build embedded (``Chunk.embed_text()`` of every unique chunk hash, read back from
   the version's chunks.sqlite), same batch size, normalised output.  Ratios (goal >= 0.9):
   whole build = encode seconds / build seconds; embed stage = encode seconds / the build's
   ``timings["embed"]`` (which includes the model load, reported separately too).  The same
   ratio is also given in process CPU time (user + system), which other load disturbs less.
2. **unchanged rebuild**: the same spec again on the same home (goal: 0 embedded, <= 10 % of the
   cold build's time).
3. **edit one document**: a copy of corpus.jsonl in a temp folder outside the repo with one
   sentence inserted in the middle of ``library/json.html``; rebuild on the same home.  Expected:
   only that document changes and embedded == the chunks added (those of that document only).

    python bench/index_build.py            # full corpus
    python bench/index_build.py --quick    # first 60 pages, for development
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import (
    RESULTS,
    load,
    log,
    machine,
    peak_rss_mb,
    python_docs_dir,
    write_result,
)

SPEC = Path(__file__).resolve().parent.parent / "indexing" / "specs" / "python-docs.yaml"
EDIT_DOC = "library/json.html"


# -- workers (run in subprocesses) ---------------------------------------------------------
def cpu_seconds() -> float:
    """User + system CPU time of this process (all its threads): less sensitive to other load."""
    t = os.times()
    return t.user + t.system


def worker_build(home: Path, corpus: Path, raw: bool) -> dict:
    os.environ["PYTHON_DOCS_DIR"] = str(corpus)
    from indexing import build_index, load_index_spec

    rss_start = peak_rss_mb()
    spec = load_index_spec(SPEC)
    load_before = load()
    t, cpu = time.perf_counter(), cpu_seconds()
    res = build_index(spec, home=home)
    wall, cpu = time.perf_counter() - t, cpu_seconds() - cpu
    out = {
        "version_id": res.version_id,
        "documents": res.documents,
        "chunks": res.chunks,
        "embedded": res.embedded,
        "reused": res.reused,
        "reused_version": res.reused_version,
        "quarantined": len(res.quarantined),
        "seconds": round(wall, 4),
        "cpu_seconds": round(cpu, 2),
        "timings": {k: round(v, 2) for k, v in res.timings.items()},
        "rss_after_imports_mb": round(rss_start, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "load_before": load_before,
        "load_after": load(),
    }
    if raw:
        out["raw_encode"] = raw_encode(home, spec, res.version_id)
    return out


def raw_encode(home: Path, spec, version_id: str) -> dict:  # type: ignore[no-untyped-def]
    """SentenceTransformer.encode over the unique embed texts of the version just built."""
    import sqlite3

    from genaiops.providers import make_embedder
    from indexing import Catalog
    from indexing.catalog import read_chunks

    folder = Catalog(spec.name, home=home).version_dir(version_id)
    db = sqlite3.connect(f"file:{folder / 'chunks.sqlite'}?mode=ro", uri=True)
    texts = list({c.hash: c.embed_text() for c in read_chunks(db).values()}.values())
    db.close()
    model = make_embedder(spec.embedder).warm_up()  # already loaded by the build: no cost
    t, cpu = time.perf_counter(), cpu_seconds()
    model.encode(
        texts,
        batch_size=spec.embedder.batch_size,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=False,
    )
    sec, cpu = time.perf_counter() - t, cpu_seconds() - cpu
    return {
        "texts": len(texts),
        "seconds": round(sec, 2),
        "cpu_seconds": round(cpu, 2),
        "load_after": load(),
    }


def worker_model_load() -> dict:
    """Cost of importing sentence-transformers and loading the model in a fresh process."""
    t = time.perf_counter()
    from genaiops.providers import make_embedder

    make_embedder().warm_up()  # type: ignore[attr-defined]
    return {"seconds": round(time.perf_counter() - t, 2)}


def run_worker(*args: str) -> dict:
    cmd = [sys.executable, __file__, "--worker", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"worker {args} failed with {proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- corpus copies ----------------------------------------------------------------------------
def write_corpus(src: Path, dst: Path, limit: int | None, edit: str | None) -> Path:
    """corpus.jsonl (optionally the first ``limit`` pages, optionally with ``edit`` changed)."""
    dst.mkdir(parents=True, exist_ok=True)
    edited = False
    with (src / "corpus.jsonl").open() as f, (dst / "corpus.jsonl").open("w") as g:
        for n, line in enumerate(f):
            if limit is not None and n >= limit:
                break
            rec = json.loads(line)
            if rec["id"] == edit:
                mid = rec["text"].find("\n\n", len(rec["text"]) // 2)
                insert = "\n\nThis sentence was inserted by the incremental-rebuild benchmark."
                rec["text"] = rec["text"][:mid] + insert + rec["text"][mid:]
                edited = True
            g.write(json.dumps(rec) + "\n")
    if edit and not edited:
        raise SystemExit(f"document {edit!r} not in the corpus")
    return dst


def first_id(src: Path) -> str:
    with (src / "corpus.jsonl").open() as f:
        return str(json.loads(f.readline())["id"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="first 60 pages only")
    ap.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        kind, *rest = args.worker
        if kind == "build":
            out = worker_build(Path(rest[0]), Path(rest[1]), rest[2] == "raw")
        else:
            out = worker_model_load()
        print(json.dumps(out))
        return

    home = RESULTS / "index_build" / "home"
    shutil.rmtree(home, ignore_errors=True)  # cold: no versions, no embedding cache
    home.mkdir(parents=True)
    src = python_docs_dir()
    tmp = Path(tempfile.mkdtemp(prefix="genaiops-bench-"))
    try:
        limit = 60 if args.quick else None
        base = src if limit is None else write_corpus(src, tmp / "base", limit, None)
        edit_doc = EDIT_DOC if not args.quick else first_id(src)
        edited = write_corpus(src, tmp / "edited", limit, edit_doc)

        log("model load in a fresh process")
        model_load = run_worker("model_load")
        log(f"cold build of {base} (+ raw encode in the same process)")
        cold = run_worker("build", str(home), str(base), "raw")
        log(f"  {cold['chunks']} chunks in {cold['seconds']} s; raw {cold['raw_encode']}")
        log("unchanged rebuild")
        same = run_worker("build", str(home), str(base), "-")
        log(f"  embedded {same['embedded']} in {same['seconds']} s")
        log(f"rebuild after editing {edit_doc}")
        edit = run_worker("build", str(home), str(edited), "-")
        log(f"  embedded {edit['embedded']} in {edit['seconds']} s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    from indexing import Catalog

    cat = Catalog("python-docs", home=home)
    diff = cat.diff(cold["version_id"], edit["version_id"])
    doc_chunks = cat.manifest(edit["version_id"]).documents[edit_doc].chunks
    raw = cold["raw_encode"]
    embed_s = cold["timings"]["embed"]
    result = {
        "machine": machine(),
        "quick": args.quick,
        "corpus": {"documents": cold["documents"], "chunks": cold["chunks"]},
        "model_load_seconds": model_load["seconds"],
        "cold": cold,
        "throughput": {
            "build_chunks_per_s": round(cold["chunks"] / cold["seconds"], 1),
            "raw_encode_texts_per_s": round(raw["texts"] / raw["seconds"], 1),
            "embed_stage_texts_per_s": round(cold["embedded"] / embed_s, 1),
            "ratio_whole_build": round(raw["seconds"] / cold["seconds"], 3),
            "ratio_embed_stage": round(raw["seconds"] / embed_s, 3),
            "ratio_embed_stage_excl_model_load": round(
                raw["seconds"] / max(embed_s - model_load["seconds"], 1e-9), 3
            ),
            "ratio_whole_build_cpu_time": round(raw["cpu_seconds"] / cold["cpu_seconds"], 3),
        },
        "unchanged": {**same, "fraction_of_cold": round(same["seconds"] / cold["seconds"], 4)},
        "edit_one": {
            **edit,
            "doc": edit_doc,
            "doc_chunks": doc_chunks,
            "diff": {k: v for k, v in diff.items() if k not in ("from", "to")},
            "fraction_of_cold": round(edit["seconds"] / cold["seconds"], 4),
        },
    }
    t = result["throughput"]
    result["goals"] = {
        "ratio_whole_build>=0.9": t["ratio_whole_build"] >= 0.9,
        "ratio_embed_stage>=0.9": t["ratio_embed_stage"] >= 0.9,
        "unchanged_embeds_0": same["embedded"] == 0,
        "unchanged_<=10%": result["unchanged"]["fraction_of_cold"] <= 0.10,
        "edit_embeds_only_that_doc": (
            diff["docs_changed"] == [edit_doc]
            and not diff["docs_added"]
            and not diff["docs_removed"]
            and 0 < edit["embedded"] == diff["chunks_added"] <= doc_chunks
        ),
    }
    path = write_result("index_build_quick" if args.quick else "index_build", result)
    log(f"wrote {path}")
    print(json.dumps({"throughput": t, "goals": result["goals"]}, indent=2))


if __name__ == "__main__":
    main()
