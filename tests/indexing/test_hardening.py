"""Attacks on the index CLI and catalog: each is one clear line, exit 2, nothing written.

Secrets in spec interpolation (#7.8), path traversal through version ids and aliases (#7.9),
unbounded reads (#7.10) and tracebacks on bad names or deep specs (#7.11).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from genaiops.cli import main
from genaiops.errors import IndexingError, VersionNotFound
from indexing import Catalog, Retriever, adhoc_spec, build_index
from tests.conftest import SAMPLE_CORPUS

SECRET = "sk-admin-0123456789-do-not-print"
GUIDES = SAMPLE_CORPUS / "guides"


def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str):
    """Run ``genaiops ARGS`` through the real entry point (its error handler included)."""
    monkeypatch.setattr(sys, "argv", ["genaiops", *args])
    with pytest.raises(SystemExit) as e:
        main()
    out, err = capsys.readouterr()
    return e.value.code, out, err


def assert_one_line_error(code: object, out: str, err: str) -> str:
    assert code == 2, (code, out, err)
    assert "Traceback" not in err and "Traceback" not in out
    line = err.strip()
    assert line.startswith("error: ") and "\n" not in line, err
    return line


def nothing_written(home: Path) -> bool:
    return not home.exists() or not any(home.rglob("*"))


# -- #7.8 secrets never leak through spec interpolation ---------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        "sources:\n  - path: ${GENAIOPS_ADMIN_KEY:-/x}\n",
        "sources:\n  - path: /data/${GENAIOPS_ADMIN_KEY}/docs\n",
        "env: [GENAIOPS_ADMIN_KEY]\nsources:\n  - path: ${GENAIOPS_ADMIN_KEY:-/x}\n",
        "sources:\n  - path: ${LEAKY_DIR}\n",  # a location-named variable, but not listed
        "env: [LEAKY_DIR]\nsources:\n  - path: ${LEAKY_DIR}/corpus\n",  # listed, path missing
    ],
    ids=["default", "embedded", "declared-secret", "undeclared-dir", "declared-dir-missing"],
)
def test_spec_interpolation_never_prints_a_value(
    spec: str,
    tmp_path: Path,
    genaiops_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("GENAIOPS_ADMIN_KEY", SECRET)
    monkeypatch.setenv("LEAKY_DIR", "/" + SECRET)
    p = tmp_path / "leak.yaml"
    p.write_text(spec)
    code, out, err = cli(monkeypatch, capsys, "index", "build", "--spec", str(p))
    line = assert_one_line_error(code, out, err)
    assert SECRET not in out + err
    assert "GENAIOPS_ADMIN_KEY" in line or "LEAKY_DIR" in line  # the name, never the value
    assert nothing_written(genaiops_home)


def test_listed_location_variable_is_interpolated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from indexing import load_index_spec

    monkeypatch.setenv("MY_DATA_DIR", str(SAMPLE_CORPUS))
    p = tmp_path / "s.yaml"
    p.write_text("env: [MY_DATA_DIR]\nsources: [{path: '${MY_DATA_DIR}/guides'}]\n")
    spec = load_index_spec(p)
    assert spec.source_root(spec.sources[0]) == GUIDES.resolve()
    # the env list only chooses files: it is not part of the content fingerprint
    assert "env" not in spec.fingerprint()


# -- #7.9 version ids and aliases are never paths ---------------------------------------------


@pytest.fixture
def built(tmp_path: Path, genaiops_home: Path) -> tuple[str, Path]:
    """Index ``demo`` with alias current, and a copy of its version outside the index folder."""
    src = tmp_path / "docs"
    src.mkdir()
    (src / "a.md").write_text("# Stop\n\nPress ctrl-c to stop Lumen gracefully.\n")
    version = build_index(adhoc_spec([str(src)], name="demo"), promote="current").version_id
    outside = tmp_path / "other" / "versions" / "v-1234567890abcdef"
    shutil.copytree(Catalog("demo").version_dir(version), outside)
    return version, outside


def _attacks(outside: Path, home: Path) -> list[list[str]]:
    versions = home / "indexes" / "demo" / "versions"
    rel = Path(*[".."] * len(versions.parts)) / str(outside).lstrip("/")
    return [
        ["index", "promote", str(rel), "--alias", "evil", "-i", "demo"],
        ["index", "promote", str(outside), "--alias", "evil", "-i", "demo"],
        ["index", "promote", "../../other/versions/v-1234567890abcdef", "--alias", "evil"],
        ["index", "query", "stop", "-a", "../..", "-i", "demo"],
        ["index", "query", "stop", "-a", str(outside), "-i", "demo"],
        ["index", "query", "stop", "-a", str(rel), "-i", "demo", "--mode", "lexical"],
        ["index", "show", str(outside), "-i", "demo"],
        ["index", "show", str(rel), "-i", "demo"],
        ["index", "diff", "current", str(outside), "-i", "demo"],
    ]


def test_version_ids_that_are_paths_are_refused(
    built: tuple[str, Path],
    genaiops_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, outside = built
    for args in _attacks(outside, genaiops_home):
        code, out, err = cli(monkeypatch, capsys, *args)
        assert_one_line_error(code, out, err)
    assert Catalog("demo").aliases().keys() == {"current"}


def test_tampered_alias_and_symlinked_version_do_not_load(
    built: tuple[str, Path], genaiops_home: Path
) -> None:
    version, outside = built
    cat = Catalog("demo")
    rel = Path(*[".."] * len(cat.versions_dir.parts)) / str(outside).lstrip("/")
    (cat.aliases_dir / "evil.json").write_text(json.dumps({"version": str(rel), "history": []}))
    with pytest.raises(IndexingError, match="evil.json"):
        Retriever("demo", "evil").retrieve("stop", k=1, mode="lexical")
    (cat.versions_dir / "v-1234567890abcdef").symlink_to(outside)
    assert not cat.has_version("v-1234567890abcdef")
    with pytest.raises(VersionNotFound):
        cat.promote("v-1234567890abcdef", "evil2")
    assert [m.version_id for m in cat.versions()] == [version]


# -- #7.10 no unbounded reads -----------------------------------------------------------------


def test_spec_from_dev_zero_is_refused(
    genaiops_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(monkeypatch, capsys, "index", "build", "--spec", "/dev/zero")
    assert "not a regular file" in assert_one_line_error(code, out, err)
    code, out, err = cli(monkeypatch, capsys, "index", "build", "--source", "/dev/zero")
    assert "not a regular file or a folder" in assert_one_line_error(code, out, err)
    assert nothing_written(genaiops_home)


def test_source_files_over_the_limit_are_quarantined(tmp_path: Path) -> None:
    from indexing import load_index_spec

    src = tmp_path / "docs"
    src.mkdir()
    (src / "small.md").write_text("# Small\n\nLumen ships logs.\n")
    (src / "huge.md").write_text("# Huge\n\n" + "lumen " * 400)
    (src / "huge.jsonl").write_text(json.dumps({"id": "1", "text": "x" * 3000}) + "\n")
    p = tmp_path / "s.yaml"
    p.write_text(f"name: capped\nsources: [{{path: {src}}}]\nmax_file_size: 2 KiB\n")
    r = build_index(load_index_spec(p))
    reasons = {Path(q["path"]).name: q["reason"] for q in r.quarantined}
    assert set(reasons) == {"huge.md", "huge.jsonl"}
    assert all("too large" in why and "2048" in why for why in reasons.values())
    assert r.documents == 1
    # the same limit from the command line, for --source builds
    assert adhoc_spec([str(src)], max_file_size="1 MiB").max_file_size == 2**20


# -- #7.11 bad names are one line, exit 2, nothing written ------------------------------------

BAD_NAMES = ["../../etc", "/abs", "a/b", "", ".hidden", "a" * 300, "a\tb\x01", "name\n", "\x1b[31m"]


@pytest.mark.parametrize("name", BAD_NAMES, ids=repr)
@pytest.mark.parametrize(
    "command",
    [
        ["index", "build", "--source", str(GUIDES), "--index", "{}"],
        ["index", "list", "-i", "{}"],
        ["index", "query", "stop", "-i", "{}"],
        ["index", "show", "current", "-i", "{}"],
        ["index", "promote", "v-0123456789abcdef", "--alias", "{}"],
        ["index", "rollback", "--alias", "{}"],
        ["index", "gc", "-i", "{}"],
    ],
    ids=lambda c: c[1],
)
def test_bad_index_and_alias_names(
    command: list[str],
    name: str,
    genaiops_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = [name if a == "{}" else a for a in command]
    line = assert_one_line_error(*cli(monkeypatch, capsys, *args))
    assert len(line) < 300 and "\x1b" not in line and "\t" not in line
    assert nothing_written(genaiops_home)


def test_spec_nested_5000_levels_is_one_line(
    tmp_path: Path,
    genaiops_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    p = tmp_path / "deep.yaml"
    p.write_text("sources: " + "[" * 5000 + "]" * 5000 + "\n")
    code, out, err = cli(monkeypatch, capsys, "index", "build", "--spec", str(p))
    assert "nested deeper than" in assert_one_line_error(code, out, err)
    assert nothing_written(genaiops_home)
