"""JSON logs for every gateway process: one JSON object per line on stderr.

Each line has ``ts`` (Unix seconds), ``level``, ``logger``, ``msg`` and ``pid`` (which worker);
``request_id`` while a request is served (:func:`gateway.tracing.bind_request`), ``trace_id`` /
``span_id`` when tracing is on and a span is current, and ``exc`` (the formatted traceback,
inside the JSON string) when one was logged.  :func:`log_config` is a
:func:`logging.config.dictConfig` mapping that uvicorn applies itself in each worker process it
starts (``serve --workers N``): the formatter and filter are named by import path, so a spawned
worker builds them again.

    >>> logging.config.dictConfig(log_config("INFO"))                  # doctest: +SKIP
    >>> uvicorn.run(app, log_config=log_config("INFO"))                 # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import logging.config
from typing import Any

from gateway.tracing import request_id
from genaiops.tracing import current_ids

__all__ = ["ContextFilter", "JSONFormatter", "configure", "log_config"]


class ContextFilter(logging.Filter):
    """Puts the request id and the current trace/span ids on each record (when there are)."""

    def filter(self, record: logging.LogRecord) -> bool:
        rid = request_id()
        if rid is not None and not hasattr(record, "request_id"):
            record.request_id = rid
        ids = current_ids()
        if ids is not None and not hasattr(record, "trace_id"):
            record.trace_id, record.span_id = ids
        return True


class JSONFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "pid": record.process,
        }
        for key in ("request_id", "trace_id", "span_id"):
            value = getattr(record, key, None)
            if value is not None:
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def log_config(level: str = "WARNING") -> dict[str, Any]:
    """Everything (the gateway, uvicorn, libraries) to stderr as JSON at ``level``."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": "gateway.logs.ContextFilter"}},
        "formatters": {"json": {"()": "gateway.logs.JSONFormatter"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "json",
                "filters": ["context"],
            }
        },
        # uvicorn's loggers keep no handler of their own: their lines go through the root's
        "loggers": {
            **{
                name: {"handlers": [], "propagate": True}
                for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
            },
            # a line per upstream HTTP call at INFO: only their warnings
            **{name: {"level": "WARNING"} for name in ("httpx", "httpcore")},
        },
        "root": {"handlers": ["stderr"], "level": level.upper()},
    }


def configure(level: str = "WARNING") -> None:
    """Apply :func:`log_config` to this process."""
    logging.config.dictConfig(log_config(level))
