"""OpenTelemetry traces: the one seam every genaiops component starts its spans through.

Off by default. :func:`setup_from_env` turns tracing on when ``OTEL_EXPORTER_OTLP_ENDPOINT``
(or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set, with the SDK's OTLP exporter (HTTP/protobuf)
behind a batch processor; the standard ``OTEL_*`` variables (``OTEL_SERVICE_NAME``,
``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_EXPORTER_OTLP_HEADERS``, ``OTEL_TRACES_SAMPLER``,
``OTEL_SDK_DISABLED``, ``OTEL_PROPAGATORS``) mean what the SDK documents.  While tracing is off,
:func:`span` hands back one shared no-op context manager (no span object, no context switch) and
:func:`inject` adds no header unless another tracer's span is current.

One trace follows a request across processes by the W3C ``traceparent`` header: flows inject it
into their gateway calls (the ``openai`` client of :mod:`genaiops.openai_client`), the gateway
reads it and injects its own into upstream calls.  The gateway's request id (``x-request-id``,
also the ledger row's ``request_id``) is the span attribute :data:`REQUEST_ID` on both sides.

    >>> with span("indexing.retrieve", {"genaiops.index": "sample"}) as s:
    ...     s.is_recording()
    False
    >>> from opentelemetry.sdk.trace import TracerProvider
    >>> configure(TracerProvider())        # tests: any SDK provider, e.g. an in-memory exporter
    >>> with span("indexing.retrieve") as s:
    ...     s.is_recording()
    True
    >>> reset()
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator, Mapping, MutableMapping
from typing import TYPE_CHECKING

from opentelemetry import propagate, trace
from opentelemetry.trace import INVALID_SPAN, Span, SpanKind, StatusCode
from opentelemetry.util.types import AttributeValue

if TYPE_CHECKING:  # the SDK is imported only when tracing is turned on
    from opentelemetry.sdk.trace import TracerProvider

__all__ = [
    "REQUEST_ID",
    "AttributeValue",
    "Span",
    "SpanKind",
    "StatusCode",
    "configure",
    "current_ids",
    "enabled",
    "inject",
    "provider",
    "recording",
    "reset",
    "setup_from_env",
    "span",
]

#: the span attribute that joins a trace to the gateway's ledger row and to evaluation lines
REQUEST_ID = "genaiops.request_id"

_SCOPE = "genaiops"
_LOCK = threading.Lock()
_PROVIDER: TracerProvider | None = None  # None: tracing is off
_TRACER: trace.Tracer | None = None
_OFF = contextlib.nullcontext(INVALID_SPAN)  # reusable: entering it does nothing


def enabled() -> bool:
    """Whether spans are recorded in this process."""
    return _TRACER is not None


def provider() -> TracerProvider | None:
    """The SDK provider spans go to (None while tracing is off)."""
    return _PROVIDER


def configure(tracer_provider: TracerProvider) -> None:
    """Record spans into ``tracer_provider`` (replacing any earlier one in this module).

    The global OpenTelemetry provider is left alone, so tests can swap providers freely;
    :func:`setup_from_env` also installs its provider globally for third-party libraries.
    """
    global _PROVIDER, _TRACER
    with _LOCK:
        _PROVIDER = tracer_provider
        _TRACER = tracer_provider.get_tracer(_SCOPE)


def reset() -> None:
    """Tracing off again (spans already ended stay with their exporter)."""
    global _PROVIDER, _TRACER
    with _LOCK:
        _PROVIDER, _TRACER = None, None


def _env_on() -> bool:
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return any(
        os.environ.get(v, "").strip()
        for v in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def setup_from_env(service_name: str = "genaiops") -> bool:
    """Turn tracing on from the environment (once per process; later calls keep the first
    setup).  Returns whether tracing is on.  ``OTEL_SERVICE_NAME`` overrides ``service_name``.
    """
    if _TRACER is not None or not _env_on():
        return _TRACER is not None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({"service.name": service_name})
    if os.environ.get("OTEL_SERVICE_NAME"):
        resource = Resource.create()  # the SDK reads OTEL_SERVICE_NAME itself
    tp = TracerProvider(resource=resource)
    tp.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    configure(tp)
    trace.set_tracer_provider(tp)
    return True


def span(
    name: str,
    attributes: Mapping[str, AttributeValue] | None = None,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
) -> contextlib.AbstractContextManager[Span]:
    """A child span of the current one, current while the block runs; an exception leaving
    the block is recorded on it and sets its status to error.  A no-op while tracing is off."""
    tracer = _TRACER
    if tracer is None:
        return _OFF
    return tracer.start_as_current_span(name, kind=kind, attributes=attributes)


def inject(headers: MutableMapping[str, str]) -> None:
    """Add ``traceparent`` (and ``tracestate``) of the current span to ``headers``.

    Also while this module's tracing is off but another tracer made the current span (a flow
    under ``pf`` with promptflow's tracing on): the gateway then joins that trace."""
    if _TRACER is not None or trace.get_current_span().get_span_context().is_valid:
        propagate.inject(headers)


def current_ids() -> tuple[str, str] | None:
    """``(trace_id, span_id)`` of the current span as W3C hex, or None outside a span."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


@contextlib.contextmanager
def recording(tracer_provider: TracerProvider) -> Iterator[TracerProvider]:
    """:func:`configure` for the duration of a block (tests, benchmarks), then :func:`reset`."""
    configure(tracer_provider)
    try:
        yield tracer_provider
    finally:
        reset()
