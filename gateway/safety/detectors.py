"""Pluggable content detectors and the offline default.

A detector looks at one text and returns an :class:`Analysis`: severities 0–7 for hate, sexual,
violence and self_harm (Azure AI Content Safety scale), prompt-attack flags, PII spans and
blocklist hits.  The policy (``gateway.safety.engine``) decides what to block or redact.

:class:`OfflineDetector` uses curated lexicons and regular expressions: fast, deterministic, no
network; a trained classifier (the training-jobs issue) plugs in through :func:`register_detector`
with the same :class:`Detector` protocol.

    >>> OfflineDetector().analyze("mail me at a@b.io", "prompt").pii[0].type
    'email'
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Literal, Protocol, runtime_checkable

__all__ = [
    "CATEGORIES",
    "Analysis",
    "Detector",
    "OfflineDetector",
    "PIISpan",
    "detector_factories",
    "register_detector",
]

CATEGORIES = ("hate", "sexual", "violence", "self_harm")
Role = Literal["prompt", "document", "completion"]


@dataclass(frozen=True)
class PIISpan:
    type: str
    start: int
    end: int


@dataclass
class Analysis:
    severities: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CATEGORIES, 0))
    attack: bool = False  # jailbreak (prompt) or indirect attack (document)
    pii: list[PIISpan] = field(default_factory=list)
    blocklist: list[str] = field(default_factory=list)
    source: str = "offline"

    def merge(self, other: Analysis) -> Analysis:
        return Analysis(
            severities={
                c: max(self.severities.get(c, 0), other.severities.get(c, 0)) for c in CATEGORIES
            },
            attack=self.attack or other.attack,
            pii=self.pii + [p for p in other.pii if p not in self.pii],
            blocklist=sorted(set(self.blocklist) | set(other.blocklist)),
            source=f"{self.source}+{other.source}",
        )


@runtime_checkable
class Detector(Protocol):
    name: str

    def analyze(self, text: str, role: Role) -> Analysis: ...


# -- offline lexicons (severity on the 0-7 scale; word-boundary, case-insensitive) ----------
_LEXICON: dict[str, list[tuple[int, str]]] = {
    "hate": [
        (
            6,
            r"(?:exterminate|wipe out|gas) (?:all )?(?:the )?(?:jews|muslims|christians|blacks"
            r"|whites|gays|immigrants|refugees)",
        ),
        (
            6,
            r"(?:jews|muslims|blacks|gays|immigrants|women) (?:are|were) (?:vermin|subhuman"
            r"|animals|parasites|a disease)",
        ),
        (4, r"\b(?:subhuman|untermensch|racial purity|white power|ethnic cleansing)\b"),
        (2, r"\b(?:i hate|go back to your country)\b"),
    ],
    "sexual": [
        (7, r"\b(?:child|minor|underage)\b.{0,40}\b(?:sex|sexual|nude|porn)"),
        (6, r"\b(?:explicit sex|hardcore porn|graphic sex(?:ual)? scene)"),
        (4, r"\b(?:porn(?:ography)?|nude photos?|erotic (?:story|roleplay))\b"),
    ],
    "violence": [
        (
            6,
            r"\b(?:how (?:do i|to|can i) (?:make|build) (?:a )?(?:bomb|pipe bomb|explosive"
            r"|nerve agent|bioweapon|ghost gun))",
        ),
        (6, r"\b(?:kill|murder|shoot|stab|behead) (?:him|her|them|everyone|my \w+|the \w+)\b"),
        (4, r"\b(?:mass shooting|massacre|torture (?:him|her|them)|school shooting)\b"),
        (2, r"\b(?:punch (?:him|her|them)|beat (?:him|her|them) up)\b"),
    ],
    "self_harm": [
        (
            6,
            r"\b(?:how (?:do i|to|can i) (?:kill myself|commit suicide|end my life"
            r"|overdose))",
        ),
        (4, r"\b(?:i want to die|i want to kill myself|cut myself|suicide method)"),
        (2, r"\b(?:self[- ]harm|suicidal)\b"),
    ],
}

_JAILBREAK = [
    r"ignore (?:all |any |the )?(?:previous|prior|above|earlier|preceding) (?:instructions|"
    r"directions|prompts?|rules)",
    r"disregard (?:all |any |the )?(?:previous|prior|above|your) (?:instructions|rules|"
    r"guidelines|programming)",
    r"forget (?:all |everything )?(?:your|the|previous) (?:instructions|rules|guidelines)",
    r"\bDAN\b.{0,40}(?:do anything now|jailbreak)|do anything now",
    r"you are (?:now )?(?:in )?(?:developer|god|jailbreak|unrestricted|evil) mode",
    r"(?:pretend|act as if|imagine) (?:that )?you (?:have|are under) no (?:rules|restrictions|"
    r"filters|guidelines|limitations)",
    r"(?:reveal|print|show|repeat|output) (?:me )?(?:your|the) (?:system prompt|hidden "
    r"instructions|initial instructions|instructions above)",
    r"without (?:any )?(?:moral|ethical) (?:restrictions|guidelines|limits)",
    r"\bjailbr(?:eak|oken)\b",
    r"stay in character.{0,40}(?:no matter|whatever)",
    r"new instructions?:|system override|<\|?(?:im_start|system)\|?>",
]

_INDIRECT = [
    *_JAILBREAK,
    r"(?:assistant|ai|chatbot|llm),? (?:you must|please) (?:now )?(?:ignore|send|forward|"
    r"exfiltrate|email)",
    r"(?:send|forward|post|exfiltrate) (?:the |all )?(?:conversation|chat history|user data|"
    r"credentials|api keys?) to",
    r"when (?:the )?(?:ai|assistant|model) reads this",
]

_PII: dict[str, str] = {
    "email": r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b",
    # +CC, an area code (2-4 digits, maybe in parentheses), 3-4 + 4 digits; not inside a longer
    # digit run (card numbers, order ids)
    "phone": r"(?<![\w+])(?<!\d[ .-])(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?|\d{2,4}[ .-])"
    r"\d{3,4}[ .-]\d{4}(?![ .-]?\d)(?!\w)",
    "credit_card": r"\b(?:\d[ -]?){12,18}\d\b",
    "api_key": r"\b(?:sk-(?:proj-|gw-)?[A-Za-z0-9_-]{20,}|AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]"
    r"{30,}|xox[abpr]-[A-Za-z0-9-]{10,}|AIza[0-9A-Za-z_-]{35}|eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]"
    r"{10,}\.[A-Za-z0-9_-]{10,})",
}


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


class OfflineDetector:
    """Lexicons, prompt-attack patterns, PII regexes (Luhn-checked cards) and blocklists."""

    name = "offline"

    def __init__(self, blocklist: list[str] | None = None):
        self._lex = {
            c: [(sev, re.compile(p, re.I | re.S)) for sev, p in pats]
            for c, pats in _LEXICON.items()
        }
        # one combined pattern as a pre-filter: a benign text is scanned once, not 16 times
        every = (p for pats in _LEXICON.values() for _, p in pats)
        self._lex_any = re.compile("|".join(f"(?:{p})" for p in every), re.I | re.S)
        self._jail = re.compile("|".join(f"(?:{p})" for p in _JAILBREAK), re.I | re.S)
        self._indirect = re.compile("|".join(f"(?:{p})" for p in _INDIRECT), re.I | re.S)
        self._pii = {t: re.compile(p) for t, p in _PII.items()}
        terms = [t for t in (blocklist or []) if t.strip()]
        self._block = (
            re.compile("|".join(rf"\b{re.escape(t)}\b" for t in terms), re.I) if terms else None
        )

    def _pii_candidates(self, text: str) -> list[str]:
        """Cheap pre-checks so most texts skip most PII patterns."""
        kinds = []
        if "@" in text:
            kinds.append("email")
        digits = sum(ch.isdigit() for ch in text) if len(text) < 20_000 else 99
        if digits >= 7:
            kinds.append("phone")
        if digits >= 13:
            kinds.append("credit_card")
        if any(k in text for k in ("sk-", "AKIA", "gh", "xox", "AIza", "eyJ")):
            kinds.append("api_key")
        return kinds

    # a long text is searched window by window (overlapping by more than any pattern spans), so
    # the interpreter can switch threads between windows: the engine runs long texts in a worker
    # thread and one megabyte prompt no longer freezes every other request for seconds
    blocking_io_over = 16_384

    def analyze(self, text: str, role: Role) -> Analysis:
        a = Analysis()
        if _search(self._lex_any, text):
            for cat, pats in self._lex.items():
                a.severities[cat] = max((sev for sev, rx in pats if _search(rx, text)), default=0)
        if role == "prompt":
            a.attack = _search(self._jail, text)
        elif role == "document":
            a.attack = _search(self._indirect, text)
        for typ in self._pii_candidates(text):
            for m in self._pii[typ].finditer(text):
                if typ == "credit_card":
                    digits = re.sub(r"\D", "", m.group())
                    if not (13 <= len(digits) <= 19 and _luhn(digits)):
                        continue
                a.pii.append(PIISpan(typ, m.start(), m.end()))
        if self._block is not None:
            a.blocklist = sorted({m.group().lower() for m in self._block.finditer(text)})
        return a


_WINDOW, _OVERLAP = 16_384, 1_024  # the longest pattern match is a few hundred characters


def _search(rx: re.Pattern[str], text: str) -> bool:
    if len(text) <= _WINDOW:
        return rx.search(text) is not None
    step = _WINDOW - _OVERLAP
    return any(rx.search(text, i, i + _WINDOW) for i in range(0, len(text), step))


_FACTORIES: dict[str, Callable[..., Detector]] = {}


def register_detector(name: str, factory: Callable[..., Detector]) -> None:
    """Make a detector available to ``safety.detectors`` in the gateway config."""
    _FACTORIES[name] = factory


def detector_factories() -> dict[str, Callable[..., Any]]:
    """Built-in detectors plus those other packages register under the entry-point group
    ``genaiops.detectors`` (how a trained classifier plugs in without the gateway importing it)."""
    found = dict(_FACTORIES)
    for ep in entry_points(group="genaiops.detectors"):
        found.setdefault(ep.name, ep.load())
    return found


register_detector("offline", OfflineDetector)
