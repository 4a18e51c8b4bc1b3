"""Apply a safety policy to prompts, supplied documents and completions (streamed or not).

* Prompt: every message the client sends is checked for the four harm categories, PII and the
  blocklist, in every text slot (:mod:`gateway.safety.content`: string content, each part of
  list content, ``name``, tool-call arguments).  ``user``, ``assistant`` (client-written turns
  carry many-shot jailbreaks), ``system`` and ``developer`` (whoever holds a key writes them) are
  also checked for jailbreak; ``tool``/``function`` messages and the genaiops ``documents``
  extension for indirect attacks.  Blocked → :class:`~gateway.errors.ContentFiltered` (400, Azure
  ``innererror`` shape); PII with ``pii: redact`` is replaced by ``[EMAIL]``, ``[PHONE]``… in
  every slot before the model sees it.
* Completion: the content (string or parts) and the tool-call / function-call arguments are
  checked; blocked → ``finish_reason: "content_filter"`` and the text and tool calls withheld.
* Streams: :class:`StreamFilter` releases text in windows only after the whole text so far passed,
  holding back a tail so a pattern split across windows is still caught.
* Detector failure: fail closed (503 for prompts, ``content_filter`` for completions) unless the
  policy says ``fail_open``, which passes the text with an ``error`` annotation.
* Traces: each prompt check is a ``gateway.safety.input`` span, each completion (or stream
  window) check a ``gateway.safety.output`` span, with ``genaiops.safety.blocked``.

    >>> engine = SafetyEngine(SafetyConfig())                            # doctest: +SKIP
    >>> msgs, notes = await engine.check_input(messages, [], "default")  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import copy
from dataclasses import dataclass, field
from typing import Any

from gateway.config import SafetyConfig, SafetyPolicy
from gateway.errors import ContentFiltered, DetectorFailed, SafetyUnavailable
from gateway.safety.azure import AzureContentSafetyDetector
from gateway.safety.content import joined_text, redact, redact_slots, text_slots
from gateway.safety.detectors import (
    CATEGORIES,
    Analysis,
    Detector,
    OfflineDetector,
    PIISpan,
    Role,
    detector_factories,
)
from genaiops import tracing

__all__ = [
    "DetectorFailed",
    "InputCheck",
    "OutputVerdict",
    "SafetyEngine",
    "StreamFilter",
    "merge_results",
    "redact",
]


def _level(sev: int) -> str:
    return "safe" if sev < 2 else "low" if sev < 4 else "medium" if sev < 6 else "high"


# what each message role is checked for besides harm categories, PII and the blocklist
ATTACK_CHECK: dict[str, Role] = {
    "user": "prompt",
    "assistant": "prompt",
    "system": "prompt",
    "developer": "prompt",
    "tool": "document",
    "function": "document",
}


@dataclass
class InputCheck:
    """What :meth:`SafetyEngine.check_request` lets through: the messages and documents (PII
    redacted when ``redacted``) and the ``prompt_filter_results`` annotations."""

    messages: list[dict[str, Any]]
    notes: list[dict[str, Any]]
    documents: list[str]
    redacted: bool = False


@dataclass
class OutputVerdict:
    blocked: bool
    text: str
    results: dict[str, Any] = field(default_factory=dict)
    redacted: list[PIISpan] = field(default_factory=list)  # spans replaced in ``text``


class SafetyEngine:
    """Runs the configured detectors and applies a named policy."""

    def __init__(self, config: SafetyConfig, detectors: list[Detector] | None = None):
        self.config = config
        if detectors is None:
            detectors = []
            for name in config.detectors:
                if name == "azure":
                    detectors.append(AzureContentSafetyDetector.from_config(config))
                else:
                    detectors.append(detector_factories()[name]())
        self.detectors = detectors
        self._blocklists = {
            name: OfflineDetector(p.blocklist) for name, p in config.policies.items() if p.blocklist
        }

    def policy(self, name: str | None) -> SafetyPolicy:
        return self.config.policies.get(
            name or "", self.config.policies[self.config.default_policy]
        )

    async def analyze(self, text: str, role: Role, policy: SafetyPolicy) -> Analysis:
        result: Analysis | None = None
        for det in self.detectors:
            try:
                over = getattr(det, "blocking_io_over", None)  # long texts off the loop
                if getattr(det, "blocking_io", False) or (over is not None and len(text) > over):
                    a = await asyncio.to_thread(det.analyze, text, role)
                else:
                    a = det.analyze(text, role)
            except DetectorFailed:
                raise
            except (OSError, ValueError, RuntimeError) as e:
                raise DetectorFailed(f"{det.name}: {e}") from e
            result = a if result is None else result.merge(a)
        if result is None:
            result = Analysis(source="none")
        pol_name = next((n for n, p in self.config.policies.items() if p is policy), None)
        if pol_name in self._blocklists:
            extra = self._blocklists[pol_name].analyze(text, "completion")
            result.blocklist = sorted(set(result.blocklist) | set(extra.blocklist))
        return result

    def _results(
        self, a: Analysis, policy: SafetyPolicy, *, attack_key: str | None
    ) -> tuple[dict[str, Any], bool]:
        res: dict[str, Any] = {}
        blocked = False
        for cat in CATEGORIES:
            sev = a.severities.get(cat, 0)
            hit = sev >= policy.thresholds.get(cat, 8)  # type: ignore[call-overload]
            res[cat] = {"filtered": hit, "severity": _level(sev)}
            blocked |= hit
        if attack_key:
            enabled = policy.jailbreak if attack_key == "jailbreak" else policy.indirect_attack
            res[attack_key] = {"filtered": a.attack and enabled, "detected": a.attack}
            blocked |= a.attack and enabled
        if policy.blocklist or a.blocklist:
            res["custom_blocklists"] = {
                "filtered": bool(a.blocklist),
                "details": [{"filtered": True, "id": t} for t in a.blocklist],
            }
            blocked |= bool(a.blocklist)
        pii = [p for p in a.pii if p.type in policy.pii_types] if policy.pii != "off" else []
        if pii:
            res["pii"] = {
                "filtered": policy.pii == "block",
                "redacted": policy.pii == "redact",
                "detected": sorted({p.type for p in pii}),
            }
            blocked |= policy.pii == "block"
        return res, blocked

    async def check_input(
        self, messages: list[dict[str, Any]], documents: list[str], policy_name: str | None
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Returns (messages, possibly redacted; ``prompt_filter_results``) or raises 400/503."""
        checked = await self.check_request(messages, documents, policy_name)
        return checked.messages, checked.notes

    async def check_request(
        self, messages: list[dict[str, Any]], documents: list[str], policy_name: str | None
    ) -> InputCheck:
        """:meth:`check_input`, also returning the documents with their PII redacted (they are
        never sent upstream, but a captured request stores them)."""
        attrs: dict[str, tracing.AttributeValue] = {
            "genaiops.safety.policy": policy_name or "",
            "genaiops.documents": len(documents),
        }
        with tracing.span("gateway.safety.input", attrs) as sp:
            try:
                checked = await self._check_request(messages, documents, policy_name)
            except ContentFiltered:
                sp.set_attribute("genaiops.safety.blocked", True)
                raise
            sp.set_attribute("genaiops.safety.blocked", False)
            return checked

    async def _check_request(
        self, messages: list[dict[str, Any]], documents: list[str], policy_name: str | None
    ) -> InputCheck:
        policy = self.policy(policy_name)
        out = copy.deepcopy(messages)
        docs = list(documents)
        merged: dict[str, Any] = {}
        try:
            for i, m in enumerate(out):
                slots = text_slots(m)
                if not slots:
                    continue
                kind = ATTACK_CHECK.get(str(m.get("role")), "prompt")
                a = await self.analyze(joined_text(slots), kind, policy)
                key = "jailbreak" if kind == "prompt" else "indirect_attack"
                res, blocked = self._results(a, policy, attack_key=key)
                merge_results(merged, res)
                if blocked:
                    raise ContentFiltered(
                        "The prompt was filtered by the content policy "
                        f"({', '.join(_reasons(res))}) in messages[{i}] ({m.get('role')}).",
                        result=merged,
                    )
                if policy.pii == "redact" and a.pii:
                    redact_slots(slots, [p for p in a.pii if p.type in policy.pii_types])
            for j, doc in enumerate(documents):
                a = await self.analyze(doc, "document", policy)
                res, blocked = self._results(a, policy, attack_key="indirect_attack")
                merge_results(merged, res)
                if blocked:
                    raise ContentFiltered(
                        "A supplied document was filtered by the content policy "
                        f"({', '.join(_reasons(res))}) in documents[{j}].",
                        result=merged,
                        param="documents",
                    )
                if policy.pii == "redact" and a.pii:
                    docs[j] = redact(doc, [p for p in a.pii if p.type in policy.pii_types])
        except DetectorFailed as e:
            if not policy.fail_open:
                raise SafetyUnavailable(
                    "the content filter is unavailable and the policy fails closed"
                ) from e
            merged["error"] = {"code": "content_filter_error", "message": "filter unavailable"}
        notes = [{"prompt_index": 0, "content_filter_results": merged}]
        return InputCheck(out, notes, docs, redacted=policy.pii == "redact")

    async def redact_text(self, text: str, policy_name: str | None) -> str:
        """``text`` with the PII the policy names replaced (feedback comments); unchanged when
        the policy does not redact.  Never blocks."""
        policy = self.policy(policy_name)
        if policy.pii == "off" or not text:
            return text
        a = await self.analyze(text, "prompt", policy)
        return redact(text, [p for p in a.pii if p.type in policy.pii_types])

    async def check_completion(
        self, message: dict[str, Any], policy_name: str | None
    ) -> tuple[dict[str, Any], OutputVerdict]:
        """Judge a completion's whole message: content (string or parts) and tool-call /
        function-call arguments together.  Returns the message to send (redacted, or with text
        and tool calls withheld when blocked) and the verdict."""
        out = copy.deepcopy(message)
        slots = [s for s in text_slots(out) if s.key != "name"]
        verdict = await self.check_output(joined_text(slots), policy_name)
        if verdict.blocked:
            out["content"] = ""
            out.pop("tool_calls", None)
            out.pop("function_call", None)
        elif verdict.redacted:
            redact_slots(slots, verdict.redacted)
        return out, verdict

    async def check_output(self, text: str, policy_name: str | None) -> OutputVerdict:
        with tracing.span(
            "gateway.safety.output", {"genaiops.safety.policy": policy_name or ""}
        ) as sp:
            verdict = await self._check_output(text, policy_name)
            sp.set_attribute("genaiops.safety.blocked", verdict.blocked)
            return verdict

    async def _check_output(self, text: str, policy_name: str | None) -> OutputVerdict:
        policy = self.policy(policy_name)
        if not policy.check_output:
            return OutputVerdict(False, text, {})
        try:
            a = await self.analyze(text, "completion", policy)
        except DetectorFailed:
            if policy.fail_open:
                err = {"error": {"code": "content_filter_error", "message": "filter unavailable"}}
                return OutputVerdict(False, text, err)
            return OutputVerdict(
                True, "", {"error": {"code": "content_filter_error", "message": "fail closed"}}
            )
        res, blocked = self._results(a, policy, attack_key=None)
        if blocked:
            return OutputVerdict(True, "", res)
        spans = [p for p in a.pii if p.type in policy.pii_types] if policy.pii == "redact" else []
        return OutputVerdict(False, redact(text, spans) if spans else text, res, spans)


class StreamFilter:
    """Buffer streamed text; release a window only after everything so far passed the filter.

    ``feed`` returns the text that may be sent now; ``finish`` the rest.  Either returns ``None``
    when the completion is blocked (nothing after the last released window is sent).
    """

    def __init__(
        self,
        engine: SafetyEngine,
        policy: str | None,
        window: int,
        holdback: int = 48,
        context: int = 200,
    ):
        self.engine = engine
        self.policy = policy
        self.window = window
        self.holdback = holdback
        self.context = context  # raw released characters re-checked with each window
        self.released = ""  # text already sent (after redaction)
        self.released_raw = ""  # its raw tail (phrases can span a window boundary)
        self.pending = ""  # raw text not yet sent
        self.results: dict[str, Any] = {}
        self.blocked = False

    async def _check(self, final: bool) -> str | None:
        # judge the new text together with the tail already sent, so a phrase split across the
        # boundary ("how to make" | "a pipe bomb") is still recognised and stops the rest
        tail = self.released_raw[-self.context :]
        verdict = await self.engine.check_output(tail + self.pending, self.policy)
        merge_results(self.results, verdict.results)
        if verdict.blocked:
            self.blocked = True
            return None
        spans = [
            PIISpan(p.type, p.start - len(tail), p.end - len(tail))
            for p in verdict.redacted
            if p.start >= len(tail)
        ]
        if final:
            cut = len(self.pending)
        else:
            # hold back a tail of the raw text, and never cut inside a word, a number or
            # something being redacted (half an e-mail address must not leak)
            cut = _safe_cut(self.pending, max(0, len(self.pending) - self.holdback))
            if cut == 0 and len(self.pending) > 8 * (self.window + self.holdback):
                cut = len(self.pending) - self.holdback  # one endless "word": do not wait forever
            for span in spans:
                if span.start < cut < span.end:
                    cut = span.start
        out = redact(self.pending[:cut], [p for p in spans if p.end <= cut])
        self.released_raw = (self.released_raw + self.pending[:cut])[-self.context :]
        self.pending = self.pending[cut:]
        self.released += out
        return out

    async def feed(self, delta: str) -> str | None:
        if self.blocked:
            return None
        self.pending += delta
        if len(self.pending) < self.window + self.holdback:
            return ""
        return await self._check(final=False)

    async def finish(self) -> str | None:
        if self.blocked:
            return None
        if not self.pending:
            return ""
        return await self._check(final=True)


def _safe_cut(text: str, cut: int) -> int:
    """Move a release point back so it never splits a word or a spaced group of digits:
    an e-mail address, key or card number is only recognisable once it is complete."""
    while cut > 0 and not text[cut - 1].isspace():
        cut -= 1
    # "4111 1111 1111 1111", "+1 415-555-0100": digit groups joined by one space or dash
    while (
        cut >= 2
        and text[cut - 1] in " -"
        and text[cut - 2].isdigit()
        and (cut < len(text) and text[cut].isdigit())
    ):
        cut -= 1
        while cut > 0 and not text[cut - 1].isspace():
            cut -= 1
    return cut


def merge_results(into: dict[str, Any], res: dict[str, Any]) -> None:
    """Fold one verdict's ``content_filter_results`` into ``into`` (worst severity wins)."""
    order = ["safe", "low", "medium", "high"]
    for k, v in res.items():
        cur = into.get(k)
        if cur is None:
            into[k] = dict(v)
            continue
        cur["filtered"] = cur.get("filtered", False) or v.get("filtered", False)
        if "severity" in v and order.index(v["severity"]) > order.index(cur["severity"]):
            cur["severity"] = v["severity"]
        if "detected" in v:
            d = v["detected"]
            cur["detected"] = (
                sorted(set(cur["detected"]) | set(d))
                if isinstance(d, list)
                else cur["detected"] or d
            )
        if "details" in v:
            cur["details"] = cur.get("details", []) + v["details"]


def _reasons(res: dict[str, Any]) -> list[str]:
    return [k for k, v in res.items() if isinstance(v, dict) and v.get("filtered")]
