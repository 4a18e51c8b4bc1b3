"""Answer text plus citations (logic: evaluation.runtime.flowtools.format_answer)."""

import sys

if "promptflow" in sys.modules:  # running under pf: register with promptflow itself
    from promptflow.core import tool
else:  # the genaiops runner never imports promptflow (slow, phones home, retires 2027-04)
    from evaluation.runtime.flowtools import tool

from evaluation.runtime.flowtools import format_answer as _format_answer


@tool
def format_answer(completion: dict, context: list) -> dict:
    return _format_answer(completion, context)
