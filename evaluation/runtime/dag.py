"""The subset of promptflow's ``flow.dag.yaml`` the genaiops runner supports, as strict models.

Every model forbids unknown keys: a key promptflow knows and we do not run (``activate:``,
``environment_variables:``…) or a misspelt one (``aggregaton:``) would otherwise load silently
and then behave differently from ``pf``. :func:`parse_dag` refuses it, naming the file and the
key: ``flows/x/flow.dag.yaml: nodes.1.activate: not supported by the genaiops runner; use
--runner pf``.

    >>> parse_dag({"nodes": [], "nodez": []}, "flow.dag.yaml")     # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    evaluation.errors.FlowError: flow.dag.yaml: nodez: not supported by the genaiops runner; ...
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from evaluation.errors import FlowError

__all__ = [
    "DagSpec",
    "InputSpec",
    "NodeSpec",
    "NodeVariantsSpec",
    "OutputSpec",
    "UNSUPPORTED",
    "parse_dag",
]

UNSUPPORTED = "not supported by the genaiops runner; use --runner pf"

InputType = Literal["string", "int", "double", "bool", "list", "object"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class InputSpec(_Strict):
    """A flow input: its type, default and chat role."""

    type: InputType = "string"
    default: Any = None
    description: str | None = None
    is_chat_history: bool = False
    is_chat_input: bool = False


class OutputSpec(_Strict):
    """A flow output: a reference to a node output or a flow input."""

    type: InputType = "string"
    reference: str
    description: str | None = None
    is_chat_output: bool = False


class SourceSpec(_Strict):
    """Where a node's code or template lives (relative to the flow folder)."""

    type: Literal["code"] = "code"
    path: str


class NodeSpec(_Strict):
    """One node: a python tool, a Jinja2 prompt or an ``llm`` chat call through a connection.

    Python nodes receive connections through an input named ``connection`` (the value is the
    connection's name); ``llm`` nodes through their ``connection:`` key.
    """

    name: str | None = None  # absent inside node_variants (the node's name is the key above)
    type: Literal["python", "prompt", "llm"] | None = None
    source: SourceSpec | None = None
    inputs: dict[str, Any] = Field(default_factory=dict)
    aggregation: bool = False
    use_variants: bool = False
    connection: str | None = None
    api: Literal["chat"] | None = None
    provider: Literal["OpenAI", "AzureOpenAI"] | None = None
    module: str | None = None


class VariantSpec(_Strict):
    """One variant of a node (``node_variants.NAME.variants.ID``)."""

    node: NodeSpec


class NodeVariantsSpec(_Strict):
    """The variants of one node and which is the default."""

    default_variant_id: str | None = None
    variants: dict[str, VariantSpec]


class EnvironmentSpec(_Strict):
    """Only the requirements file, which the genaiops runner does not need (already installed)."""

    python_requirements_txt: str | None = None


class DagSpec(_Strict):
    """A ``flow.dag.yaml`` the genaiops runner can execute exactly as ``pf`` would."""

    schema_: str | None = Field(default=None, alias="$schema")
    inputs: dict[str, InputSpec | None] = Field(default_factory=dict)
    outputs: dict[str, OutputSpec] = Field(default_factory=dict)
    nodes: list[NodeSpec]
    node_variants: dict[str, NodeVariantsSpec] = Field(default_factory=dict)
    environment: EnvironmentSpec | None = None


def parse_dag(raw: Any, where: str | Path) -> DagSpec:
    """Validate the parsed YAML of ``where``; FlowError names the file and every bad key."""
    if not isinstance(raw, dict):
        raise FlowError(f"{where}: expected a mapping at the top level")
    try:
        return DagSpec.model_validate(raw)
    except ValidationError as e:
        problems = []
        for item in e.errors():
            key = ".".join(str(x) for x in item["loc"]) or "(top level)"
            if item["type"] == "extra_forbidden":
                problems.append(f"{key}: {UNSUPPORTED}")
            elif item["type"] == "missing":
                problems.append(f"{key}: required")
            else:
                problems.append(f"{key}: {item['msg']}")
        raise FlowError(f"{where}: " + "; ".join(problems)) from e
