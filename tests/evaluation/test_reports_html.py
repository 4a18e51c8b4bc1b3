"""report.html in a real browser: headless Chromium (Debian ``chromium``, installed by
scripts/setup when root) renders it, takes a screenshot, and the DOM it built has the tables."""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from evaluation.config import load_gate_config
from evaluation.gate import evaluate_gate
from evaluation.reports import write_reports
from evaluation.summary import load_summary

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = (
    shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
)

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium is not installed (scripts/setup installs Debian's chromium when run as root)",
)


def _chromium(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp / 'profile'}",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90, check=False)


class _Tables(HTMLParser):
    """Rows (with their cell texts) of every table in a DOM dump, by table id or variant."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._table: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table":
            self._table = a.get("data-variant") or a.get("id") or f"t{len(self.tables)}"
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table:
            self._cell = []

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._table:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None


def test_report_renders_in_headless_chromium_with_filled_tables(tmp_path: Path) -> None:
    summary = load_summary(REPO / "evaluation/baselines/sample.json")
    gate = evaluate_gate(summary, load_gate_config(REPO / "evaluation/gate.yaml"))
    page = Path(write_reports(summary, gate, tmp_path)["html"])
    shot = tmp_path / "report.png"
    res = _chromium(tmp_path, "--window-size=1400,2000", f"--screenshot={shot}", page.as_uri())
    assert res.returncode == 0, res.stderr[-2000:]
    assert shot.exists() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 20_000  # a blank page is a few kB

    res = _chromium(tmp_path, "--dump-dom", page.as_uri())
    assert res.returncode == 0, res.stderr[-2000:]
    dom = res.stdout
    assert "<pre>" not in dom and "|---|" not in dom  # the summary is HTML, not Markdown text
    parser = _Tables()
    parser.feed(dom)
    tables = parser.tables
    aggregates = tables["aggregates"]
    assert aggregates[0][:4] == ["variant", "errors", "judge NaN", "groundedness"]
    assert [r[0] for r in aggregates[1:]] == ["answer_prompt.cited", "answer_prompt.terse"]
    for variant in ("answer_prompt.cited", "answer_prompt.terse"):
        rows = tables[variant]
        header, body = rows[0], rows[1:]
        assert header[:4] == ["id", "question", "answer", "retrieved"] and header[-1] == "errors"
        assert len(body) == 17 and all(r[1] and r[2] and r[3] for r in body)
        g = header.index("groundedness")
        values = [float(r[g]) for r in body]
        assert values[0] == min(values)  # worst first
    assert "gate PASSED" in dom
