"""Execute one line of a DAG flow in-process: python tools, Jinja2 prompts and LLM nodes.

No promptflow import: python tool files import ``promptflow.core.tool`` when it is installed and
fall back to a no-op decorator otherwise. Connections are what the flow declares — an ``llm``
node's ``connection:`` key or a python node's ``connection`` input — and ``genaiops_gateway`` is
resolved from genaiops settings. LLM calls share one client per gateway (one connection pool per
process, retries honouring ``Retry-After``). Retrieved chunks are the flow's ``context`` output
when it declares one. Every line yields a :class:`LineResult` — node errors are recorded on it,
never raised, so a batch keeps going and the gate can count them.  A line is an
``evaluation.line`` span with a ``flow.node`` child per node (:mod:`genaiops.tracing`); the line
records its trace id and the gateway request ids of its LLM calls (the ledger rows' ids).

    >>> from evaluation.runtime.flow import load_flow                           # doctest: +SKIP
    >>> ex = FlowExecutor(load_flow("flows/rag"))                        # doctest: +SKIP
    >>> ex.run_line({"question": "How do I rotate logs?"}).outputs["answer"]   # doctest: +SKIP
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from evaluation.errors import FlowError, NodeError
from evaluation.runtime.flow import CONNECTION_INPUT, Flow, Node, VariantSet, parse_reference
from evaluation.runtime.llm import (
    CONNECTION_NAME,
    GatewayConnection,
    collecting_request_ids,
    gateway_client,
    parse_chat_prompt,
)
from genaiops import tracing
from genaiops.errors import GenAIOpsError

__all__ = ["FlowExecutor", "LineResult", "coerce_inputs", "retrieved_chunks"]

LLM_PARAMS = {"deployment_name", "model", "max_tokens", "temperature", "stop", "top_p"}


@dataclass
class LineResult:
    """Everything recorded for one (line, variant)."""

    index: int
    line_id: str
    variant: str
    inputs: dict[str, Any]
    outputs: dict[str, Any] = field(default_factory=dict)
    retrieved: list[dict[str, Any]] = field(default_factory=list)
    node_latency_s: dict[str, float] = field(default_factory=dict)
    latency_s: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model: str | None = None
    error: dict[str, str] | None = None
    aggregation_inputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    trace_id: str | None = None  # W3C trace id of this line's span (tracing on)
    request_ids: list[str] = field(default_factory=list)  # gateway x-request-id of each LLM call

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LineResult:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def coerce_inputs(flow: Flow, values: dict[str, Any]) -> dict[str, Any]:
    """Flow inputs with defaults filled and strings converted to the declared types."""
    out: dict[str, Any] = {}
    for name, spec in flow.inputs.items():
        v = values.get(name, spec.default)
        if v is None:
            if spec.is_chat_history:
                v = []
            else:
                raise FlowError(f"{flow.dag_file}: inputs.{name}: no value and no default")
        try:
            if spec.type == "int":
                v = int(v)
            elif spec.type == "double":
                v = float(v)
            elif spec.type == "bool" and isinstance(v, str):
                v = v.strip().lower() in ("1", "true", "yes")
            elif spec.type in ("list", "object") and isinstance(v, str):
                v = json.loads(v)
        except (TypeError, ValueError) as e:
            raise FlowError(f"inputs.{name}: {v!r} is not a valid {spec.type}") from e
        out[name] = v
    return out


def _walk(value: Any, path: list[str]) -> Any:
    for key in path:
        if isinstance(value, dict):
            if key not in value:
                raise KeyError(f"no key {key!r} in {sorted(value)}")
            value = value[key]
        else:
            value = getattr(value, key)
    return value


class FlowExecutor:
    """Runs lines of ``flow`` with a given variant set. Thread-safe: lines may run in parallel.

    ``connections`` maps connection names to objects with ``base_url``/``api_key``
    (default: ``genaiops_gateway`` from settings, created on first use).
    """

    def __init__(self, flow: Flow, connections: dict[str, Any] | None = None):
        self.flow = flow
        self._connections = dict(connections or {})
        self._tools: dict[Path, Callable[..., Any]] = {}
        self._templates: dict[Path, jinja2.Template] = {}
        self._lock = threading.Lock()

    # -- resources -----------------------------------------------------------------------
    @property
    def connections(self) -> dict[str, Any]:
        """The connections resolved so far (a copy), e.g. to hand to another process."""
        with self._lock:
            return dict(self._connections)

    def connection(self, name: str) -> Any:
        with self._lock:
            if name not in self._connections:
                if name != CONNECTION_NAME:
                    raise FlowError(
                        f"unknown connection {name!r} (genaiops provides "
                        f"{CONNECTION_NAME!r} from GENAIOPS_GATEWAY_URL)"
                    )
                self._connections[name] = GatewayConnection.from_settings()
            return self._connections[name]

    def check_connections(self, variant_sets: list[VariantSet]) -> None:
        """Resolve every connection the chosen variants use, so a missing gateway URL fails
        before the first line instead of on every line."""
        for vs in variant_sets:
            for name in sorted(self.flow.connection_names(vs)):
                self.connection(name)

    def tool(self, path: Path) -> Callable[..., Any]:
        with self._lock:
            fn = self._tools.get(path)
            if fn is None:
                fn = self._tools[path] = _load_tool(path)
            return fn

    def template(self, path: Path) -> jinja2.Template:
        with self._lock:
            t = self._templates.get(path)
            if t is None:
                src = path.read_text(encoding="utf-8")
                t = self._templates[path] = jinja2.Template(
                    src, trim_blocks=True, keep_trailing_newline=True
                )
            return t

    # -- execution -----------------------------------------------------------------------
    def run_line(
        self,
        values: dict[str, Any],
        variants: VariantSet | None = None,
        *,
        index: int = 0,
        line_id: str | None = None,
    ) -> LineResult:
        variants = variants or VariantSet(dict(self.flow.default_variants))
        res = LineResult(index, line_id or str(index), variants.label, dict(values))
        attrs: dict[str, tracing.AttributeValue] = {
            "genaiops.line.index": index,
            "genaiops.line.id": res.line_id,
        }
        attrs["genaiops.flow.variant"] = variants.label
        with (
            tracing.span("evaluation.line", attrs) as sp,
            collecting_request_ids() as res.request_ids,
        ):
            ids = tracing.current_ids()
            res.trace_id = ids[0] if ids else None
            self._run_line(res, values, variants)
            if res.error is not None and sp.is_recording():
                sp.set_status(tracing.StatusCode.ERROR, res.error["message"][:200])
                sp.set_attribute("genaiops.line.error_node", res.error["node"])
        return res

    def _run_line(self, res: LineResult, values: dict[str, Any], variants: VariantSet) -> None:
        t0 = time.perf_counter()
        outputs: dict[str, Any] = {}
        try:
            inputs = coerce_inputs(self.flow, values)
            res.inputs = inputs
            nodes = self.flow.resolved_nodes(variants)
            for node in nodes:
                if node.aggregation:
                    continue
                kwargs = {
                    k: self._resolve(v, inputs, outputs, node) for k, v in node.inputs.items()
                }
                n0 = time.perf_counter()
                with tracing.span("flow.node", {"genaiops.node": node.name}):
                    out = self._run_node(node, kwargs)
                res.node_latency_s[node.name] = time.perf_counter() - n0
                outputs[node.name] = out
                self._account(res, out)
            for node in nodes:  # this line's values for aggregation nodes (run after the batch)
                if node.aggregation:
                    res.aggregation_inputs[node.name] = {
                        k: self._resolve(v, inputs, outputs, node) for k, v in node.inputs.items()
                    }
            res.outputs = {
                name: self._resolve(spec.get("reference"), inputs, outputs, None)
                for name, spec in self.flow.outputs.items()
            }
            res.retrieved = retrieved_chunks(self.flow.retrieved_output, res.outputs)
        except NodeError as e:
            res.error = {"node": e.node, "type": type(e.__cause__ or e).__name__, "message": str(e)}
        except (GenAIOpsError, KeyError, AttributeError, TypeError, ValueError) as e:
            res.error = {"node": "", "type": type(e).__name__, "message": str(e)}
        res.latency_s = time.perf_counter() - t0

    def _resolve(
        self, value: Any, inputs: dict[str, Any], outputs: dict[str, Any], node: Node | None
    ) -> Any:
        ref = parse_reference(value)
        if ref is None:
            return value
        head, rest = ref
        if head == "inputs":
            return _walk(inputs, rest)
        return _walk(outputs[head], rest[1:])

    def _run_node(self, node: Node, kwargs: dict[str, Any]) -> Any:
        assert node.source is not None
        try:
            if node.type == "python":
                fn = self.tool(node.source)
                if isinstance(kwargs.get(CONNECTION_INPUT), str):  # declared in the DAG
                    kwargs[CONNECTION_INPUT] = self.connection(kwargs[CONNECTION_INPUT])
                return fn(**kwargs)
            if node.type == "prompt":
                return self.template(node.source).render(**kwargs)
            return self._run_llm(node, kwargs)
        except NodeError:
            raise
        except Exception as e:  # a tool may raise anything: it becomes this line's error
            raise NodeError(node.name, f"{type(e).__name__}: {e}") from e

    def _run_llm(self, node: Node, kwargs: dict[str, Any]) -> dict[str, Any]:
        conn = self.connection(node.connection or CONNECTION_NAME)
        params = {k: kwargs.pop(k) for k in list(kwargs) if k in LLM_PARAMS}
        assert node.source is not None
        prompt = self.template(node.source).render(**kwargs)
        r = gateway_client(conn.base_url, getattr(conn, "api_key", None)).chat(
            parse_chat_prompt(prompt),
            model=str(params.get("deployment_name") or params.get("model") or "genaiops-local"),
            max_tokens=int(params.get("max_tokens", 128)),
            temperature=float(params.get("temperature", 0.0)),
            stop=params.get("stop"),
        )
        return {
            "text": r.text,
            "model": r.model,
            "usage": {"prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens},
        }

    def run_aggregation(
        self, lines: list[LineResult], variants: VariantSet | None = None
    ) -> dict[str, Any]:
        """Run ``aggregation: true`` nodes once over the successful lines (inputs become lists,
        as in promptflow). Returns ``{node: output}``; a failing node gives ``{"error": ...}``."""
        out: dict[str, Any] = {}
        ok = [ln for ln in lines if ln.error is None]
        for node in self.flow.resolved_nodes(variants):
            if not node.aggregation:
                continue
            kwargs = {
                k: [ln.aggregation_inputs.get(node.name, {}).get(k) for ln in ok]
                for k in node.inputs
            }
            try:
                out[node.name] = self._run_node(node, kwargs)
            except NodeError as e:
                out[node.name] = {"error": str(e)}
        return out

    @staticmethod
    def _account(res: LineResult, out: Any) -> None:
        if isinstance(out, dict) and isinstance(out.get("usage"), dict):
            res.prompt_tokens += int(out["usage"].get("prompt_tokens", 0))
            res.completion_tokens += int(out["usage"].get("completion_tokens", 0))
            res.model = out.get("model") or res.model


def retrieved_chunks(output: str | None, outputs: dict[str, Any]) -> list[dict[str, Any]]:
    """The chunks of the declared retrieval output (``None``: the flow retrieves nothing).

    Both runners use this, so a line records the same chunks under genaiops and under ``pf``.
    """
    if output is None:
        return []
    value = outputs.get(output)
    if value is None or value != value:  # absent, or NaN from a failed pf line
        return []
    if not isinstance(value, list) or not all(isinstance(c, dict) for c in value):
        raise FlowError(f"outputs.{output}: expected a list of chunk objects, got {value!r:.80}")
    return value


def _load_tool(path: Path) -> Callable[..., Any]:
    name = f"_genaiops_flowtool_{abs(hash(str(path)))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise FlowError(f"{path}: cannot import")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # the tool file's import error is the user's to fix
        raise FlowError(f"{path}: import failed: {type(e).__name__}: {e}") from e
    fns = [
        f
        for f in vars(module).values()
        if inspect.isfunction(f) and f.__module__ == name and not f.__name__.startswith("_")
    ]
    marked = [f for f in fns if hasattr(f, "__tool")]
    chosen = marked or fns
    if len(chosen) != 1:
        raise FlowError(
            f"{path}: expected exactly one @tool function, found "
            f"{', '.join(f.__name__ for f in chosen) or 'none'}"
        )
    return chosen[0]
