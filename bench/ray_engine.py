"""Local engine vs the Ray engine (a local Ray on this machine) on python-docs pages.

Each engine builds the same spec into its own fresh ``GENAIOPS_HOME`` in its own subprocess
(cold: empty embedding cache, model not loaded).  Measured per engine: build seconds, chunks/s,
the build's stage timings, and peak memory of the whole process tree (for Ray: the driver plus
the GCS, raylet and worker processes it starts; sampled from /proc every 50 ms).  Ray's start-up
(``ray.init``) is timed apart from the build.  Derived in the same run: throughput ratio (ray /
local) and per-chunk overhead ((ray build s - local build s) / chunks, in ms).  Both builds must
give the same version id and bit-identical vectors, else the script fails.

    python bench/ray_engine.py --pages 40        # the committed figures (a python-docs subset)
    python bench/ray_engine.py                   # all 485 pages (about an hour per engine here)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from _common import RESULTS, load, log, machine, python_docs_dir, write_result

SPEC = Path(__file__).resolve().parent.parent / "indexing" / "specs" / "python-docs.yaml"


# -- memory of a process tree -----------------------------------------------------------------
def _tree_rss_mb(root: int) -> float:
    """Resident memory of ``root`` and all its descendants, from /proc."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    page = os.sysconf("SC_PAGE_SIZE")
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
            statm = Path(f"/proc/{d}/statm").read_text().split()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        parents[int(d)] = int(fields[1])
        rss[int(d)] = int(statm[1]) * page
    tree, frontier = {root}, [root]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parents.items() if pp == p and c not in tree]
        tree.update(kids)
        frontier.extend(kids)
    return sum(rss.get(p, 0) for p in tree) / 2**20


class PeakSampler(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = 0.0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, _tree_rss_mb(os.getpid()))
            self._done.wait(0.05)

    def stop(self) -> float:
        self._done.set()
        self.join()
        return round(max(self.peak, _tree_rss_mb(os.getpid())), 1)


# -- worker (one engine, one subprocess) ------------------------------------------------------
def worker(engine: str, home: Path, corpus: Path) -> dict:
    os.environ["PYTHON_DOCS_DIR"] = str(corpus)
    from indexing import build_index, load_index_spec

    spec = load_index_spec(SPEC)
    sampler = PeakSampler()
    sampler.start()
    ray_init = None
    if engine == "ray":
        from genaiops.ray_runtime import connect

        t = time.perf_counter()
        connect()
        ray_init = round(time.perf_counter() - t, 2)
    load_before = load()
    t = time.perf_counter()
    res = build_index(spec, home=home, engine=engine)
    wall = time.perf_counter() - t
    peak = sampler.stop()
    return {
        "engine": engine,
        "version_id": res.version_id,
        "documents": res.documents,
        "chunks": res.chunks,
        "embedded": res.embedded,
        "seconds": round(wall, 2),
        "chunks_per_s": round(res.chunks / wall, 2),
        "timings": {k: round(v, 2) for k, v in res.timings.items()},
        "ray_init_seconds": ray_init,
        "peak_tree_rss_mb": peak,
        "load_before": load_before,
        "load_after": load(),
    }


def run_worker(engine: str, home: Path, corpus: Path) -> dict:
    cmd = [sys.executable, __file__, "--worker", engine, str(home), str(corpus)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"{engine} build failed with {proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def same_vectors(home_a: Path, home_b: Path, version: str) -> bool:
    import faiss
    import numpy as np

    def vecs(home: Path) -> np.ndarray:
        idx = faiss.read_index(str(home / "indexes/python-docs/versions" / version / "dense.faiss"))
        return idx.reconstruct_n(0, idx.ntotal)

    return bool(np.array_equal(vecs(home_a), vecs(home_b)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages", type=int, default=None, help="first N pages (default: all)")
    ap.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        engine, home, corpus = args.worker
        print(json.dumps(worker(engine, Path(home), Path(corpus))))
        return

    src = python_docs_dir() / "corpus.jsonl"
    tmp = Path(tempfile.mkdtemp(prefix="genaiops-bench-ray-"))
    try:
        corpus = tmp / "corpus"
        corpus.mkdir()
        with src.open() as f, (corpus / "corpus.jsonl").open("w") as g:
            for n, line in enumerate(f):
                if args.pages is not None and n >= args.pages:
                    break
                g.write(line)
        out = {}
        for engine in ("local", "ray"):
            log(f"{engine} engine, cold build of {args.pages or 'all'} pages")
            out[engine] = run_worker(engine, tmp / engine, corpus)
            log(f"  {out[engine]['chunks']} chunks in {out[engine]['seconds']} s")
        local, ray = out["local"], out["ray"]
        if ray["version_id"] != local["version_id"]:
            raise SystemExit("the engines built different versions")
        identical = same_vectors(tmp / "local", tmp / "ray", local["version_id"])
        if not identical:
            raise SystemExit("the engines stored different vectors")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result = {
        "machine": machine(),
        "pages": args.pages or "all",
        "command": " ".join(["python", "bench/ray_engine.py", *sys.argv[1:]]),
        "ray_settings": {k: v for k, v in os.environ.items() if k.startswith("GENAIOPS_RAY_")},
        "local": local,
        "ray": ray,
        "throughput_ratio_ray_over_local": round(ray["chunks_per_s"] / local["chunks_per_s"], 3),
        "overhead_ms_per_chunk": round(
            1000 * (ray["seconds"] - local["seconds"]) / local["chunks"], 2
        ),
        "identical_version_and_vectors": identical,
    }
    path = write_result("ray_engine", result)
    log(f"wrote {path.relative_to(RESULTS.parent.parent)}")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
