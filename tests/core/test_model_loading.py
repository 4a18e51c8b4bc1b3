"""Local models loading in several threads of one fresh process (the gateway at startup: its
warm-ups plus the first requests)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# Two generators (the base model, converted from its GGUF on first use, and a fine-tune folder)
# plus the embedder, all started at once in a process that has not imported transformers yet.
SCRIPT = r"""
import json, sys, threading
from pathlib import Path
from genaiops.providers import EmbedderConfig, make_embedder
from genaiops.providers.generator import get_local_generator
candidate = Path(sys.argv[1])
errors = []
go = threading.Barrier(3)
def run(fn):
    go.wait()
    try:
        fn()
    except Exception as e:
        errors.append(repr(e))
jobs = [
    lambda: get_local_generator().warm_up(),
    lambda: get_local_generator(model=str(candidate)).warm_up(),
    lambda: make_embedder(EmbedderConfig()).embed(["warm-up"]),
]
threads = [threading.Thread(target=run, args=(j,)) for j in jobs]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps(errors))
"""


@pytest.mark.slow
def test_models_loading_at_once_in_a_fresh_process_all_load(tmp_path: Path) -> None:
    """Before the loading lock this failed about every other run with "cannot import name
    'AutoModelForCausalLM' from 'transformers'" (lazy names resolved by two threads at once)."""
    from genaiops.providers.generator import base_model_dir

    candidate = tmp_path / "candidate"
    shutil.copytree(base_model_dir(), candidate)
    for attempt in range(2):  # each attempt in a fresh home: the base model converts again
        home = tmp_path / f"home{attempt}"
        out = subprocess.run(
            [sys.executable, "-c", SCRIPT, str(candidate)],
            capture_output=True,
            text=True,
            env={**os.environ, "GENAIOPS_HOME": str(home)},
            timeout=600,
            check=False,
        )
        assert out.returncode == 0, out.stderr[-2000:]
        assert json.loads(out.stdout.strip().splitlines()[-1]) == [], attempt
