"""Prometheus metrics, one registry per app (several gateways can live in one test process).

>>> m = Metrics(); m.requests.labels("chat", "dep", "200").inc()   # doctest: +SKIP
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

__all__ = ["Metrics"]


class Metrics:
    """Request, token, latency, rate-limit and safety metrics (``llm-emit-token-metric`` style)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "genaiops_gateway_requests",
            "Requests served",
            ["model", "deployment", "status"],
            registry=r,
        )
        self.tokens = Counter(
            "genaiops_gateway_tokens",
            "Tokens used",
            ["model", "deployment", "team", "kind"],
            registry=r,
        )
        self.latency = Histogram(
            "genaiops_gateway_request_seconds",
            "Request latency (to last byte)",
            ["model", "deployment"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=r,
        )
        self.limited = Counter(
            "genaiops_gateway_rate_limited",
            "Requests refused by limits",
            ["scope", "code"],
            registry=r,
        )
        self.safety = Counter(
            "genaiops_gateway_content_filtered",
            "Content filter actions",
            ["direction", "action"],
            registry=r,
        )
        self.quota_overshoot = Counter(
            "genaiops_gateway_quota_overshoot_tokens",
            "Tokens charged beyond their reservation (an upstream reported more than the bound)",
            ["model", "deployment"],
            registry=r,
        )
        self.upstream_failures = Counter(
            "genaiops_gateway_upstream_failures",
            "Deployment attempts that failed",
            ["deployment"],
            registry=r,
        )

        self.captured = Counter(
            "genaiops_gateway_captured",
            "Chat requests stored by capture",
            ["model"],
            registry=r,
        )
        self.capture_failures = Counter(
            "genaiops_gateway_capture_failures",
            "Captures lost (queue_full, build, write, submit) or retention runs failed (purge)",
            ["stage"],
            registry=r,
        )
        self.capture_purged = Counter(
            "genaiops_gateway_capture_purged",
            "Records deleted by capture retention",
            ["kind"],
            registry=r,
        )
        self.feedback = Counter(
            "genaiops_gateway_feedback",
            "End-user feedback received (POST /v1/feedback), by rating",
            ["model", "deployment", "rating"],
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
