"""``genaiops monitor`` on bad input: one ``error:`` line and exit 2 (no traceback), and the
``--where`` grammar and ``monitoring.yaml`` validation behind it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from evaluation.monitoring.config import load_monitoring_config
from evaluation.monitoring.errors import WhereError
from evaluation.monitoring.where import parse_where
from genaiops.errors import SpecError


def _main(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    """The installed entry point in process (``genaiops.cli.main``: error -> one line, exit 2)."""
    from genaiops.cli import main

    monkeypatch.setattr(sys, "argv", ["genaiops", "monitor", *argv])
    with pytest.raises(SystemExit) as e:
        main()
    return int(e.value.code or 0)


def test_bad_input_is_one_error_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "x.jsonl"
    # one real process: no traceback, one line, exit 2
    p = subprocess.run(
        [sys.executable, "-m", "genaiops", "monitor", "export", "--where", "rating==", "--out",
         str(out)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert p.returncode == 2, p.stderr
    assert p.stderr.strip().splitlines() == [
        "error: --where does not parse at column 1: 'rating==' (use FIELD OP VALUE joined by "
        "and/or/not, e.g. rating=down or groundedness<3)"
    ]
    bad = tmp_path / "monitoring.yaml"
    bad.write_text("thresholds:\n  groundedness_min: 9\n  refusal_rate: 0.1\n")
    for args, needle in (
        (["export", "--where", "groundness<3", "--out", str(out)], "unknown field 'groundness'"),
        (["evaluate", "--since", "soon"], "--since must be a duration"),
        (["check", "-m", str(bad)], "thresholds.refusal_rate"),
        (["drift", "--since", "1h", "--reference-since", "30m"], "further back"),
    ):
        capsys.readouterr()
        assert _main(args, monkeypatch) == 2, args
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], lines
    assert not out.exists()


def test_where_grammar() -> None:
    f = parse_where("(rating=down or groundedness<3) and not deployment=stable")
    assert f({"rating": "down", "deployment": "canary"})
    assert not f({"rating": "down", "deployment": "stable"})
    assert f({"groundedness": 2.5, "deployment": "canary"})
    assert not f({"deployment": "canary"})  # unscored, unrated: matches no comparison
    stars = parse_where("rating<=2")
    assert stars({"rating": 2.0}) and stars({"rating": "down"}) and not stars({"rating": "up"})
    assert parse_where("tag=wrong")({"tags": ["wrong", "slow"]})
    assert parse_where("refused=true AND answer_length<5")({"refused": True, "answer_length": 2})
    assert parse_where('variant="answer_prompt.cited"')({"variant": "answer_prompt.cited"})
    for bad, msg in (
        ("", "empty"),
        ("rating", "does not parse"),
        ("groundedness<high", "number"),
        ("rating=sideways", "up, down"),
        ("refused<true", "refused=true"),
        ("a<1 or", "does not parse"),
    ):
        with pytest.raises(WhereError, match=msg):
            parse_where(bad)


def test_monitoring_yaml_is_strict_and_the_example_loads(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[2]
    cfg = load_monitoring_config(repo / "evaluation" / "monitoring.yaml")
    assert cfg.thresholds.groundedness_min is not None
    p = tmp_path / "m.yaml"
    p.write_text("thresholds: {ood_rate_max: 2}\nprices: {gpt: {prompt_per_1k: -1}}\n")
    with pytest.raises(SpecError) as e:
        load_monitoring_config(p)
    assert str(p) in str(e.value) and "thresholds.ood_rate_max" in str(e.value)
    assert "prices.gpt.prompt_per_1k" in str(e.value)


def test_ledger_rows_between_is_the_window(tmp_path: Path) -> None:
    from gateway.ledger import Ledger, UsageRow

    ledger = Ledger(tmp_path / "ledger.db")
    for i, ts in enumerate((10.0, 20.0, 30.0)):
        ledger.write_sync(UsageRow(request_id=f"r{i}", ts=ts, alias="chat"))
    assert [r["request_id"] for r in ledger.rows_between(15.0, 30.0)] == ["r1"]
    assert [r["request_id"] for r in ledger.rows_between(0.0)] == ["r0", "r1", "r2"]
    ledger.close()
