"""One exception tree for the whole project.

Every error genaiops raises on purpose derives from :class:`GenAIOpsError`.  Callers can
catch the base class; the CLI turns it into a one-line message and exit status 2; the gateway
maps it once to OpenAI-shaped JSON.

    GenAIOpsError
    ├── ConfigError              bad settings, spec file or CLI option (names file + key)
    │   └── SpecError            a YAML spec failed validation
    ├── ProviderError            a model provider could not load or answer
    │   ├── ProviderUnavailable  package/weights/credentials missing
    │   ├── UpstreamError        a remote model endpoint failed (status, body excerpt)
    │   └── InputRejected        one input of a batch cannot be run (its index; the rest can)
    │       └── ContextWindowExceeded  prompt + max_tokens over the model's window
    ├── IndexingError            the indexing pipeline
    │   ├── SourceError          a source document could not be parsed (→ quarantined)
    │   ├── VersionNotFound      unknown version id or alias
    │   ├── AliasError           alias has no history to roll back to, bad name, ...
    │   └── BuildLockedError     another build holds a lock that it must not share
    ├── GatewayError             the gateway service (``gateway.errors``), each → OpenAI JSON
    │   ├── InvalidRequest       400 (└── ContentFiltered 400 content_filter)
    │   ├── AuthenticationFailed 401 · PermissionDenied 403 · NotFound 404 (└── ModelNotFound)
    │   ├── Conflict 409 · PayloadTooLarge 413
    │   ├── RateLimited          429 (└── QuotaExceeded 429 insufficient_quota)
    │   ├── UpstreamFailed       502 (└── UpstreamTimeout 504; BackendFailure per deployment)
    │   └── SafetyUnavailable · StateUnavailable  503 filter / state store down (fail closed)
    └── EvaluationError          flows, runs, metrics and the gate (``evaluation.errors``)
        ├── DataError            dataset file/line unreadable · ColumnMappingError (lists columns)
        ├── FlowError            flow.dag.yaml invalid (file + key) (└── NodeError: one line)
        ├── JudgeError           no usable 1-5 score (→ NaN, counted) · RunNotFound
        └── GateError            the gate names a variant/metric the run lacks

Exceptions carry data only; they never log or touch state when raised.
"""

from __future__ import annotations

__all__ = [
    "AliasError",
    "BuildLockedError",
    "ConfigError",
    "ContextWindowExceeded",
    "EvaluationError",
    "GatewayError",
    "GenAIOpsError",
    "IndexingError",
    "InputRejected",
    "ProviderError",
    "ProviderUnavailable",
    "SourceError",
    "SpecError",
    "UpstreamError",
    "VersionNotFound",
]


class GenAIOpsError(Exception):
    """Base class of every deliberate genaiops error."""


class ConfigError(GenAIOpsError):
    """Invalid settings, options or configuration files."""


class SpecError(ConfigError):
    """A YAML spec failed validation.

    ``path`` is the file, ``problems`` a list of ``(key, message)`` pairs where ``key`` is the
    dotted location inside the file (``sources.0.glob``).
    """

    def __init__(self, path: str, problems: list[tuple[str, str]]):
        self.path = path
        self.problems = problems
        lines = "; ".join(f"{key}: {msg}" if key else msg for key, msg in problems)
        super().__init__(f"{path}: {lines}")


class ProviderError(GenAIOpsError):
    """A model provider failed."""


class ProviderUnavailable(ProviderError):
    """A provider cannot be constructed: missing package, weights or credential."""


class InputRejected(ProviderError):
    """The model cannot take input ``index`` of a batch (unreadable text, too long): that one
    request fails, the others of the batch are run again without it."""

    def __init__(self, message: str, *, index: int = 0):
        super().__init__(message)
        self.index = index


class ContextWindowExceeded(InputRejected):
    """``prompt_tokens + max_tokens`` is more than the model's ``limit``: refused before any
    forward pass, so one huge prompt cannot hold the model for minutes."""

    def __init__(self, *, index: int, prompt_tokens: int, max_tokens: int, limit: int):
        super().__init__(
            f"This model's maximum context length is {limit} tokens. However, you requested "
            f"{prompt_tokens + max_tokens} tokens ({prompt_tokens} in the messages, "
            f"{max_tokens} in the completion).",
            index=index,
        )
        self.prompt_tokens, self.max_tokens, self.limit = prompt_tokens, max_tokens, limit


class UpstreamError(ProviderError):
    """A remote model endpoint answered with an error or did not answer."""

    def __init__(self, message: str, status: int | None = None):
        self.status = status
        super().__init__(message)


class IndexingError(GenAIOpsError):
    """Base of indexing errors."""


class SourceError(IndexingError):
    """A source document could not be read; the build quarantines it and goes on."""

    def __init__(self, path: str, reason: str):
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class VersionNotFound(IndexingError):
    """No index version or alias by that name."""


class AliasError(IndexingError):
    """An alias operation is not possible (bad name, nothing to roll back to)."""


class BuildLockedError(IndexingError):
    """A lock is held by another live process."""


class GatewayError(GenAIOpsError):
    """Base of gateway errors; the gateway package defines the subtree."""


class EvaluationError(GenAIOpsError):
    """Base of evaluation errors; the evaluation package defines the subtree."""
