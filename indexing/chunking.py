"""Token-based, header-aware chunking with langchain-text-splitters.

Markdown (and HTML, which the parser turns into Markdown) is first cut at ``#`` headings so a
chunk never spans two sections and carries its heading path; each section is then split
recursively by the project token counter.  Offsets are character offsets into the document text.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass

from langchain_text_splitters import RecursiveCharacterTextSplitter

from genaiops.tokens import count_tokens
from indexing.sources import Document
from indexing.spec import ChunkerSpec

__all__ = ["Chunk", "Chunker"]

HEADING_RE = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$", re.MULTILINE)
FENCE_RE = re.compile(r"^(```|~~~)", re.MULTILINE)


@dataclass
class Chunk:
    """A piece of a document with its offsets and heading path (provenance for citations);
    ``hash`` of the embedded text keys the embedding cache."""

    chunk_id: str
    doc_id: str
    title: str
    url: str
    source: str
    headings: list[str]
    start: int
    end: int
    text: str
    hash: str = ""

    def embed_text(self) -> str:
        """What gets embedded: title and heading path give the chunk its context."""
        head = " > ".join(h for h in [self.title, *self.headings] if h)
        return f"{head}\n{self.text}" if head else self.text

    def __post_init__(self) -> None:
        if not self.hash:
            self.hash = hashlib.sha256(self.embed_text().encode()).hexdigest()

    def to_dict(self) -> dict[str, object]:
        """Plain fields, for JSON output."""
        return asdict(self)


def _sections(text: str) -> list[tuple[int, int, list[str]]]:
    """(start, end, heading path) for each Markdown section, ignoring '#' inside code fences."""
    fences = [m.start() for m in FENCE_RE.finditer(text)]

    def in_fence(pos: int) -> bool:
        return sum(1 for f in fences if f < pos) % 2 == 1

    marks = [
        (m.start(), len(m.group(1)), m.group(2).strip())
        for m in HEADING_RE.finditer(text)
        if not in_fence(m.start())
    ]
    out: list[tuple[int, int, list[str]]] = []
    path: list[tuple[int, str]] = []
    prev_start, prev_path = 0, list[tuple[int, str]]()
    for pos, level, title in marks:
        if pos > prev_start:
            out.append((prev_start, pos, [t for _, t in prev_path]))
        path = [p for p in path if p[0] < level] + [(level, title)]
        prev_start, prev_path = pos, list(path)
    out.append((prev_start, len(text), [t for _, t in prev_path]))
    return out


class Chunker:
    """Split documents into chunks of at most ``size`` tokens with ``overlap`` tokens overlap."""

    def __init__(self, spec: ChunkerSpec):
        self.spec = spec
        self._splitter = RecursiveCharacterTextSplitter(
            chunk_size=spec.size,
            chunk_overlap=spec.overlap,
            length_function=count_tokens,
            separators=["\n\n", "\n", ". ", " ", ""],
        )

    def split(self, doc: Document) -> list[Chunk]:
        """Chunks of at most ``size`` tokens, within one Markdown section each when header-aware
        (so a chunk's heading path is true), with offsets into ``doc.text``."""
        header_aware = self.spec.header_aware and doc.format in ("markdown", "html")
        sections = _sections(doc.text) if header_aware else [(0, len(doc.text), [])]
        chunks: list[Chunk] = []
        for sec_start, sec_end, headings in sections:
            body = doc.text[sec_start:sec_end]
            if not body.strip():
                continue
            cursor = 0
            for text in self._splitter.split_text(body):
                if not text.strip():
                    continue
                # each chunk starts after the previous one's start; find() makes the offsets
                # exact (text[start:end] == chunk), which the splitter's own start_index is not
                pos = body.find(text, cursor)
                if pos < 0:
                    pos = body.find(text)
                if pos < 0:  # not a verbatim substring (cannot happen with this splitter)
                    pos = cursor
                cursor = pos + 1
                start = sec_start + pos
                chunks.append(
                    Chunk(
                        chunk_id=f"{doc.doc_id}#{len(chunks)}",
                        doc_id=doc.doc_id,
                        title=doc.title,
                        url=doc.url,
                        source=doc.source,
                        headings=headings,
                        start=start,
                        end=start + len(text),
                        text=text,
                    )
                )
        return chunks
