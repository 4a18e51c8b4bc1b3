"""`genaiops flow connections`: bad input writes nothing (the promptflow runs are in
test_promptflow.py, slow)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

GENAIOPS = str(Path(sys.executable).parent / "genaiops")


def test_connections_without_a_gateway_is_one_line_exit_2_and_writes_nothing(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "GENAIOPS_HOME": str(tmp_path / "g")}
    out = subprocess.run(
        [GENAIOPS, "flow", "connections"], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "error: GENAIOPS_GATEWAY_URL is not set: where is the gateway?"
    ]
    assert list(home.rglob("*")) == []  # no keyringrc.cfg, no pf.yaml
