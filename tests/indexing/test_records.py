"""On-disk contracts: manifests and alias files are typed, versioned, and refused when wrong."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from genaiops.errors import IndexingError
from indexing import Catalog, Retriever, adhoc_spec, build_index
from indexing.records import SCHEMA_VERSION, AliasRecord, IndexManifest, read_record


@pytest.fixture
def version(tmp_path: Path) -> str:
    src = tmp_path / "docs"
    src.mkdir()
    (src / "a.md").write_text("# Rotation\n\nLumen rotates log files at 100 MB.\n")
    return build_index(adhoc_spec([str(src)], name="rec"), promote="current").version_id


def _manifest_path(version: str) -> Path:
    return Catalog("rec").version_dir(version) / "manifest.json"


def test_manifest_and_alias_are_written_with_schema_version(version: str) -> None:
    raw = json.loads(_manifest_path(version).read_text())
    assert raw["schema_version"] == SCHEMA_VERSION
    assert raw["documents"]["a.md"]["encoding"] == "utf-8"
    m = Catalog("rec").manifest(version)
    assert isinstance(m, IndexManifest) and m.counts.documents == 1
    alias = json.loads((Catalog("rec").aliases_dir / "current.json").read_text())
    assert alias["schema_version"] == SCHEMA_VERSION and alias["version"] == version


def test_old_files_without_schema_version_still_load(version: str) -> None:
    """Files written before schema_version existed have the version-1 shape and load."""
    path = _manifest_path(version)
    raw = json.loads(path.read_text())
    del raw["schema_version"], raw["counts"]["over_window"]
    for doc in raw["documents"].values():
        del doc["encoding"]
    path.write_text(json.dumps(raw))
    alias = Catalog("rec").aliases_dir / "current.json"
    alias.write_text(json.dumps({"version": version, "history": []}))
    m = Catalog("rec").manifest(version)
    assert m.schema_version == 1 and m.counts.over_window == 0
    assert m.documents["a.md"].encoding is None
    assert read_record(alias, AliasRecord).version == version
    hits = Retriever("rec").retrieve("rotate logs", k=1, mode="lexical")
    assert hits[0].version_id == version


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda m: m.update(schema_version=SCHEMA_VERSION + 1), "schema this genaiops does not"),
        (lambda m: m.pop("counts"), "counts: required key is missing"),
        (lambda m: m.update(surprise=1), "surprise: unknown key"),
        (lambda m: m.update(version_id="../../elsewhere"), "version_id"),
    ],
    ids=["newer-schema", "missing-key", "unknown-key", "bad-version-id"],
)
def test_wrong_manifest_is_one_clear_error(
    version: str,
    change,  # noqa: ANN001
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = _manifest_path(version)
    raw = json.loads(path.read_text())
    change(raw)
    path.write_text(json.dumps(raw))
    with pytest.raises(IndexingError, match=message) as e:
        Catalog("rec").manifest(version)
    assert str(path) in str(e.value)
    from genaiops.cli import main

    monkeypatch.setattr(sys, "argv", ["genaiops", "index", "show", "current", "-i", "rec"])
    with pytest.raises(SystemExit) as exit_:
        main()
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and "\n" not in err and "Traceback" not in err


def test_manifest_copied_under_another_id_is_refused(version: str) -> None:
    cat = Catalog("rec")
    other = "v-0000000000000000"
    import shutil

    shutil.copytree(cat.version_dir(version), cat.version_dir(other))
    with pytest.raises(IndexingError, match="manifest is for"):
        cat.manifest(other)
