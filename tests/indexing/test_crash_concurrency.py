"""SIGKILL during builds never damages a promoted version; concurrent builds don't collide.

The default run has fast, deterministic variants (one kill at the riskiest moment: staging
written, publish pending; three concurrent builds of tiny corpora); the random-timing kill
loops and the larger concurrent build are marked ``slow``.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from indexing import Catalog, Retriever, adhoc_spec, build_index

WORDS = [
    "lumen",
    "ship",
    "event",
    "buffer",
    "rotate",
    "collector",
    "token",
    "parser",
    "batch",
    "retry",
    "disk",
    "checkpoint",
    "metrics",
    "latency",
    "socket",
    "queue",
    "tail",
    "glob",
    "regex",
    "backoff",
    "cluster",
    "shard",
    "replica",
]


def make_corpus(root: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        paras = [" ".join(rng.choice(WORDS) for _ in range(60)) for _ in range(4)]
        (root / f"doc{i:04d}.md").write_text(f"# Document {i}\n\n" + "\n\n".join(paras) + "\n")


def build_cmd(corpus: Path, promote: str | None = "current") -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "genaiops.cli",
        "index",
        "build",
        "--source",
        str(corpus),
        "--index",
        "crash",
        "--json",
    ]
    return cmd + (["--promote", promote] if promote else [])


def run_build(corpus: Path, home: Path, promote: str | None = "current") -> None:
    env = os.environ | {"GENAIOPS_HOME": str(home)}
    subprocess.run(
        build_cmd(corpus, promote), env=env, check=True, capture_output=True, timeout=300
    )


def assert_loadable(home: Path, alias: str = "current", mode: str = "hybrid") -> str:
    cat = Catalog("crash", home=home)
    version = cat.resolve(alias)
    retriever = Retriever("crash", alias, home=home)
    hits = retriever.retrieve("rotate collector buffer", k=3, mode=mode)  # type: ignore[arg-type]
    assert hits and all(h.version_id == version for h in hits)
    return version


def staging_folders(home: Path) -> list[Path]:
    versions_dir = Catalog("crash", home=home).versions_dir
    return [p for p in versions_dir.iterdir() if p.name.startswith(".tmp-")]


def test_sigkill_during_build_keeps_alias_loadable(tmp_path: Path, genaiops_home: Path) -> None:
    """Kill a build the moment its staging folder exists (its files half written, publish
    pending): the promoted version still loads, and the next build removes the debris."""
    corpus = tmp_path / "corpus"
    make_corpus(corpus, 12)
    spec = adhoc_spec([str(corpus)], name="crash")
    build_index(spec, promote="current")
    env = os.environ | {"GENAIOPS_HOME": str(genaiops_home)}
    rng = random.Random(7)
    killed_in_staging = False
    for attempt in range(3):  # the store stage is short; retry if a poll missed it
        before = Catalog("crash").resolve("current")
        for j in range(12):
            (corpus / f"doc{j:04d}.md").write_text(
                f"# Doc {j} edit {attempt}\n\n" + " ".join(rng.choices(WORDS, k=300))
            )
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        proc = subprocess.Popen(build_cmd(corpus), env=env, start_new_session=True, **quiet)
        while proc.poll() is None and not staging_folders(genaiops_home):
            time.sleep(0.002)
        killed_in_staging = proc.poll() is None
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        if killed_in_staging:
            break
    assert killed_in_staging, "the build finished before its staging folder was seen"
    assert staging_folders(genaiops_home)  # the killed build's debris...
    assert assert_loadable(genaiops_home, mode="lexical") == before  # ...did not touch current
    build_index(spec, promote="current")
    assert not staging_folders(genaiops_home)  # ...and the next build cleaned it up
    assert assert_loadable(genaiops_home, mode="lexical") != before


def kill_loop(tmp_path: Path, home: Path, iterations: int) -> None:
    corpus = tmp_path / "corpus"
    make_corpus(corpus, 80)
    run_build(corpus, home)
    assert_loadable(home)
    rng = random.Random(42)
    env = os.environ | {"GENAIOPS_HOME": str(home)}
    for i in range(iterations):
        # change some documents so every build has real work (new version, some embedding)
        for j in rng.sample(range(80), 10):
            (corpus / f"doc{j:04d}.md").write_text(
                f"# Doc {j} edit {i}\n\n" + " ".join(rng.choices(WORDS, k=200))
            )
        proc = subprocess.Popen(
            build_cmd(corpus),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        time.sleep(rng.uniform(0.5, 7.0))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        assert_loadable(home)  # whatever moment the kill hit, the alias still loads
    run_build(corpus, home)  # a later build completes and cleans up after the killed ones
    assert_loadable(home)
    versions_dir = Catalog("crash", home=home).versions_dir
    assert not [p for p in versions_dir.iterdir() if p.name.startswith(".tmp-")]


@pytest.mark.slow
def test_sigkill_at_random_moments(tmp_path: Path) -> None:
    kill_loop(tmp_path, tmp_path / "home", iterations=3)


@pytest.mark.slow
def test_sigkill_during_build_many_times(tmp_path: Path) -> None:
    kill_loop(tmp_path, tmp_path / "home", iterations=30)


def concurrent_builds(tmp_path: Path, docs: int, mode: str, b_in_process: bool) -> None:
    """Two identical builds of ``a`` race to publish one version (separate processes) while
    ``b`` is built and promoted to another alias, in a third process or in this one."""
    home = tmp_path / "home"
    a, b = tmp_path / "a", tmp_path / "b"
    make_corpus(a, docs, seed=1)
    make_corpus(b, docs, seed=2)
    env = os.environ | {"GENAIOPS_HOME": str(home)}
    jobs = [(a, "current"), (a, "current")] + ([] if b_in_process else [(b, "other")])
    procs = [
        subprocess.Popen(
            build_cmd(c, promote=alias), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for c, alias in jobs
    ]
    if b_in_process:
        build_index(adhoc_spec([str(b)], name="crash"), promote="other", home=home)
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()[-2000:]
    cat = Catalog("crash", home=home)
    assert len(cat.versions()) == 2  # two identical builds of `a` share one version
    assert assert_loadable(home, "current", mode) != assert_loadable(home, "other", mode)
    assert not staging_folders(home)


def test_concurrent_builds_on_one_store(tmp_path: Path) -> None:
    concurrent_builds(tmp_path, docs=3, mode="lexical", b_in_process=True)


@pytest.mark.slow
def test_concurrent_builds_on_one_store_larger(tmp_path: Path) -> None:
    concurrent_builds(tmp_path, docs=20, mode="hybrid", b_in_process=False)


def test_staging_of_a_build_killed_before_owner_json_is_removed(genaiops_home: Path) -> None:
    """A build killed between creating its staging folder and writing owner.json left debris
    that was kept for an hour; the pid in the folder name now identifies the dead builder."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    cat = Catalog("crash")
    cat.versions_dir.mkdir(parents=True)
    orphan = cat.versions_dir / f".tmp-{dead.pid}-abc123"
    orphan.mkdir()
    (orphan / "dense.faiss").write_bytes(b"half written")
    live = cat.staging_dir()  # ours: the pid is alive, so it stays
    assert live.name.startswith(f".tmp-{os.getpid()}-")
    assert cat.clean_leftovers() == [orphan.name]
    assert live.exists() and not orphan.exists()
