"""The gateway's error subtree; every one maps to OpenAI-shaped JSON in exactly one handler.

    GatewayError                       (genaiops.errors)
    ├── InvalidRequest       400  invalid_request_error   malformed JSON, wrong types, bad params
    │   └── ContentFiltered  400  content_filter          prompt blocked (Azure innererror shape)
    ├── AuthenticationFailed 401  invalid_api_key         missing, unknown or revoked key
    ├── PermissionDenied     403  permission_error        admin route without the admin key
    ├── NotFound             404  not_found                unknown route, key, rollout
    │   └── ModelNotFound    404  model_not_found         unknown model alias
    ├── Conflict             409  conflict                 rollout already running, ...
    ├── PayloadTooLarge      413  request_too_large       body over ``max_body_bytes``
    ├── RateLimited          429  rate_limit_exceeded     RPM/TPM window full (Retry-After)
    │   └── QuotaExceeded    429  insufficient_quota      token quota for the period used up
    ├── UpstreamFailed       502  upstream_error          every deployment failed (after retries)
    │   ├── UpstreamTimeout  504  timeout
    │   └── BackendFailure   502  (per deployment; └── BackendBusy 503 model_busy: local queue
    │                              full or waited too long, Retry-After)
    ├── SafetyUnavailable    503  content_filter_error    the filter failed and policy fails closed
    ├── StateUnavailable     503  state_unavailable       SQLite/Redis (keys, limits) not reachable
    ├── DetectorFailed            (internal)               a detector gave no answer → the policy
    │                                                      decides: 503 / content_filter or pass
    └── ClientDisconnected        (internal → 499 row)     the client left before the answer

Exceptions carry data only (status, OpenAI type/code/param, extra headers).  The two internal
ones never reach a client as such: the chat route turns them into the policy's answer or a
ledger row with status 499.  ``BackendFailure``/``BackendBusy`` live in ``gateway.backends.base``.

    >>> raise ModelNotFound("model 'x' does not exist", param="model")   # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any, ClassVar

from genaiops.errors import GatewayError

__all__ = [
    "APIError",
    "AuthenticationFailed",
    "ClientDisconnected",
    "Conflict",
    "ContentFiltered",
    "DetectorFailed",
    "GatewayError",
    "InvalidRequest",
    "ModelNotFound",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "QuotaExceeded",
    "RateLimited",
    "SafetyUnavailable",
    "StateUnavailable",
    "UpstreamFailed",
    "UpstreamTimeout",
]


class APIError(GatewayError):
    """A gateway error with its HTTP status and OpenAI ``type``/``code``."""

    status: int = 500
    type: ClassVar[str] = "server_error"
    code: ClassVar[str | None] = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        status: int | None = None,
    ):
        super().__init__(message)
        if status is not None:
            self.status = status  # e.g. an upstream 422 passed through as 422
        self.message = message
        self.param = param
        self.error_code = code or self.code
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.error_code,
            }
        }


class InvalidRequest(APIError):
    status = 400
    type = "invalid_request_error"


class ContentFiltered(InvalidRequest):
    """The prompt was blocked; ``result`` is Azure's ``content_filter_result`` mapping."""

    code = "content_filter"

    def __init__(self, message: str, result: dict[str, Any], **kw: Any):
        super().__init__(message, param=kw.pop("param", "prompt"), **kw)
        self.result = result

    def body(self) -> dict[str, Any]:
        b = super().body()
        b["error"]["status"] = 400
        b["error"]["innererror"] = {
            "code": "ResponsibleAIPolicyViolation",
            "content_filter_result": self.result,
        }
        return b


class AuthenticationFailed(APIError):
    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class PermissionDenied(APIError):
    status = 403
    type = "permission_error"
    code = "permission_denied"


class NotFound(APIError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class Conflict(APIError):
    status = 409
    type = "invalid_request_error"
    code = "conflict"


class PayloadTooLarge(APIError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class RateLimited(APIError):
    """Over a per-minute limit; ``retry_after`` seconds until the window frees up."""

    status = 429
    type = "requests"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: float = 1.0, **kw: Any):
        super().__init__(message, **kw)
        self.retry_after = max(0.0, retry_after)
        self.headers.setdefault("retry-after", str(max(1, int(-(-self.retry_after // 1)))))
        self.headers.setdefault("retry-after-ms", str(int(self.retry_after * 1000)))


class QuotaExceeded(RateLimited):
    type = "insufficient_quota"
    code = "insufficient_quota"


class UpstreamFailed(APIError):
    status = 502
    type = "upstream_error"
    code = "upstream_error"


class UpstreamTimeout(UpstreamFailed):
    status = 504
    code = "timeout"


class SafetyUnavailable(APIError):
    status = 503
    type = "server_error"
    code = "content_filter_error"


class StateUnavailable(APIError):
    """The shared state (SQLite file or Redis) failed: no admission without it (fail closed)."""

    status = 503
    type = "server_error"
    code = "state_unavailable"


class DetectorFailed(GatewayError):
    """A detector could not give an answer (network, quota, malformed reply); the safety policy
    decides what that means (fail closed by default)."""


class ClientDisconnected(GatewayError):
    """The client went away before the answer was ready (recorded as status 499)."""
