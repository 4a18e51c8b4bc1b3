"""Learning from production end to end: a real gateway (uvicorn; fake upstreams at the HTTP
seam; real SQLite) with capture on, a canary rollout, traffic and feedback; then ``genaiops
monitor evaluate`` scores the captured answers into the ledger, the rollout judge rolls the
worse canary back on those scores, ``monitor report`` renders (headless Chromium), ``monitor
check`` exits 1 listing the breaches, and ``monitor export`` writes the thumbs-down answers as a
dataset the evaluation loader reads."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from evaluation.runtime.data import load_jsonl
from genaiops.cli import app
from tests.gateway.support import (
    ADMIN_KEY,
    FakeUpstream,
    Running,
    routed_client,
    serve,
    two_deployment_config,
)

DOC = "Lumen rotates log files daily and keeps seven compressed archives of old logs."
STABLE = "Lumen rotates log files daily and keeps seven compressed archives."
CANARY = "Bananas are purple on Tuesdays in Ohio."
QUESTIONS = [
    "How does Lumen rotate log files?",
    "How many archives of old logs does Lumen keep?",
    "Does Lumen compress its rotated logs?",
    "How often are Lumen logs rotated?",
]
CAPTURE = {"enabled": True, "flush_interval_s": 30.0}
THRESHOLDS = """
thresholds:
  min_samples: 5
  groundedness_min: 3.0
  relevance_min: null
  thumbs_up_rate_min: 0.6
  refusal_rate_max: 0.5
evaluate: {judge: offline}
prices:
  stable: {prompt_per_1k: 0.5, completion_per_1k: 1.5}
"""
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def admin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENAIOPS_ADMIN_KEY", ADMIN_KEY)


def _traffic(gw: Running, n: int) -> dict[str, str]:
    """``n`` questions from different users (so both deployments serve); thumbs up for the
    stable answers and down for the canary's. Returns request id -> deployment."""
    served = {}
    key = gw.create_key(team="support")
    with gw.client(key) as c:
        for i in range(n):
            r = c.post(
                "/v1/chat/completions",
                json={
                    "model": "gpt-test",
                    "messages": [{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}],
                    "user": f"user-{i}",
                    "documents": [{"text": DOC, "id": "guides/logs.md#1", "score": 0.7}],
                    "retrieval": {"index": "docs", "index_version": "v-aa", "alias": "current"},
                },
                headers={"x-genaiops-flow-variant": "answer_prompt.cited"},
            )
            assert r.status_code == 200, r.text
            rid = r.headers["x-request-id"]
            canary = r.json()["choices"][0]["message"]["content"].startswith("Bananas")
            served[rid] = "canary" if canary else "stable"
            fb = c.post(
                "/v1/feedback", json={"request_id": rid, "rating": "down" if canary else "up"}
            )
            assert fb.status_code == 200, fb.text
    gw.gw.capture.flush_sync()
    return served


def test_capture_evaluate_rollout_report_export(
    admin: None, genaiops_home: Path, tmp_path: Path
) -> None:
    ups = {"stable": FakeUpstream(reply=STABLE), "canary": FakeUpstream(reply=CANARY)}
    ups["mirror"] = FakeUpstream()
    thresholds = tmp_path / "monitoring.yaml"
    thresholds.write_text(THRESHOLDS)
    cli = CliRunner()
    cfg = two_deployment_config(rollout_tick_s=0.1, capture=CAPTURE)
    with serve(cfg, routed_client(ups)) as gw:
        with gw.admin() as a:
            r = a.post(
                "/admin/rollouts/gpt-test",
                json={
                    "candidate": "canary",
                    "steps": [50, 100],
                    "interval": "1h",
                    "min_samples": 5,
                    "max_score_drop": 0.2,
                    "max_p95_ratio": 1000,  # judged on answers only, not on loopback jitter
                },
            )
            assert r.status_code == 201, r.text
        served = _traffic(gw, 24)
        assert sum(d == "canary" for d in served.values()) >= 5
        assert sum(d == "stable" for d in served.values()) >= 5
        with gw.admin() as a:
            st = a.get("/admin/rollouts/gpt-test").json()
            assert st["status"] == "running", st["history"][-1]

        # online evaluation: scores into the ledger (exit 1: the canary's groundedness breaches)
        res = cli.invoke(
            app, ["monitor", "evaluate", "--since", "1h", "-m", str(thresholds), "--json"]
        )
        assert res.exit_code == 1, res.output
        out = json.loads(res.stdout)
        assert out["captured"] == 24 and out["scored"] == 24 and out["ledger_scores"] == 24
        groups = {g["deployment"]: g for g in out["groups"]}
        assert groups["stable"]["variant"] == "answer_prompt.cited"
        assert (
            groups["stable"]["groundedness_mean"] >= 4 > 2 >= groups["canary"]["groundedness_mean"]
        )
        assert [(b["check"], b["scope"]) for b in out["breaches"]] == [
            ("groundedness", "deployment=canary variant=answer_prompt.cited")
        ]
        assert out["mlflow_run_id"]
        ledger = sqlite3.connect(genaiops_home / "gateway" / "ledger.db")
        rows = ledger.execute(
            "SELECT u.deployment, s.score FROM scores s JOIN usage u USING (request_id)"
        ).fetchall()
        assert len(rows) == 24
        assert {d for d, _ in rows} == {"stable", "canary"}
        for dep, score in rows:
            assert (score > 0.6) if dep == "stable" else (score < 0.4)
        # a second run scores nothing new
        again = cli.invoke(app, ["monitor", "evaluate", "--since", "1h", "--json", "--no-mlflow"])
        assert json.loads(again.stdout)["scored"] == 0

        # the rollout judge uses those scores: the canary is rolled back on its own answers
        deadline = time.time() + 10
        with gw.admin() as a:
            while time.time() < deadline:
                st = a.get("/admin/rollouts/gpt-test").json()
                if st["status"] != "running":
                    break
                time.sleep(0.1)
        assert st["status"] == "rolled_back", st
        assert st["history"][-1]["reason"] == "online score"

    # the report: html + json + md; the plots are in the page
    rep = tmp_path / "report"
    res = cli.invoke(
        app, ["monitor", "report", "--since", "1d", "--out", str(rep), "-m", str(thresholds)]
    )
    assert res.exit_code == 0, res.output
    data = json.loads((rep / "report.json").read_text())
    assert data["operations"]["requests"] == 24 and data["feedback_total"] == 24
    assert data["operations"]["cost"] > 0
    assert {b["check"] for b in data["breaches"]} >= {"groundedness", "thumbs_up_rate"} or (
        data["thumbs_up_rate"] >= 0.6
    )
    html = (rep / "report.html").read_text()
    assert "http://" not in html.replace("http://www.w3.org", "") and "https://" not in html
    assert html.count('<img class="plot"') == len(data["plots"]) >= 9
    assert "deployment=canary" in (rep / "report.md").read_text()
    if CHROMIUM:
        shot = tmp_path / "report.png"
        cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
               f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1400,3000"]  # fmt: skip
        page = (rep / "report.html").as_uri()
        r = subprocess.run(
            [*cmd, f"--screenshot={shot}", page], capture_output=True, timeout=90, check=False
        )
        assert r.returncode == 0 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert shot.stat().st_size > 50_000  # plots drawn, not a blank page
        dom = subprocess.run(
            [*cmd, "--dump-dom", page], capture_output=True, text=True, timeout=90, check=False
        ).stdout
        for plot in data["plots"]:
            assert f'id="plot-{plot}"' in dom
        assert dom.count("data:image/png;base64,") == len(data["plots"])

    # check: every threshold, exit 1 and the list
    res = cli.invoke(app, ["monitor", "check", "--since", "1h", "-m", str(thresholds)])
    assert res.exit_code == 1 and "groundedness" in res.output

    # export the thumbs-down answers as an evaluation set the loader reads
    out_file = tmp_path / "datasets" / "prod_failures.jsonl"
    res = cli.invoke(
        app,
        ["monitor", "export", "--where", "rating=down or groundedness<3", "--out", str(out_file)],
    )
    assert res.exit_code == 0, res.output
    lines = load_jsonl(out_file)
    assert len(lines) == sum(d == "canary" for d in served.values())
    assert {ln["answer"] for ln in lines} == {CANARY}
    assert all(ln["question"] in QUESTIONS and ln["context"] == DOC for ln in lines)
    assert {ln["source"]["deployment"] for ln in lines} == {"canary"}
