"""Call the gateway with the rendered chat prompt (logic: evaluation.runtime.flowtools.generate)."""

import sys

if "promptflow" in sys.modules:  # running under pf: register with promptflow itself
    from promptflow.connections import OpenAIConnection
    from promptflow.core import tool
else:  # the genaiops runner never imports promptflow (slow, phones home, retires 2027-04)
    from evaluation.runtime.flowtools import GatewayConnection as OpenAIConnection
    from evaluation.runtime.flowtools import tool

from evaluation.runtime.flowtools import generate as _generate


@tool
def generate(
    connection: OpenAIConnection,
    prompt: str,
    model: str = "genaiops-local",
    max_tokens: int = 64,
    temperature: float = 0.0,
    context: list = None,
    index: str = "",
    index_alias: str = "",
) -> dict:
    # context, index and alias travel as the gateway's documents / retrieval extensions
    return _generate(
        connection,
        prompt,
        model=model,
        max_tokens=max_tokens,
        temperature=temperature,
        context=context,
        index=index,
        index_alias=index_alias,
    )
