"""Retrieve chunks from a genaiops index (logic: evaluation.runtime.flowtools.retrieve_context)."""

import sys

if "promptflow" in sys.modules:  # running under pf: register with promptflow itself
    from promptflow.core import tool
else:  # the genaiops runner never imports promptflow (slow, phones home, retires 2027-04)
    from evaluation.runtime.flowtools import tool

from evaluation.runtime.flowtools import retrieve_context


@tool
def retrieve(
    question: str, index: str = "sample", alias: str = "current", k: int = 4, mode: str = "hybrid"
) -> list:
    return retrieve_context(question, index=index, alias=alias, k=k, mode=mode)
