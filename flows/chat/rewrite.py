"""Standalone question from a follow-up (logic: evaluation.runtime.flowtools.rewrite_question)."""

import sys

if "promptflow" in sys.modules:  # running under pf: register with promptflow itself
    from promptflow.connections import OpenAIConnection
    from promptflow.core import tool
else:  # the genaiops runner never imports promptflow (slow, phones home, retires 2027-04)
    from evaluation.runtime.flowtools import GatewayConnection as OpenAIConnection
    from evaluation.runtime.flowtools import tool

from evaluation.runtime.flowtools import rewrite_question


@tool
def rewrite(
    connection: OpenAIConnection, question: str, chat_history: list, model: str = "genaiops-local"
) -> str:
    return rewrite_question(connection, question, chat_history, model=model)
