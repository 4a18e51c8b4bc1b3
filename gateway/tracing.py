"""The gateway's tracing hooks: the server span of each request, and the request id.

Spans come from the core seam (:mod:`genaiops.tracing`); this module only wires the gateway in,
so the request path itself stays untouched while tracing is off:

* :func:`instrument` wraps the app in the OpenTelemetry ASGI middleware (through
  ``opentelemetry-instrumentation-fastapi``): one server span per request, its parent taken from
  the caller's ``traceparent``; nothing is added while tracing is off;
* :func:`bind_request` is called once per API request with its id (``x-request-id``, the ledger
  row's ``request_id``): it becomes the server span's ``genaiops.request_id`` attribute, and the
  request id of every log line written while the request runs (:mod:`gateway.logs`).

The child spans are started where the work happens: ``gateway.safety.input`` /
``gateway.safety.output`` (:mod:`gateway.safety.engine`), ``gateway.quota``
(:meth:`gateway.calls.Call.admit`) and ``gateway.upstream``, a client span per attempt that
sends its ``traceparent`` upstream (:mod:`gateway.backends.http`).

    >>> bind_request("req_0123")
    >>> request_id()
    'req_0123'
"""

from __future__ import annotations

from contextvars import ContextVar

from fastapi import FastAPI
from opentelemetry import trace

from genaiops import tracing

__all__ = ["bind_request", "instrument", "request_id"]

_REQUEST_ID: ContextVar[str | None] = ContextVar("genaiops_request_id", default=None)

#: probes and scrapes are not traced (they would drown the request traces)
EXCLUDED_URLS = "/healthz,/readyz,/metrics"


def instrument(app: FastAPI) -> bool:
    """Add the server-span middleware when tracing is on; returns whether it did."""
    tp = tracing.provider()
    if tp is None:
        return False
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=tp,
        excluded_urls=EXCLUDED_URLS,
        exclude_spans=["receive", "send"],  # one span per request, not one per ASGI message
    )
    return True


def bind_request(request_id: str) -> None:
    """``request_id`` is the current request's: on the server span and on its log lines."""
    _REQUEST_ID.set(request_id)
    current = trace.get_current_span()
    if current.is_recording():
        current.set_attribute(tracing.REQUEST_ID, request_id)


def request_id() -> str | None:
    """The id of the request being served in this context, if any."""
    return _REQUEST_ID.get()
