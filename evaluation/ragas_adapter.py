"""Score genaiops records with ragas metrics through one adapter.

Non-LLM metrics run offline: ``bleu_score``, ``rouge_score``, ``id_based_context_recall``,
``id_based_context_precision``, ``exact_match``, ``string_present``. LLM metrics
(``faithfulness``, ``answer_relevancy``-style) run through the gateway: a langchain ``ChatOpenAI``
whose ``base_url`` is ``GENAIOPS_GATEWAY_URL``, wrapped for ragas. A metric that fails on a line
(ragas raises, or returns NaN when it finds no statements) is NaN for that line and counted in
``{metric}_nan`` — never dropped.

ragas 0.4.3 imports ``langchain_community.chat_models.vertexai`` at import time; that module is
gone from langchain-community 0.4.2, so ``pyproject.toml`` pins ``langchain-community==0.4.1``
(the last release that has it, on langchain-core 1.x) and nothing is faked at run time.

    >>> rows = ragas_scores([EvalSample(query="q", response="TLS 1.3", ground_truth="TLS 1.3")],
    ...                     ["rouge_score"])                              # doctest: +SKIP
    >>> rows[0]["rouge_score"]                                            # doctest: +SKIP
    1.0
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from evaluation.metrics import EvalSample
from evaluation.runtime.llm import GatewayClient
from evaluation.stats import mean_ci
from evaluation.summary import MetricStats

__all__ = ["LLM_METRICS", "OFFLINE_METRICS", "ragas_scores", "ragas_summary"]

OFFLINE_METRICS = (
    "bleu_score",
    "rouge_score",
    "id_based_context_recall",
    "id_based_context_precision",
    "exact_match",
    "string_present",
)
LLM_METRICS = ("faithfulness",)


def _import_ragas() -> Any:
    """ragas.metrics, imported on first use (it pulls langchain: seconds of import time)."""
    # ragas' usage telemetry is switched off by the application (the CLI sets
    # RAGAS_DO_NOT_TRACK); library code leaves the process environment alone
    import ragas.metrics

    return ragas.metrics


def _gateway_llm(model: str) -> Any:
    from langchain_openai import ChatOpenAI
    from pydantic import SecretStr
    from ragas.llms import LangchainLLMWrapper

    client = GatewayClient.from_settings()
    # max_tokens is a pydantic alias of max_completion_tokens: mypy cannot see it
    chat = ChatOpenAI(  # type: ignore[call-arg]
        model=model,
        base_url=client.base_url,
        api_key=SecretStr(client.api_key or "none"),
        temperature=0.0,
        max_tokens=256,
        timeout=600,
        max_retries=0,
    )
    return LangchainLLMWrapper(chat)


def _metric(name: str, llm: Any) -> Any:
    m = _import_ragas()
    table = {
        "bleu_score": m.BleuScore,
        "rouge_score": m.RougeScore,
        "id_based_context_recall": m.IDBasedContextRecall,
        "id_based_context_precision": m.IDBasedContextPrecision,
        "exact_match": m.ExactMatch,
        "string_present": m.StringPresence,
        "faithfulness": m.Faithfulness,
    }
    if name not in table:
        raise ValueError(f"unknown ragas metric {name!r}; use {', '.join(table)}")
    if name in LLM_METRICS:
        if llm is None:
            raise ValueError(f"{name} needs an LLM: pass llm='gateway:<model alias>'")
        return table[name](llm=llm)
    return table[name]()


def _sample(s: EvalSample) -> Any:
    from ragas import SingleTurnSample

    return SingleTurnSample(
        user_input=s.query,
        response=s.response or "",
        reference=s.ground_truth or "",
        retrieved_contexts=[s.context] if s.context else [],
        retrieved_context_ids=list(s.retrieved_ids or []),
        reference_context_ids=list(s.reference_ids or []),
        reference_contexts=list(s.reference_contexts or []),
    )


def ragas_scores(
    samples: Sequence[EvalSample],
    metrics: Sequence[str] = OFFLINE_METRICS,
    llm: str | None = None,
) -> list[dict[str, Any]]:
    """One dict per sample: ``{metric: value}`` plus ``{metric}_error`` when it failed."""
    judge = _gateway_llm(llm.split(":", 1)[1]) if llm else None
    scorers = [(name, _metric(name, judge)) for name in metrics]
    rows = []
    for s in samples:
        row: dict[str, Any] = {}
        sample = _sample(s)
        for name, scorer in scorers:
            try:
                value = float(scorer.single_turn_score(sample))
            except Exception as e:  # ragas and its LLM stack raise many kinds: a NaN, recorded
                row[name] = math.nan
                row[f"{name}_error"] = f"{type(e).__name__}: {str(e)[:200]}"
                continue
            row[name] = value
        rows.append(row)
    return rows


def ragas_summary(rows: Sequence[dict[str, Any]], metrics: Sequence[str]) -> dict[str, MetricStats]:
    """Mean, 95% CI and NaN count per metric (the aggregate model of ``summary.json``)."""
    return {m: MetricStats.of(mean_ci([r.get(m) for r in rows])) for m in metrics}
