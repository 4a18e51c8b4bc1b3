"""Groundedness and relevance on a 1–5 scale, judged by a model behind the gateway or offline.

Outputs follow azure-ai-evaluation naming: ``groundedness``, ``groundedness_result``
(``pass``/``fail``, or ``error`` when no judgement succeeded), ``groundedness_reason``,
``groundedness_threshold`` (default 3); plus ``groundedness_failed`` (how many judgements failed)
and ``groundedness_std`` (spread over ``repeats``). A failed judgement is NaN and counted, never
dropped.

:class:`OfflineJudge` is the default and is *not* a language model: groundedness is the share of
the answer's content words found in the context, relevance the embedding cosine of question and
answer, each mapped to 1–5. Its agreement with gold labels is measured in ``docs/evaluation.md``.
:class:`GatewayJudge` asks a model through the gateway (any alias the gateway serves).

    >>> ev = JudgedEvaluator("groundedness", OfflineJudge())
    >>> out = ev(EvalSample(response="Lumen uses TLS 1.3.", context="Lumen uses TLS 1.3 only."))
    >>> out["groundedness"], out["groundedness_result"]
    (5.0, 'pass')
"""

from __future__ import annotations

import math
import re
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Protocol

import Stemmer
import yaml
from bm25s.stopwords import STOPWORDS_EN

from evaluation.errors import JudgeError
from evaluation.metrics import EvalSample, Evaluator
from evaluation.runtime.llm import GatewayClient, parse_chat_prompt
from genaiops.errors import GenAIOpsError

__all__ = ["GatewayJudge", "JudgedEvaluator", "Judgement", "Judge", "OfflineJudge"]

Metric = Literal["groundedness", "relevance"]
_CITATION = re.compile(r"\[[^\[\]]{1,200}\]")
_SENT = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9`\"'(\[])")
_WORD = re.compile(r"[a-z0-9][a-z0-9_./-]*", re.IGNORECASE)
_LOCAL = threading.local()  # PyStemmer objects are not thread-safe: one per thread


def _stemmer() -> Any:
    if not hasattr(_LOCAL, "stemmer"):
        _LOCAL.stemmer = Stemmer.Stemmer("english")
    return _LOCAL.stemmer


def _content_words(text: str) -> list[str]:
    """Lower-cased, Snowball-stemmed words minus English stop words: the tokens the index's
    lexical (bm25s) retrieval uses — its ``"en"`` stop words and PyStemmer's English stemmer —
    so "encrypts"/"encrypted" and "keys"/"key" count as the same word."""
    words = [w.strip("./-").lower() for w in _WORD.findall(text)]
    return list(_stemmer().stemWords([w for w in words if w and w not in STOPWORDS_EN]))


@dataclass(frozen=True)
class Judgement:
    """A 1–5 score and the judge's reason."""

    score: float
    reason: str


class Judge(Protocol):
    """Scores one (query, response, context) on 1–5 for ``metric``; raises JudgeError."""

    name: str

    def judge(self, metric: Metric, sample: EvalSample) -> Judgement: ...


def _to_scale(x: float) -> float:
    """Map 0–1 onto the integer 1–5 scale (0→1, 1→5)."""
    return float(min(5, max(1, math.floor(1 + 4 * max(0.0, min(1.0, x)) + 0.5))))


class OfflineJudge:
    """Deterministic heuristics, no model: honest, fast, and blind to paraphrase.

    >>> OfflineJudge().judge("groundedness", EvalSample(response="port 9464", context="port 80"))
    ... # doctest: +NORMALIZE_WHITESPACE
    Judgement(score=3.0, reason='1/2 content words of the least supported sentence (of 1)
              appear in the context (offline heuristic)')
    """

    name = "offline"

    def __init__(self, embedder: Any = None, relevance_floor: float = 0.1, span: float = 0.5):
        self._embedder = embedder
        self.relevance_floor = relevance_floor
        self.span = span

    def judge(self, metric: Metric, sample: EvalSample) -> Judgement:
        response = (sample.response or "").strip()
        if not response:
            raise JudgeError("empty response: nothing to judge")
        if metric == "groundedness":
            if not (sample.context or "").strip():
                raise JudgeError("no context to judge groundedness against")
            ctx = set(_content_words(sample.context or ""))
            response = _CITATION.sub(" ", response)  # [doc ids] are references, not claims
            sentences = [w for w in (_content_words(t) for t in _SENT.split(response)) if w]
            if not sentences:
                raise JudgeError("response has no content words")
            # every sentence must be supported: the weakest sentence decides (an invented claim
            # appended to a true answer is still ungrounded)
            support = [sum(w in ctx for w in ws) / len(ws) for ws in sentences]
            worst = min(range(len(support)), key=support.__getitem__)
            found = sum(w in ctx for w in sentences[worst])
            return Judgement(
                _to_scale(support[worst]),
                f"{found}/{len(sentences[worst])} content words of the least supported sentence "
                f"(of {len(sentences)}) appear in the context (offline heuristic)",
            )
        if metric == "relevance":
            if self._embedder is None:
                from genaiops.providers import EmbedderConfig, make_embedder

                self._embedder = make_embedder(EmbedderConfig())
            q, a = self._embedder.embed([sample.query, response])
            cos = float((q * a).sum())
            x = (cos - self.relevance_floor) / self.span
            return Judgement(
                _to_scale(x), f"question/answer embedding cosine {cos:.2f} (offline heuristic)"
            )
        raise JudgeError(f"unknown metric {metric!r}")


@lru_cache(maxsize=1)
def _prompts() -> dict[str, str]:
    data = yaml.safe_load((Path(__file__).parent / "prompts" / "judges.yaml").read_text())
    return {str(k): str(v) for k, v in data.items()}


_SCORE = re.compile(r"score\s*[:=]?\s*\**\s*([1-5])(?:\.\d+)?\b", re.IGNORECASE)
_BARE = re.compile(r"^\s*([1-5])\b")
_REASON = re.compile(r"reason\s*[:=]\s*(.+)", re.IGNORECASE | re.DOTALL)


def parse_judgement(text: str) -> Judgement:
    """Read ``Score: N`` / ``Reason: ...`` from a judge reply; JudgeError if there is no score."""
    m = _SCORE.search(text) or _BARE.search(text)
    if not m:
        raise JudgeError(f"no 1-5 score in judge reply: {text[:120]!r}")
    r = _REASON.search(text)
    reason = (r.group(1) if r else text).strip().splitlines()[0][:300] if text.strip() else ""
    return Judgement(float(m.group(1)), reason)


class GatewayJudge:
    """A model behind the gateway grades with the prompts in ``prompts/judges.yaml``.

    >>> judge = GatewayJudge(model="genaiops-local")                     # doctest: +SKIP
    """

    def __init__(
        self,
        model: str = "genaiops-local",
        *,
        temperature: float = 0.0,
        max_tokens: int = 64,
        client: GatewayClient | None = None,
    ):
        self.model = model
        self.name = f"gateway:{model}"
        self.temperature = temperature
        self.max_tokens = max_tokens
        self._client = client

    def judge(self, metric: Metric, sample: EvalSample) -> Judgement:
        if self._client is None:
            self._client = GatewayClient.from_settings()
        prompt = _prompts()[metric].format(
            query=sample.query, response=sample.response or "", context=sample.context or ""
        )
        try:
            result = self._client.chat(
                parse_chat_prompt(prompt),
                model=self.model,
                max_tokens=self.max_tokens,
                temperature=self.temperature,
            )
        except GenAIOpsError as e:
            raise JudgeError(f"judge call failed: {e}") from e
        return parse_judgement(result.text)


class JudgedEvaluator(Evaluator):
    """Runs a judge ``repeats`` times; reports the mean, pass/fail, reason and failures."""

    def __init__(self, metric: Metric, judge: Judge, threshold: float = 3.0, repeats: int = 1):
        if repeats < 1:
            raise ValueError("repeats must be at least 1")
        self.metric = metric
        self.name = metric  # the metric is the evaluator's name (its outputs' prefix)
        self.judge = judge
        self.threshold = threshold
        self.repeats = repeats
        self.outputs = (metric,)

    def applies(self, sample: EvalSample) -> bool:
        return sample.response is not None

    def evaluate(self, sample: EvalSample) -> dict[str, Any]:
        scores: list[float] = []
        reasons: list[str] = []
        errors: list[str] = []
        for _ in range(self.repeats):
            try:
                j = self.judge.judge(self.metric, sample)
            except JudgeError as e:
                errors.append(str(e))
                continue
            scores.append(j.score)
            reasons.append(j.reason)
        m = self.metric
        mean = sum(scores) / len(scores) if scores else math.nan
        std = (
            math.sqrt(sum((s - mean) ** 2 for s in scores) / (len(scores) - 1))
            if len(scores) > 1
            else (0.0 if scores else math.nan)
        )
        result = ("pass" if mean >= self.threshold else "fail") if scores else "error"
        return {
            m: mean,
            f"{m}_result": result,
            f"{m}_reason": reasons[0] if reasons else "; ".join(errors),
            f"{m}_threshold": self.threshold,
            f"{m}_failed": len(errors),
            f"{m}_std": std,
            f"{m}_judge": self.judge.name,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "JudgedEvaluator",
            "metric": self.metric,
            "judge": self.judge.name,
            "threshold": self.threshold,
            "repeats": self.repeats,
        }
