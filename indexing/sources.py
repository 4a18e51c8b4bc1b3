"""Find and parse source documents. A document that cannot be parsed is quarantined, not fatal.

Formats: Markdown, plain text, HTML (main content via trafilatura, kept as Markdown so headings
survive), PDF (pypdf) and JSONL records (one document per line, configurable fields).
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from genaiops.errors import SourceError
from indexing.spec import IndexSpec, SourceSpec

__all__ = ["Document", "Quarantined", "SourceFile", "discover", "parse_file"]

SUFFIX_FORMAT = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".txt": "text",
    ".rst": "text",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
    ".jsonl": "jsonl",
}


@dataclass(frozen=True)
class SourceFile:
    source_index: int
    path: Path
    rel: str  # posix path relative to the source root (stable across machines)
    format: str
    sha256: str


@dataclass
class Document:
    doc_id: str
    title: str
    text: str
    url: str
    source: str
    format: str
    content_hash: str = field(default="")

    def __post_init__(self) -> None:
        if not self.content_hash:
            h = hashlib.sha256(f"{self.title}\x00{self.url}\x00{self.text}".encode())
            self.content_hash = h.hexdigest()


@dataclass(frozen=True)
class Quarantined:
    path: str
    reason: str


def _file_format(path: Path, source: SourceSpec) -> str | None:
    if source.format != "auto":
        return source.format
    return SUFFIX_FORMAT.get(path.suffix.lower())


def discover(spec: IndexSpec) -> tuple[list[SourceFile], list[Quarantined]]:
    """All files the spec selects, sorted, with their raw-content hashes."""
    files: list[SourceFile] = []
    skipped: list[Quarantined] = []
    for i, source in enumerate(spec.sources):
        root = spec.source_root(source)
        if root.is_file():
            candidates = [(root, root.name)]
        else:
            candidates = [
                (p, p.relative_to(root).as_posix())
                for p in sorted(root.glob(source.glob))
                if p.is_file()
            ]
        for path, rel in candidates:
            if any(part.startswith(".") for part in Path(rel).parts):
                continue
            if any(fnmatch.fnmatch(rel, pat) for pat in source.exclude):
                continue
            fmt = _file_format(path, source)
            if fmt is None:
                skipped.append(Quarantined(str(path), f"unsupported file type {path.suffix!r}"))
                continue
            try:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
            except OSError as e:
                skipped.append(Quarantined(str(path), f"unreadable: {e.strerror or e}"))
                continue
            files.append(SourceFile(i, path, rel, fmt, digest))
    return files, skipped


def _decode(path: Path, data: bytes) -> str:
    if not data.strip():
        raise SourceError(str(path), "empty document")
    if b"\x00" in data[:8192]:
        raise SourceError(str(path), "binary content (NUL bytes) in a text file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise SourceError(str(path), f"bad encoding: not valid UTF-8 at byte {e.start}") from e


def _markdown_title(text: str, fallback: str) -> str:
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("#"):
            return s.lstrip("#").strip() or fallback
        if s:
            break
    return fallback


def _parse_html(path: Path, raw: str) -> tuple[str, str]:
    import trafilatura

    text = trafilatura.extract(
        raw,
        output_format="markdown",
        include_tables=True,
        include_comments=False,
        favor_recall=True,
    )
    if not text or not text.strip():
        raise SourceError(str(path), "no main content found in HTML")
    meta = trafilatura.extract_metadata(raw)
    title = (meta.title if meta and meta.title else "") or _markdown_title(text, path.stem)
    return title, text


def _parse_pdf(path: Path, data: bytes) -> str:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    if not data.strip():
        raise SourceError(str(path), "empty document")
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            raise SourceError(str(path), "encrypted PDF")
        pages = [(page.extract_text() or "") for page in reader.pages]
    except SourceError:
        raise
    except (
        PdfReadError,
        ValueError,
        KeyError,
        TypeError,
        AttributeError,
        IndexError,
        OSError,
        RecursionError,
    ) as e:
        raise SourceError(str(path), f"corrupt or truncated PDF: {e}") from e
    text = "\n\n".join(p.strip() for p in pages if p.strip())
    if not text.strip():
        raise SourceError(str(path), "PDF has no extractable text")
    return text


def _parse_jsonl(
    f: SourceFile,
    source: SourceSpec,
) -> Iterator[Document | Quarantined]:
    fields = source.jsonl
    data = f.path.read_bytes()
    if not data.strip():
        yield Quarantined(str(f.path), "empty document")
        return
    for n, line in enumerate(data.splitlines(), start=1):
        where = f"{f.path}:{n}"
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            yield Quarantined(where, f"invalid JSON line: {e}")
            continue
        if not isinstance(rec, dict):
            yield Quarantined(where, "JSON line is not an object")
            continue
        doc_id, text = rec.get(fields.id), rec.get(fields.text)
        if doc_id is None or str(doc_id) == "":
            yield Quarantined(where, f"missing id field {fields.id!r}")
            continue
        if not isinstance(text, str) or not text.strip():
            yield Quarantined(where, f"missing or empty text field {fields.text!r}")
            continue
        title = str(rec.get(fields.title) or "") if fields.title else ""
        url = str(rec.get(fields.url) or "") if fields.url else ""
        yield Document(str(doc_id), title, text, url, f"{f.rel}:{n}", "jsonl")


def parse_file(f: SourceFile, source: SourceSpec) -> Iterator[Document | Quarantined]:
    """Documents in one file; problems come back as :class:`Quarantined`, never raised."""
    if f.format == "jsonl":
        yield from _parse_jsonl(f, source)
        return
    try:
        data = f.path.read_bytes()
        url = f.path.resolve().as_uri()
        if f.format == "pdf":
            text = _parse_pdf(f.path, data)
            yield Document(f.rel, f.path.stem, text, url, f.rel, "pdf")
            return
        raw = _decode(f.path, data)
        if f.format == "html":
            title, text = _parse_html(f.path, raw)
        else:
            title, text = _markdown_title(raw, f.path.stem), raw
        if not text.strip():
            raise SourceError(str(f.path), "empty document")
        yield Document(f.rel, title, text, url, f.rel, f.format)
    except SourceError as e:
        yield Quarantined(e.path, e.reason)
    except OSError as e:
        yield Quarantined(str(f.path), f"unreadable: {e.strerror or e}")
