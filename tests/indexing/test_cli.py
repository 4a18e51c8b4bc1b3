from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from genaiops.cli import app
from tests.conftest import SAMPLE_CORPUS

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str]:
    r = runner.invoke(app, list(args))
    return r.exit_code, r.output


def test_adhoc_build_query_list_show_json() -> None:
    code, out = invoke(
        "index",
        "build",
        "--source",
        str(SAMPLE_CORPUS / "guides"),
        "--promote",
        "current",
        "--json",
    )
    assert code == 0, out
    build = json.loads(out)
    assert build["documents"] == 4 and build["quarantined"] == []
    assert build["embedded"] == build["chunks"] > 0
    code, out = invoke("index", "build", "--source", str(SAMPLE_CORPUS / "guides"), "--json")
    assert json.loads(out)["embedded"] == 0
    code, out = invoke("index", "query", "graceful stop ctrl-c", "-k", "2", "--json")
    assert code == 0, out
    hits = json.loads(out)["hits"]
    assert hits[0]["doc_id"] == "getting-started.md"
    assert hits[0]["version_id"] == build["version_id"]
    code, out = invoke("index", "list", "-i", "default", "--json")
    assert json.loads(out)["aliases"] == {"current": build["version_id"]}
    code, out = invoke("index", "list", "--json")
    assert json.loads(out)["indexes"] == [
        {"index": "default", "versions": 1, "aliases": {"current": build["version_id"]}}
    ]
    code, out = invoke("index", "query", "stop", "--filter", "doc_id=rotation.md", "--json")
    assert {h["doc_id"] for h in json.loads(out)["hits"]} == {"rotation.md"}
    code, out = invoke("index", "query", "stop", "--filter", "nonsense")
    assert code != 0
    code, out = invoke("index", "show", "current", "--json")
    assert json.loads(out)["counts"]["documents"] == 4


def test_strict_exit_code_on_quarantine(tmp_path: Path) -> None:
    (tmp_path / "empty.md").write_text("")
    (tmp_path / "ok.md").write_text("# ok\n\nfine\n")
    code, out = invoke("index", "build", "--source", str(tmp_path), "--strict")
    assert code == 3 and "completed with 1 quarantined" in out


def test_user_errors_exit_2_with_message() -> None:
    import subprocess
    import sys

    r = subprocess.run(
        [sys.executable, "-m", "genaiops.cli", "index", "show", "nope"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "no version or alias 'nope'" in r.stderr
    assert "Traceback" not in r.stderr
    r = subprocess.run(
        [sys.executable, "-m", "genaiops.cli", "index", "build"], capture_output=True, text=True
    )
    assert r.returncode == 2 and "--spec" in r.stderr
