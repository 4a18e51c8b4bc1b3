"""The gateway stand-in for tests where the gateway is not the thing under test (the seam is
HTTP): the suite's one fake upstream (:class:`gateway.testing.MockUpstream`) on a loopback port,
answering chat completions by echoing the first context line of the prompt (a "grounded" answer)
unless the prompt contains ``NO-CONTEXT``, then it answers from nowhere. Usage::

    with FakeOpenAI() as url:   # url = http://127.0.0.1:PORT/v1
        ...
"""

from __future__ import annotations

import contextlib
import re
from typing import Any

from gateway.testing import MockUpstream

__all__ = ["FakeOpenAI", "grounded_answer"]


def grounded_answer(messages: list[dict[str, Any]]) -> str:
    """A judge's score for judge prompts, else the first ``[doc_id] text`` line of the prompt."""
    text = "\n".join(str(m.get("content", "")) for m in messages)
    if "Score: <1-5>" in text:
        return "Score: 4\nReason: fake judge."
    if "NO-CONTEXT" in text:
        return "The moon is made of cheese and bananas."
    for line in text.splitlines():
        m = re.match(r"^\[([^\]]+)\]\s+(.+)$", line.strip())
        if m:
            return f"{m.group(2)[:160]} [{m.group(1)}]"
    lines = [ln.strip() for ln in text.splitlines() if len(ln.strip()) > 40]
    return lines[1][:160] if len(lines) > 1 else "I do not know."


class FakeOpenAI:
    """A served :class:`MockUpstream` with :func:`grounded_answer`; ``upstream`` is the
    MockUpstream itself (inject failures with ``upstream.fail`` / ``upstream.retry_after``)."""

    def __init__(self, **kw: Any) -> None:
        self.upstream = MockUpstream(answer=grounded_answer, prompt_tokens=50, **kw)
        self._stack = contextlib.ExitStack()
        self.url = ""

    @property
    def requests(self) -> list[dict[str, Any]]:
        return self.upstream.requests

    def __enter__(self) -> str:
        self.url = self._stack.enter_context(self.upstream.serve())
        return self.url

    def __exit__(self, *exc: Any) -> None:
        self._stack.close()
