"""Gateway configuration: deployments, model aliases, limits, state, safety — one YAML file.

Validated by pydantic models with ``extra="forbid"``; :func:`load_config` names the file and the
key on error.  Without a file, :func:`default_config` serves the embedded models.

    deployments:
      - {name: gpt4o-eu, backend: azure_openai, base_url: https://x.openai.azure.com,
         azure_deployment: gpt-4o, api_key_env: AZURE_OPENAI_KEY}
      - {name: local, backend: local}
    models:
      - {name: chat, deployments: [{deployment: gpt4o-eu, weight: 100}], fallback: [local]}
    state: {kind: postgres, dsn_env: GENAIOPS_PG_DSN}   # or {kind: redis, redis_url: ...}

    >>> cfg = load_config("gateway.yaml")          # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, model_validator

from genaiops.settings import get_settings
from genaiops.specs import load_yaml_model

__all__ = [
    "AliasConfig",
    "CaptureConfig",
    "DeploymentConfig",
    "GatewayConfig",
    "LimitsConfig",
    "SafetyConfig",
    "SafetyPolicy",
    "ShadowConfig",
    "StateConfig",
    "WeightedDeployment",
    "default_config",
    "load_config",
]

Kind = Literal["chat", "embeddings"]
LOCAL_CONTEXT_WINDOW = 8192  # SmolLM2-135M-Instruct: llama.context_length in its GGUF
Category = Literal["hate", "sexual", "violence", "self_harm"]


def _default_thresholds() -> dict[Category, int]:
    # Azure's default: block medium and high (severity >= 4 on the 0-7 scale)
    return {"hate": 4, "sexual": 4, "violence": 4, "self_harm": 4}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DeploymentConfig(_Strict):
    """One concrete model endpoint."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9._:-]+$")
    backend: Literal["local", "openai_compatible", "azure_openai"]
    kind: Kind = "chat"
    model: str | None = Field(
        default=None,
        description="upstream model name (openai_compatible); for a local chat deployment a "
        "fine-tuned model: a folder, models:/NAME@champion or models:/NAME/VERSION (published "
        "by `genaiops train promote`); default the embedded SmolLM2",
    )
    base_url: str | None = None
    api_key_env: str | None = Field(default=None, description="env var holding the upstream key")
    azure_deployment: str | None = None
    api_version: str = "2024-10-21"
    entra_token_env: str | None = Field(
        default=None, description="env var holding an Entra ID bearer token (azure_openai)"
    )
    entra_auth: bool = Field(
        default=False,
        description="azure_openai: get tokens from azure-identity's DefaultAzureCredential",
    )
    entra_scope: str = "https://cognitiveservices.azure.com/.default"
    timeout_s: float = Field(default=60.0, gt=0)
    connect_timeout_s: float = Field(default=5.0, gt=0)
    max_retries: int = Field(default=2, ge=0, le=10)
    backoff_s: float = Field(default=0.25, ge=0)
    max_retry_after_s: float = Field(default=10.0, ge=0)
    breaker_failures: int = Field(
        default=5, ge=1, description="consecutive failed requests that open the circuit"
    )
    breaker_cooldown_s: float = Field(
        default=30.0, ge=0, description="while open, the deployment is tried last"
    )
    context_window: int | None = Field(
        default=None,
        ge=1,
        description="prompt tokens the model accepts (local SmolLM2: 8192, from its GGUF); "
        "a prompt whose bound is larger gets 400 context_length_exceeded",
    )
    prompt_count: Literal["tiktoken", "bytes"] | None = Field(
        default=None,
        description="how admission bounds prompt tokens: tiktoken (cl100k) or bytes (UTF-8 "
        "length, a bound for any byte-level tokenizer); default bytes for local, else tiktoken",
    )
    image_base_tokens: int = Field(default=85, ge=0, description="per image (OpenAI gpt-4o)")
    image_tile_tokens: int = Field(default=170, ge=0, description="per 512-px tile")

    @model_validator(mode="after")
    def _check(self) -> DeploymentConfig:
        if self.backend == "openai_compatible" and not self.base_url:
            raise ValueError("openai_compatible needs base_url (ending in /v1)")
        if self.backend == "azure_openai" and not (self.base_url and self.azure_deployment):
            raise ValueError("azure_openai needs base_url (resource endpoint) and azure_deployment")
        if self.backend == "local" and self.kind == "embeddings" and self.model:
            raise ValueError("model: is for local chat deployments (embedders: index specs)")
        if self.backend == "local" and self.kind == "chat" and self.context_window is None:
            self.context_window = LOCAL_CONTEXT_WINDOW
        return self

    def token_rule(self) -> str:
        """The prompt-counting rule admission uses for this deployment."""
        return self.prompt_count or ("bytes" if self.backend == "local" else "tiktoken")


class WeightedDeployment(_Strict):
    deployment: str
    weight: float = Field(default=100.0, ge=0)


class ShadowConfig(_Strict):
    """Mirror a share of traffic to a deployment; its answers never reach the client."""

    deployment: str
    percent: float = Field(default=100.0, ge=0, le=100)


class AliasConfig(_Strict):
    """A public model name clients send as ``model``."""

    name: str = Field(min_length=1)
    kind: Kind = "chat"
    deployments: list[WeightedDeployment] = Field(min_length=1)
    fallback: list[str] = Field(default_factory=list, description="tried in order on failure")
    shadow: ShadowConfig | None = None
    safety_policy: str | None = None


class LimitsConfig(_Strict):
    rpm: int | None = Field(default=None, ge=0)
    tpm: int | None = Field(default=None, ge=0)
    quota: int | None = Field(default=None, ge=0, description="tokens per period")
    period: Literal["day", "month"] = "month"


class StateConfig(_Strict):
    """Where keys, limits, the ledger and captures live: ``kind`` sqlite (one host), redis
    (counters and keys on Redis, ledger on SQLite) or postgres (everything on PostgreSQL; the
    counters stay on Redis when ``redis_url`` is set).  ``backend`` is the older name of
    ``kind``.  The PostgreSQL connection string is read from the env var ``dsn_env`` names."""

    kind: Literal["sqlite", "redis", "postgres"] = Field(
        default="sqlite", validation_alias=AliasChoices("kind", "backend")
    )
    path: Path | None = Field(default=None, description="SQLite file (default <home>/gateway)")
    redis_url: str | None = None
    dsn_env: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="env var holding the PostgreSQL connection string (kind postgres)",
    )
    pool_size: int = Field(
        default=10, ge=1, le=200, description="PostgreSQL connections a pool keeps"
    )
    ledger_path: Path | None = None
    ledger_sync: Literal["normal", "full"] = Field(
        default="normal", description="normal survives kill -9; full also power loss"
    )

    @property
    def backend(self) -> str:
        """The older name of :attr:`kind`."""
        return self.kind

    @model_validator(mode="after")
    def _check(self) -> StateConfig:
        if self.kind == "redis" and not self.redis_url:
            raise ValueError("kind redis needs redis_url")
        if self.kind == "postgres" and not self.dsn_env:
            raise ValueError("kind postgres needs dsn_env (the env var holding the DSN)")
        if self.kind != "postgres" and self.dsn_env:
            raise ValueError(f"dsn_env is only used by kind postgres (kind is {self.kind})")
        return self


class SafetyPolicy(_Strict):
    """Thresholds on the Azure 0–7 severity scale; a category at or above its threshold blocks."""

    thresholds: dict[Category, int] = Field(default_factory=_default_thresholds)
    jailbreak: bool = True
    indirect_attack: bool = True
    pii: Literal["off", "redact", "block"] = "redact"
    pii_types: list[str] = Field(
        default_factory=lambda: ["email", "phone", "credit_card", "api_key"]
    )
    blocklist: list[str] = Field(default_factory=list)
    check_output: bool = True
    fail_open: bool = False


class SafetyConfig(_Strict):
    enabled: bool = True
    detectors: list[str] = Field(
        # training hook: plus the promoted prompt-attack classifier once one exists (issue 8)
        default_factory=lambda: __import__(
            "gateway.safety.classifier", fromlist=["default_detectors"]
        ).default_detectors(),
        description="offline, azure, or a detector registered by a plugin (classifier slot)",
    )
    azure_endpoint: str | None = None
    azure_key_env: str | None = None
    azure_blocklists: list[str] = Field(default_factory=list)
    default_policy: str = "default"
    policies: dict[str, SafetyPolicy] = Field(default_factory=lambda: {"default": SafetyPolicy()})
    stream_window_chars: int = Field(default=120, ge=1)

    @model_validator(mode="after")
    def _check(self) -> SafetyConfig:
        if self.default_policy not in self.policies:
            raise ValueError(f"default_policy {self.default_policy!r} is not in policies")
        if "azure" in self.detectors and not (self.azure_endpoint and self.azure_key_env):
            raise ValueError("the azure detector needs azure_endpoint and azure_key_env")
        from gateway.safety.detectors import detector_factories

        known = {"azure", *detector_factories()}
        unknown = [d for d in self.detectors if d not in known]
        if unknown:
            raise ValueError(f"unknown detector(s) {unknown}; known: {sorted(known)}")
        return self


class CaptureConfig(_Strict):
    """What the gateway stores of its chat traffic for learning from production (off by default).

    A chat request is captured when capture is ``enabled``, its alias is in ``models`` (empty:
    every chat alias) and its key's team in ``teams`` (empty: every key), and its request id
    falls in the ``sample_rate`` (a hash of the id, so every replica makes the same choice).
    Records are stored after the safety engine's PII redaction; ``retention`` is enforced."""

    enabled: bool = False
    models: list[str] = Field(default_factory=list, description="aliases; empty: all")
    teams: list[str] = Field(default_factory=list, description="key teams; empty: all keys")
    sample_rate: float = Field(default=1.0, ge=0, le=1)
    retention: str = Field(default="7d", description="captures older than this are deleted")
    feedback_retention: str = Field(default="90d", description="feedback older than this too")
    max_chars: int = Field(
        default=32_000, ge=256, description="text stored per record (the rest is cut)"
    )
    path: Path | None = Field(default=None, description="SQLite file (default beside the ledger)")
    flush_interval_s: float = Field(
        default=0.5, gt=0, description="the batch writer's period (what kill -9 may lose)"
    )
    batch_max: int = Field(default=256, ge=1, description="records per write transaction")
    queue_max: int = Field(
        default=10_000, ge=1, description="records waiting to be written; more are dropped"
    )
    purge_interval_s: float = Field(default=600.0, gt=0, description="how often retention runs")
    allow_unredacted: bool = Field(
        default=False,
        description="capture even where no PII redaction runs (safety off or policy pii: off)",
    )

    @model_validator(mode="after")
    def _check(self) -> CaptureConfig:
        from gateway.errors import InvalidRequest
        from gateway.rollout import parse_duration

        for name in ("retention", "feedback_retention"):
            try:
                if parse_duration(getattr(self, name)) <= 0:
                    raise ValueError(f"{name} must be positive")
            except InvalidRequest as e:
                raise ValueError(f"{name}: {e.message}") from e
        return self

    def retention_s(self) -> float:
        from gateway.rollout import parse_duration

        return parse_duration(self.retention)

    def feedback_retention_s(self) -> float:
        from gateway.rollout import parse_duration

        return parse_duration(self.feedback_retention)


class GatewayConfig(_Strict):
    """The whole gateway: what to serve, limits, where state lives, safety."""

    deployments: list[DeploymentConfig] = Field(min_length=1)
    models: list[AliasConfig] = Field(min_length=1)
    teams: dict[str, LimitsConfig] = Field(default_factory=dict)
    state: StateConfig = Field(default_factory=StateConfig)
    safety: SafetyConfig = Field(default_factory=SafetyConfig)
    capture: CaptureConfig = Field(default_factory=CaptureConfig)
    admin_key_env: str = "GENAIOPS_ADMIN_KEY"
    max_body_bytes: int = Field(default=2_000_000, ge=1024)
    default_max_tokens: int = Field(default=512, ge=1)
    max_max_tokens: int = Field(default=16384, ge=1)
    max_messages: int = Field(default=1024, ge=1, description="messages per chat request")
    lease_s: float = Field(
        default=30.0,
        gt=0,
        description="a reservation whose gateway process stopped renewing it for this long "
        "(kill -9, crash) is released by any other process, or by the next start",
    )
    progress_interval_s: float = Field(
        default=1.0, gt=0, description="how often leases are renewed and stream progress saved"
    )
    local_batch_size: int = Field(
        default=8, ge=1, le=64, description="requests of a local deployment decoded together"
    )
    local_batch_wait_ms: float = Field(
        default=5.0,
        ge=0,
        description="unused since continuous batching (requests join at the next decoding "
        "step); kept so existing configs load",
    )
    local_queue_max: int = Field(
        default=64, ge=1, description="requests waiting for a local model; more → 503"
    )
    local_queue_wait_s: float = Field(
        default=30.0, gt=0, description="longest wait for a local model to start; more → 503"
    )
    rollout_tick_s: float = Field(default=1.0, gt=0)

    @model_validator(mode="after")
    def _check(self) -> GatewayConfig:
        names = [d.name for d in self.deployments]
        if len(set(names)) != len(names):
            raise ValueError("deployment names must be unique")
        kinds = {d.name: d.kind for d in self.deployments}
        seen: set[str] = set()
        for a in self.models:
            if a.name in seen:
                raise ValueError(f"model alias {a.name!r} is defined twice")
            seen.add(a.name)
            refs = [w.deployment for w in a.deployments] + a.fallback
            refs += [a.shadow.deployment] if a.shadow else []
            for ref in refs:
                if ref not in kinds:
                    raise ValueError(f"alias {a.name!r} names unknown deployment {ref!r}")
                if kinds[ref] != a.kind:
                    raise ValueError(f"alias {a.name!r} ({a.kind}) uses {ref!r} ({kinds[ref]})")
            if a.safety_policy and a.safety_policy not in self.safety.policies:
                raise ValueError(f"alias {a.name!r}: unknown safety_policy {a.safety_policy!r}")
        chat = {a.name for a in self.models if a.kind == "chat"}
        unknown = [m for m in self.capture.models if m not in chat]
        if unknown:
            raise ValueError(f"capture.models names no chat alias: {unknown}")
        if self.capture.enabled and not self.safety.enabled and not self.capture.allow_unredacted:
            raise ValueError(
                "capture needs safety.enabled (captured text is stored after PII redaction); "
                "set capture.allow_unredacted: true to store it unredacted"
            )
        return self

    def deployment(self, name: str) -> DeploymentConfig:
        return next(d for d in self.deployments if d.name == name)

    def alias(self, name: str) -> AliasConfig | None:
        return next((a for a in self.models if a.name == name), None)

    def state_path(self) -> Path:
        return self.state.path or get_settings().path("gateway", "state.db")

    def ledger_path(self) -> Path:
        return self.state.ledger_path or get_settings().path("gateway", "ledger.db")

    def capture_path(self) -> Path:
        """The capture store's SQLite file: ``capture.path`` or beside the ledger."""
        return self.capture.path or self.ledger_path().with_name("capture.db")


def default_config() -> GatewayConfig:
    """The embedded models: ``genaiops-local`` (SmolLM2) and ``genaiops-embed`` (MiniLM)."""
    return GatewayConfig(
        deployments=[
            DeploymentConfig(name="local-smollm2", backend="local"),
            DeploymentConfig(name="local-minilm", backend="local", kind="embeddings"),
        ],
        models=[
            AliasConfig(
                name="genaiops-local", deployments=[WeightedDeployment(deployment="local-smollm2")]
            ),
            AliasConfig(
                name="genaiops-embed",
                kind="embeddings",
                deployments=[WeightedDeployment(deployment="local-minilm")],
            ),
        ],
    )


def load_config(path: str | Path | None) -> GatewayConfig:
    """Read a gateway YAML file, or the embedded default when ``path`` is None."""
    if path is None:
        return default_config()
    return load_yaml_model(path, GatewayConfig)
