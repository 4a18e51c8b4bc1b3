"""Which text of a chat message the safety policy reads, and how to write redactions back.

A message's ``content`` is a string or a list of parts (``[{"type": "text", "text": ...}]``, as
the ``openai`` SDK sends for multimodal input and many clients always).  Every string a model
could read is a *slot*: the string content, every string inside every part except the few keys
that carry binary payloads or identifiers (an image URL, base64 audio or file data, a file id,
``detail``/``format``), the ``name`` field, and the ``arguments`` of ``tool_calls`` and the
legacy ``function_call``.  Unknown part types are read the same way, so a new or misspelt part
type cannot smuggle text past the filter.

The slots of one message are judged together (joined by a space, so a phrase split across
parts is still one phrase); PII spans found in the joined text are mapped back to the slots.

    >>> msg = {"role": "user", "content": [{"type": "text", "text": "hi"}]}
    >>> joined_text(text_slots(msg))
    'hi'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.safety.detectors import PIISpan

__all__ = ["Slot", "joined_text", "redact", "redact_slots", "text_slots"]

# keys inside content parts that hold binary payloads, references or enum values, not text
NON_TEXT_KEYS = frozenset({"type", "url", "data", "file_data", "file_id", "detail", "format", "id"})


def redact(text: str, spans: list[PIISpan]) -> str:
    """Replace PII spans (merged when they overlap) by ``[TYPE]`` placeholders."""
    out, pos = [], 0
    for s in sorted(spans, key=lambda s: (s.start, -s.end)):
        if s.start < pos:
            continue
        out.append(text[pos : s.start])
        out.append(f"[{s.type.upper()}]")
        pos = s.end
    out.append(text[pos:])
    return "".join(out)


@dataclass
class Slot:
    """One string of a message: ``holder[key]``; ``redactable`` is False for ``name`` (the
    upstream restricts its characters, so it is judged but never rewritten)."""

    holder: Any
    key: Any
    redactable: bool = True

    @property
    def text(self) -> str:
        return str(self.holder[self.key])


def _leaves(value: Any, out: list[Slot]) -> None:
    items: Any
    if isinstance(value, dict):
        items = ((k, v) for k, v in value.items() if k not in NON_TEXT_KEYS)
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return
    for k, v in items:
        if isinstance(v, str):
            if v:
                out.append(Slot(value, k))
        else:
            _leaves(v, out)


def text_slots(message: dict[str, Any]) -> list[Slot]:
    """Every string of ``message`` a model could read (see the module docstring)."""
    out: list[Slot] = []
    content = message.get("content")
    if isinstance(content, str):
        if content:
            out.append(Slot(message, "content"))
    elif isinstance(content, list):
        _leaves(content, out)
    if isinstance(message.get("name"), str) and message["name"]:
        out.append(Slot(message, "name", redactable=False))
    calls = message.get("tool_calls")
    for call in calls if isinstance(calls, list) else []:
        fn = call.get("function") if isinstance(call, dict) else None
        if isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
            out.append(Slot(fn, "arguments"))
    fc = message.get("function_call")
    if isinstance(fc, dict) and isinstance(fc.get("arguments"), str):
        out.append(Slot(fc, "arguments"))
    return out


def joined_text(slots: list[Slot]) -> str:
    return " ".join(s.text for s in slots)


def redact_slots(slots: list[Slot], spans: list[PIISpan]) -> None:
    """Write ``[TYPE]`` placeholders for ``spans`` (offsets in :func:`joined_text`) into the
    slots they fall in; a span crossing a slot boundary is clipped to each slot."""
    pos = 0
    for s in slots:
        text = s.text
        end = pos + len(text)
        local = [
            PIISpan(p.type, max(p.start, pos) - pos, min(p.end, end) - pos)
            for p in spans
            if p.start < end and p.end > pos
        ]
        if local and s.redactable:
            s.holder[s.key] = redact(text, local)
        pos = end + 1  # the joining space
