from __future__ import annotations

import gzip
import random
from pathlib import Path

import pytest

from genaiops.errors import SpecError
from genaiops.tokens import count_tokens
from indexing import load_index_spec
from indexing.chunking import Chunker
from indexing.sources import Document, Quarantined, SourceFile, parse_file
from indexing.spec import ChunkerSpec, SourceSpec
from tests.conftest import SAMPLE_CORPUS


def parse(path: Path, fmt: str) -> list[Document | Quarantined]:
    f = SourceFile(0, path, path.name, fmt, "x")
    return list(parse_file(f, SourceSpec(path=str(path.parent))))


def test_html_keeps_main_content_and_drops_navigation() -> None:
    [doc] = parse(SAMPLE_CORPUS / "reference" / "configuration.html", "html")
    assert isinstance(doc, Document)
    assert doc.title in ("Configuration reference", "Lumen configuration reference")
    assert "token_env" in doc.text and "## The output table" in doc.text
    assert "Cookie settings" not in doc.text and "Home | Guides" not in doc.text


def test_pdf_text_is_extracted() -> None:
    [doc] = parse(SAMPLE_CORPUS / "guides" / "security.pdf", "pdf")
    assert isinstance(doc, Document) and "TLS 1.3" in doc.text


def test_html_without_content_is_quarantined(tmp_path: Path) -> None:
    p = tmp_path / "nav.html"
    p.write_text("<html><head><script>var x = 1;</script></head><body>  </body></html>")
    [q] = parse(p, "html")
    assert isinstance(q, Quarantined) and "no main content" in q.reason


def test_chunks_respect_token_size_and_offsets() -> None:
    text = "# Title\n\n" + "\n\n".join(
        f"## Section {i}\n\n" + " ".join(f"word{i}x{j}" for j in range(300)) for i in range(3)
    )
    doc = Document("d", "Title", text, "", "d.md", "markdown")
    chunks = Chunker(ChunkerSpec(size=64, overlap=8)).split(doc)
    assert len(chunks) > 6
    for c in chunks:
        assert count_tokens(c.text) <= 64
        assert text[c.start : c.end] == c.text
        assert c.headings[0] == "Title"
    assert {c.headings[-1] for c in chunks} >= {"Section 0", "Section 1", "Section 2"}
    assert len({c.hash for c in chunks}) == len(chunks)


def test_heading_inside_code_fence_is_not_a_section() -> None:
    text = "# Real\n\nIntro.\n\n```bash\n# not a heading\necho hi\n```\n\nMore text.\n"
    doc = Document("d", "t", text, "", "d.md", "markdown")
    chunks = Chunker(ChunkerSpec(size=256, overlap=0)).split(doc)
    assert [c.headings for c in chunks] == [["Real"]]


def test_invalid_spec_names_file_and_key(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text(
        f"name: x\nsources:\n  - path: {SAMPLE_CORPUS}\n    globb: '*.md'\n"
        "chunker: {size: 64, overlap: 100}\n"
    )
    with pytest.raises(SpecError) as e:
        load_index_spec(p)
    msg = str(e.value)
    assert str(p) in msg and "sources.0.globb" in msg and "unknown key" in msg
    assert "chunker" in msg and "overlap must be smaller" in msg


@pytest.mark.parametrize(
    "text, problem",
    [
        ("sources: []\n", "sources"),
        ("- just\n- a list\n", "expected a mapping"),
        ("sources: [{path: /definitely/not/here}]\n", "does not exist"),
        ("name: [unclosed\n", "invalid YAML"),
        ("env: [NO_SUCH_VAR_DIR]\nsources: [{path: '${NO_SUCH_VAR_DIR}'}]\n", "NO_SUCH_VAR_DIR"),
        ("sources: [{path: '${NO_SUCH_VAR_XYZ}'}]\n", r"NO_SUCH_VAR_XYZ\} is not listed under env"),
        ("env: [API_KEY]\nsources: [{path: x}]\n", "env: 'API_KEY' cannot be read"),
    ],
)
def test_spec_errors(tmp_path: Path, text: str, problem: str) -> None:
    p = tmp_path / "s.yaml"
    p.write_text(text)
    with pytest.raises(SpecError, match=problem):
        load_index_spec(p)


def test_env_default_in_spec_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_CORPUS", str(SAMPLE_CORPUS))
    p = tmp_path / "s.yaml"
    p.write_text("env: [MY_CORPUS]\nsources: [{path: '${MY_CORPUS}/guides'}]\n")
    spec = load_index_spec(p)
    assert spec.source_root(spec.sources[0]) == (SAMPLE_CORPUS / "guides").resolve()


# -- encodings: detect the charset, quarantine only what no encoding fits ----------------------

LATIN1_TEXT = "Café notes: naïve résumé, über groß. Lumen ships events from the kiosk.\n"
CP1252_TEXT = "“Smart quotes” cost €5 — Lumen’s price list, façade included.\n"
CP1251_TEXT = "Привет! Lumen отправляет журналы событий на сервер каждые пять секунд.\n"


@pytest.mark.parametrize(
    "text, codec, expected",
    [
        (LATIN1_TEXT, "latin-1", {"cp1252", "iso8859-1"}),
        (CP1252_TEXT, "cp1252", {"cp1252"}),
        (CP1251_TEXT, "cp1251", {"cp1251"}),
        (CP1252_TEXT, "utf-8", {"utf-8"}),
    ],
    ids=["latin-1", "cp1252", "cp1251", "utf-8"],
)
def test_legacy_encodings_are_decoded_and_recorded(
    tmp_path: Path, text: str, codec: str, expected: set[str]
) -> None:
    p = tmp_path / "legacy.txt"
    p.write_bytes(text.encode(codec))
    [doc] = parse(p, "text")
    assert isinstance(doc, Document), doc
    assert doc.text == text and doc.encoding in expected


@pytest.mark.parametrize(
    "data, reason",
    [
        (random.Random(1).randbytes(4096), "binary"),
        (bytes(b | 0x80 for b in random.Random(2).randbytes(4096)), "bad encoding"),
        ((SAMPLE_CORPUS / "broken" / "image.png").read_bytes(), "binary"),
        (gzip.compress(b"lumen ships logs " * 200), "binary"),
    ],
    ids=["random-bytes", "high-bytes-no-nul", "png-as-txt", "gzip-as-txt"],
)
def test_binary_garbage_is_still_quarantined(tmp_path: Path, data: bytes, reason: str) -> None:
    p = tmp_path / "garbage.txt"
    p.write_bytes(data)
    [q] = parse(p, "text")
    assert isinstance(q, Quarantined) and reason in q.reason, q
