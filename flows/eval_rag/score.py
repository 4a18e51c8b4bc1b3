"""Score one line with every offline genaiops evaluator (evaluation.scoring, imported directly:
a flow tool may use the scoring package; the flow runtime does not)."""

import sys

if "promptflow" in sys.modules:  # running under pf: register with promptflow itself
    from promptflow.core import tool
else:  # the genaiops runner never imports promptflow (slow, phones home, retires 2027-04)
    from evaluation.runtime.flowtools import tool

from evaluation.scoring import default_evaluators, sample_from


@tool
def score(
    question: str, answer: str, ground_truth: str = "", context: list = None, doc_ids: list = None
) -> dict:
    sample = sample_from(question, answer, ground_truth or None, context or None, doc_ids or None)
    out: dict = {}
    for evaluator in default_evaluators():
        out.update(evaluator(sample))
    return out
