"""Score one line with the genaiops evaluators (logic: evaluation.runtime.flowtools.score_line)."""

import sys

if "promptflow" in sys.modules:  # running under pf: register with promptflow itself
    from promptflow.core import tool
else:  # the genaiops runner never imports promptflow (slow, phones home, retires 2027-04)
    from evaluation.runtime.flowtools import tool

from evaluation.runtime.flowtools import score_line


@tool
def score(
    question: str, answer: str, ground_truth: str = "", context: list = None, doc_ids: list = None
) -> dict:
    return score_line(question, answer, ground_truth or None, context or None, doc_ids or None)
