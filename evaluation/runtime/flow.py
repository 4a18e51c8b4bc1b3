"""Read a promptflow DAG flow (``flow.dag.yaml``) without promptflow, validate it, pick variants.

promptflow's own ``pf flow validate`` checks the schema only; :func:`load_flow` also checks that
every ``${inputs.x}`` / ``${node.output}`` reference exists, that source files exist and that the
graph has no cycle, naming the file and the key of each problem.

Variant selection (``select_variants``):

* ``default`` — every node at its default variant (one run);
* ``all`` — the default, then each non-default variant one node at a time (promptflow's way);
* ``grid`` — the full cartesian product of all nodes' variants (promptflow has no grid).

    >>> flow = load_flow("flows/rag")                                     # doctest: +SKIP
    >>> [v.label for v in select_variants(flow, "all")]                   # doctest: +SKIP
    ['answer_prompt.cited', 'answer_prompt.terse']
"""

from __future__ import annotations

import hashlib
import itertools
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from evaluation.errors import FlowError
from evaluation.runtime.dag import UNSUPPORTED, InputSpec, NodeSpec, parse_dag
from genaiops.errors import SpecError
from genaiops.specs import read_yaml

__all__ = [
    "CONNECTION_INPUT",
    "RETRIEVED_OUTPUT",
    "Flow",
    "FlowInput",
    "Node",
    "VariantSet",
    "load_flow",
    "parse_reference",
    "select_variants",
]

NODE_TYPES = ("python", "prompt", "llm")
#: the python-tool input that names a connection (promptflow passes the connection object)
CONNECTION_INPUT = "connection"
#: the flow output holding the retrieved chunks (a list of dicts with ``doc_id``), if any
RETRIEVED_OUTPUT = "context"
_REF = re.compile(r"^\$\{([A-Za-z_][\w]*)\.([\w.]+)\}$")
VariantMode = Literal["default", "all", "grid"]


def parse_reference(value: Any) -> tuple[str, list[str]] | None:
    """``"${retrieve.output.x}"`` → ``("retrieve", ["output", "x"])``; literals → None."""
    if not isinstance(value, str):
        return None
    m = _REF.match(value.strip())
    if not m:
        return None
    return m.group(1), m.group(2).split(".")


@dataclass(frozen=True)
class FlowInput:
    """A flow input as declared in ``flow.dag.yaml`` (type, default, chat roles)."""

    name: str
    type: str = "string"
    default: Any = None
    is_chat_history: bool = False
    is_chat_input: bool = False


@dataclass(frozen=True)
class Node:
    """One node (or one variant of a node): ``python`` tool, Jinja2 ``prompt`` or ``llm``.

    >>> Node("a", "prompt", None, {"q": "${b.output}"}).dependencies()
    {'b'}
    """

    name: str
    type: str
    source: Path | None
    inputs: dict[str, Any]
    aggregation: bool = False
    connection: str | None = None
    api: str | None = None
    variant_id: str | None = None

    def dependencies(self) -> set[str]:
        deps = set()
        for v in self.inputs.values():
            ref = parse_reference(v)
            if ref and ref[0] != "inputs":
                deps.add(ref[0])
        return deps


@dataclass(frozen=True)
class VariantSet:
    """One choice of variant per variant-bearing node, with a label used as the run folder."""

    choice: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return "+".join(f"{n}.{v}" for n, v in sorted(self.choice.items())) or "default"


@dataclass
class Flow:
    """A loaded, checked flow; :meth:`resolved_nodes` gives execution order for a variant set."""

    path: Path
    inputs: dict[str, FlowInput]
    outputs: dict[str, Any]
    nodes: list[Node]
    variants: dict[str, dict[str, Node]]
    default_variants: dict[str, str]

    @property
    def dag_file(self) -> Path:
        return self.path / "flow.dag.yaml"

    def resolved_nodes(self, variants: VariantSet | None = None) -> list[Node]:
        """Nodes in execution order, with the chosen variant substituted."""
        choice = dict(self.default_variants)
        choice.update((variants or VariantSet()).choice)
        out = [
            self.variants[n.name][choice[n.name]] if n.name in self.variants else n
            for n in self.nodes
        ]
        return _toposort(out, self.dag_file)

    def connection_names(self, variants: VariantSet | None = None) -> set[str]:
        """The connections the chosen variants declare: ``llm`` nodes' ``connection:`` key and
        python nodes' ``connection`` input (nothing is inferred from tool annotations)."""
        names: set[str] = set()
        for node in self.resolved_nodes(variants):
            if node.type == "llm" and node.connection:
                names.add(node.connection)
            elif node.type == "python" and isinstance(node.inputs.get(CONNECTION_INPUT), str):
                names.add(node.inputs[CONNECTION_INPUT])
        return names

    @property
    def retrieved_output(self) -> str | None:
        """The output that holds retrieved chunks (``context``), when the flow declares one."""
        return RETRIEVED_OUTPUT if RETRIEVED_OUTPUT in self.outputs else None

    def prompt_hash(self, variants: VariantSet | None = None) -> str:
        """Hash of the prompt/template sources and node inputs of the chosen variants."""
        h = hashlib.sha256()
        for node in self.resolved_nodes(variants):
            h.update(f"{node.name}:{node.type}:{sorted(node.inputs.items())}".encode())
            if node.type in ("prompt", "llm") and node.source and node.source.exists():
                h.update(node.source.read_bytes())
        return h.hexdigest()[:16]


def _toposort(nodes: list[Node], where: Path) -> list[Node]:
    by_name = {n.name: n for n in nodes}
    order: list[Node] = []
    state: dict[str, int] = {}

    def visit(n: Node, stack: tuple[str, ...]) -> None:
        if state.get(n.name) == 2:
            return
        if state.get(n.name) == 1:
            raise FlowError(f"{where}: nodes: cycle through {' -> '.join((*stack, n.name))}")
        state[n.name] = 1
        for d in sorted(n.dependencies()):
            if d in by_name:
                visit(by_name[d], (*stack, n.name))
        state[n.name] = 2
        order.append(n)

    for n in nodes:
        visit(n, ())
    return order


def _node(spec: NodeSpec, key: str, folder: Path, dag: Path, name: str) -> Node:
    if spec.use_variants:
        raise FlowError(f"{dag}: {key}.use_variants: only nodes under nodes: can use variants")
    if spec.type is None:
        raise FlowError(f"{dag}: {key}.type: required (one of {', '.join(NODE_TYPES)})")
    if spec.source is None:
        raise FlowError(f"{dag}: {key}.source.path: required for {spec.type} nodes")
    source = (folder / spec.source.path).resolve()
    if not source.exists():
        raise FlowError(
            f"{dag}: {key}.source.path: file {spec.source.path!r} not found in {folder}"
        )
    if spec.type == "llm" and not spec.connection:
        raise FlowError(f"{dag}: {key}.connection: required for llm nodes")
    conn = spec.inputs.get(CONNECTION_INPUT)
    if spec.type == "python" and conn is not None and parse_reference(conn) is not None:
        raise FlowError(
            f"{dag}: {key}.inputs.{CONNECTION_INPUT}: a connection name is expected, not a "
            f"reference ({UNSUPPORTED})"
        )
    if spec.type == "llm" and spec.aggregation:
        raise FlowError(f"{dag}: {key}.aggregation: llm nodes cannot aggregate")
    if spec.type != "llm" and (spec.connection or spec.api or spec.provider):
        raise FlowError(
            f"{dag}: {key}.connection: only llm nodes take connection/api/provider keys "
            f"(python tools take an input named {CONNECTION_INPUT!r})"
        )
    return Node(
        name=name,
        type=spec.type,
        source=source,
        inputs=dict(spec.inputs),
        aggregation=spec.aggregation,
        connection=spec.connection,
        api=spec.api,
    )


def load_flow(path: str | Path) -> Flow:
    """Load and check ``path`` (a flow folder or its ``flow.dag.yaml``).

    Keys outside the supported subset (see :mod:`evaluation.runtime.dag`) are refused, not
    ignored: run such flows with ``--runner pf``.
    """
    p = Path(path)
    folder = p.parent if p.is_file() else p
    dag = folder / "flow.dag.yaml"
    if not dag.exists():
        raise FlowError(f"{folder}: no flow.dag.yaml (is this a flow folder?)")
    try:
        raw = read_yaml(dag)
    except SpecError as e:
        raise FlowError(str(e)) from e
    spec = parse_dag(raw, dag)
    inputs = {}
    for name, ispec in spec.inputs.items():
        ispec = ispec or InputSpec()
        inputs[name] = FlowInput(
            name=name,
            type=ispec.type,
            default=ispec.default,
            is_chat_history=ispec.is_chat_history,
            is_chat_input=ispec.is_chat_input,
        )
    nodes: list[Node] = []
    variant_nodes: dict[str, dict[str, Node]] = {}
    defaults: dict[str, str] = {}
    for i, rn in enumerate(spec.nodes):
        key = f"nodes.{i}"
        if not rn.name:
            raise FlowError(f"{dag}: {key}.name: required")
        name = rn.name
        if any(n.name == name for n in nodes):
            raise FlowError(f"{dag}: {key}.name: duplicate node {name!r}")
        if rn.use_variants:
            others = rn.model_dump(exclude={"name", "use_variants"}, exclude_defaults=True)
            if others:
                raise FlowError(
                    f"{dag}: {key}.{next(iter(others))}: a node using variants is defined "
                    f"under node_variants.{name}"
                )
            nv = spec.node_variants.get(name)
            if nv is None or not nv.variants:
                raise FlowError(f"{dag}: node_variants.{name}: missing for node using variants")
            variant_nodes[name] = {}
            for vid, vspec in nv.variants.items():
                vkey = f"node_variants.{name}.variants.{vid}.node"
                if vspec.node.name not in (None, name):
                    raise FlowError(f"{dag}: {vkey}.name: must be {name!r} or absent")
                n = _node(vspec.node, vkey, folder, dag, name=name)
                variant_nodes[name][str(vid)] = replace(n, variant_id=str(vid))
            default = str(nv.default_variant_id or next(iter(variant_nodes[name])))
            if default not in variant_nodes[name]:
                raise FlowError(
                    f"{dag}: node_variants.{name}.default_variant_id: unknown variant {default!r}"
                )
            defaults[name] = default
            nodes.append(variant_nodes[name][default])
        else:
            nodes.append(_node(rn, key, folder, dag, name=name))
    unused = sorted(set(spec.node_variants) - set(variant_nodes))
    if unused:
        raise FlowError(
            f"{dag}: node_variants.{unused[0]}: no node {unused[0]!r} with use_variants: true"
        )
    outputs = {name: o.model_dump() for name, o in spec.outputs.items()}
    flow = Flow(folder.resolve(), inputs, outputs, nodes, variant_nodes, defaults)
    _check_references(flow)
    flow.resolved_nodes()  # cycle check
    return flow


def _check_references(flow: Flow) -> None:
    names = {n.name for n in flow.nodes}
    dag = flow.dag_file
    all_nodes = [(f"nodes.{n.name}", n) for n in flow.nodes] + [
        (f"node_variants.{name}.variants.{vid}", n)
        for name, vs in flow.variants.items()
        for vid, n in vs.items()
    ]
    for key, node in all_nodes:
        for k, v in node.inputs.items():
            ref = parse_reference(v)
            if ref is None:
                continue
            head, rest = ref
            if head == "inputs":
                if rest[0] not in flow.inputs:
                    raise FlowError(
                        f"{dag}: {key}.inputs.{k}: unknown flow input {rest[0]!r}; "
                        f"flow inputs: {', '.join(flow.inputs)}"
                    )
            elif head not in names:
                raise FlowError(
                    f"{dag}: {key}.inputs.{k}: unknown node {head!r}; nodes: {', '.join(names)}"
                )
            elif rest[0] != "output":
                raise FlowError(f"{dag}: {key}.inputs.{k}: expected ${{{head}.output...}}")
    for out, spec in flow.outputs.items():
        ref = parse_reference((spec or {}).get("reference"))
        if ref is None or (ref[0] != "inputs" and ref[0] not in names):
            raise FlowError(f"{dag}: outputs.{out}.reference: must reference a node or input")


def select_variants(flow: Flow, mode: VariantMode | str) -> list[VariantSet]:
    """The variant sets to run for ``mode`` (see the module docstring)."""
    if mode == "default":
        return [VariantSet(dict(flow.default_variants))]
    if mode == "all":
        sets = [VariantSet(dict(flow.default_variants))]
        for name, vs in flow.variants.items():
            for vid in vs:
                if vid != flow.default_variants[name]:
                    sets.append(VariantSet({**flow.default_variants, name: vid}))
        return sets
    if mode == "grid":
        names = sorted(flow.variants)
        combos = itertools.product(*(list(flow.variants[n]) for n in names))
        return [VariantSet(dict(zip(names, c, strict=True))) for c in combos]
    # a single explicit variant: "answer_prompt.terse" (comma-separated for several nodes)
    choice = dict(flow.default_variants)
    for part in str(mode).split(","):
        node, _, vid = part.strip().partition(".")
        if node not in flow.variants or vid not in flow.variants[node]:
            known = [f"{n}.{v}" for n, vs in flow.variants.items() for v in vs]
            raise FlowError(
                f"--variants {mode!r}: use default, all, grid or one of: {', '.join(known)}"
            )
        choice[node] = vid
    return [VariantSet(choice)]
