"""Find and parse source documents. A document that cannot be parsed is quarantined, not fatal.

Formats: Markdown, plain text, HTML (main content via trafilatura, kept as Markdown so headings
survive), PDF (pypdf) and JSONL records (one document per line, configurable fields).

Text is UTF-8 when it decodes as UTF-8; otherwise ``charset-normalizer`` detects the encoding
(Latin-1, cp1252, cp1251, ...) and the document records which one was used.  When the detector
finds Windows-1252 as plausible as its first pick, cp1252 wins: short Western texts give it too
little to tell cp1252 from cp1250 or Mac encodings, and cp1252 is what browsers assume for
legacy text (WHATWG).  Only bytes no encoding fits (and NUL bytes) are quarantined.  JSONL stays
UTF-8 per line (RFC 8259).  Files larger than the spec's ``max_file_size`` are quarantined
unread, so one huge or endless file cannot exhaust memory.
"""

from __future__ import annotations

import codecs
import contextlib
import fnmatch
import hashlib
import io
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from genaiops.errors import SourceError
from indexing.spec import DEFAULT_MAX_FILE_SIZE, IndexSpec, SourceSpec

__all__ = [
    "Document",
    "Quarantined",
    "SourceFile",
    "decode_text",
    "discover",
    "parse_file",
    "read_capped",
]

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
    """A file the spec selects, with the hash of its bytes (part of the version id)."""

    source_index: int
    path: Path
    rel: str  # posix path relative to the source root (stable across machines)
    format: str
    sha256: str


@dataclass
class Document:
    """One parsed document; ``content_hash`` decides whether a rebuild re-chunks it."""

    doc_id: str
    title: str
    text: str
    url: str
    source: str
    format: str
    content_hash: str = field(default="")
    encoding: str | None = None  # the text encoding decoded with (None for PDF)

    def __post_init__(self) -> None:
        if not self.content_hash:
            h = hashlib.sha256(f"{self.title}\x00{self.url}\x00{self.text}".encode())
            self.content_hash = h.hexdigest()


@dataclass(frozen=True)
class Quarantined:
    """A file or record left out of the build, with the reason the manifest records."""

    path: str
    reason: str


def _file_format(path: Path, source: SourceSpec) -> str | None:
    if source.format != "auto":
        return source.format
    return SUFFIX_FORMAT.get(path.suffix.lower())


def read_capped(path: Path, limit: int) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes, else :class:`SourceError`.

    Checked on the open file and while reading, so a file that grows, a FIFO or a device
    (``/dev/zero``) cannot make the build read without bound.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise SourceError(str(path), "not a regular file")
        if st.st_size > limit:
            raise SourceError(str(path), _too_large(st.st_size, limit))
        data = f.read(limit + 1)
    if len(data) > limit:
        raise SourceError(str(path), _too_large(len(data), limit))
    return data


def _too_large(size: int, limit: int) -> str:
    return f"too large: {size} bytes, more than max_file_size {limit} bytes"


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
                digest = hashlib.sha256(read_capped(path, spec.max_file_size)).hexdigest()
            except SourceError as e:
                skipped.append(Quarantined(e.path, e.reason))
                continue
            except OSError as e:
                skipped.append(Quarantined(str(path), f"unreadable: {e.strerror or e}"))
                continue
            files.append(SourceFile(i, path, rel, fmt, digest))
    return files, skipped


_UTF_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE, codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)
_PLAUSIBLE = 0.02  # chaos margin within which cp1252 counts as "as plausible" as the first pick


def decode_text(path: Path, data: bytes) -> tuple[str, str]:
    """``(text, encoding)`` of a text file's bytes; :class:`SourceError` if none fits."""
    if not data.strip():
        raise SourceError(str(path), "empty document")
    if b"\x00" in data[:8192] and not data.startswith(_UTF_BOMS):
        raise SourceError(str(path), "binary content (NUL bytes) in a text file")
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError as e:
        first_bad = e.start
    from charset_normalizer import from_bytes

    matches = list(from_bytes(data))
    if not matches:
        raise SourceError(
            str(path), f"bad encoding: not UTF-8 (byte {first_bad}) and no text encoding fits"
        )
    best = matches[0]
    for m in matches:
        if m.chaos <= best.chaos + _PLAUSIBLE and "cp1252" in m.could_be_from_charset:
            with contextlib.suppress(UnicodeDecodeError):
                return data.decode("cp1252"), "cp1252"
    return str(best), codecs.lookup(best.encoding).name


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
    max_bytes: int,
) -> Iterator[Document | Quarantined]:
    fields = source.jsonl
    try:
        data = read_capped(f.path, max_bytes)
    except SourceError as e:
        yield Quarantined(e.path, e.reason)
        return
    except OSError as e:
        yield Quarantined(str(f.path), f"unreadable: {e.strerror or e}")
        return
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
        yield Document(str(doc_id), title, text, url, f"{f.rel}:{n}", "jsonl", encoding="utf-8")


def parse_file(
    f: SourceFile, source: SourceSpec, max_bytes: int = DEFAULT_MAX_FILE_SIZE
) -> Iterator[Document | Quarantined]:
    """Documents in one file; problems come back as :class:`Quarantined`, never raised."""
    if f.format == "jsonl":
        yield from _parse_jsonl(f, source, max_bytes)
        return
    try:
        data = read_capped(f.path, max_bytes)
        url = f.path.resolve().as_uri()
        if f.format == "pdf":
            text = _parse_pdf(f.path, data)
            yield Document(f.rel, f.path.stem, text, url, f.rel, "pdf")
            return
        raw, encoding = decode_text(f.path, data)
        if f.format == "html":
            title, text = _parse_html(f.path, raw)
        else:
            title, text = _markdown_title(raw, f.path.stem), raw
        if not text.strip():
            raise SourceError(str(f.path), "empty document")
        yield Document(f.rel, title, text, url, f.rel, f.format, encoding=encoding)
    except SourceError as e:
        yield Quarantined(e.path, e.reason)
    except OSError as e:
        yield Quarantined(str(f.path), f"unreadable: {e.strerror or e}")
