"""SIGKILL during builds never damages a promoted version; concurrent builds don't collide."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from indexing import Catalog, Retriever

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


def assert_loadable(home: Path, alias: str = "current") -> str:
    cat = Catalog("crash", home=home)
    version = cat.resolve(alias)
    hits = Retriever("crash", alias, home=home).retrieve("rotate collector buffer", k=3)
    assert hits and all(h.version_id == version for h in hits)
    return version


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


def test_sigkill_during_build_keeps_alias_loadable(tmp_path: Path) -> None:
    kill_loop(tmp_path, tmp_path / "home", iterations=3)


@pytest.mark.slow
def test_sigkill_during_build_many_times(tmp_path: Path) -> None:
    kill_loop(tmp_path, tmp_path / "home", iterations=30)


def test_concurrent_builds_on_one_store(tmp_path: Path) -> None:
    home = tmp_path / "home"
    a, b = tmp_path / "a", tmp_path / "b"
    make_corpus(a, 20, seed=1)
    make_corpus(b, 20, seed=2)
    env = os.environ | {"GENAIOPS_HOME": str(home)}
    procs = [
        subprocess.Popen(
            build_cmd(c, promote=alias), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for c, alias in ((a, "current"), (b, "other"), (a, "current"))
    ]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()[-2000:]
    cat = Catalog("crash", home=home)
    assert len(cat.versions()) == 2  # two identical builds of `a` share one version
    assert assert_loadable(home, "current") != assert_loadable(home, "other")
    assert not [p for p in cat.versions_dir.iterdir() if p.name.startswith(".tmp-")]
