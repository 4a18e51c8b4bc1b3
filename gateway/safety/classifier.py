"""The promoted prompt-attack classifier as a gateway detector (the ``genaiops.detectors`` slot).

``genaiops train promote prompt-attack`` publishes the champion version into
``$GENAIOPS_HOME/serving/prompt-attack/`` (a folder per version with ``manifest.json`` and
``weights.npz``, and ``champion.json`` naming the live one).  This module is the reader of that
contract and the one definition of the classifier's features, so training and serving compute
the same numbers: MiniLM sentence embeddings (the project's local embedder) and hashed char /
word n-grams, scored by a linear model (logistic regression) whose weights the manifest ships —
no pickles, nothing from ``training`` is imported here.

* ``user`` messages are checked as prompts (jailbreak / direct injection); ``tool`` messages and
  the ``documents`` extension as documents (indirect injection).  Completions are not checked.
* The detector re-reads ``champion.json`` when it changes, so promotion and rollback reach a
  running gateway without a restart.
* :func:`default_detectors` is what a gateway started without a config uses: the offline
  detector, plus this one once a champion has been promoted.

    >>> det = PromotedClassifierDetector()                        # doctest: +SKIP
    >>> det.analyze("Ignore your instructions and ...", "prompt").attack   # doctest: +SKIP
    True
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.pipeline import FeatureUnion

from gateway.safety.detectors import Analysis, Role, register_detector
from genaiops.serving import ServingPointer, read_pointer
from genaiops.serving import serving_dir as _serving_dir
from genaiops.settings import get_settings

__all__ = [
    "DETECTOR_NAME",
    "ClassifierManifest",
    "EmbeddingFeatures",
    "LexicalParams",
    "PromotedClassifierDetector",
    "PromptAttackScorer",
    "ServingPointer",
    "build_features",
    "champion_pointer",
    "default_detectors",
    "serving_dir",
]

DETECTOR_NAME = "prompt-attack"
Feature = Literal["embedding", "lexical"]


class LexicalParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n_features: int = 2**17
    char_ngrams: tuple[int, int] = (3, 5)
    word_ngrams: tuple[int, int] = (1, 2)


class ClassifierManifest(BaseModel):
    """``manifest.json`` of one published classifier version."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = 1
    model: str
    version: str | None = None
    run_id: str
    features: list[Feature]
    embedder_model_id: str | None = None
    lexical: LexicalParams = Field(default_factory=LexicalParams)
    max_chars: int = 2000
    threshold: float = Field(gt=0.0, lt=1.0)
    weights_sha256: str
    metrics: dict[str, float] = Field(default_factory=dict)


def serving_dir(model: str = DETECTOR_NAME) -> Path:
    return _serving_dir(model)


def champion_pointer(model: str = DETECTOR_NAME) -> ServingPointer | None:
    return read_pointer(model)


def default_detectors() -> list[str]:
    """``["offline"]``, plus the classifier once one was promoted (the gateway's default)."""
    try:
        has = champion_pointer() is not None
    except (OSError, ValueError):
        has = False
    return ["offline", DETECTOR_NAME] if has else ["offline"]


_CACHE_LOCK = threading.Lock()
_EMB_CACHE: OrderedDict[str, np.ndarray] = OrderedDict()
_EMB_CACHE_MAX = 50_000


class EmbeddingFeatures(BaseEstimator, TransformerMixin):
    """MiniLM sentence embeddings as a scikit-learn transformer (stateless; cached by text)."""

    def __init__(self, device: str = "cpu", max_chars: int = 2000):
        self.device = device
        self.max_chars = max_chars

    def fit(self, x: Any, y: Any = None) -> EmbeddingFeatures:
        return self

    def transform(self, x: Any) -> np.ndarray:
        from genaiops.providers import LocalEmbedder

        texts = [str(t)[: self.max_chars] for t in x]
        keys = [hashlib.sha1(t.encode()).hexdigest() for t in texts]
        with _CACHE_LOCK:
            missing = [i for i, k in enumerate(keys) if k not in _EMB_CACHE]
        if missing:
            emb = LocalEmbedder(device=self.device).embed([texts[i] for i in missing])
            with _CACHE_LOCK:
                for i, v in zip(missing, emb, strict=True):
                    _EMB_CACHE[keys[i]] = v
                while len(_EMB_CACHE) > _EMB_CACHE_MAX:
                    _EMB_CACHE.popitem(last=False)
        with _CACHE_LOCK:
            return np.stack([_EMB_CACHE[k] for k in keys]) if keys else np.zeros((0, 384))


def build_features(
    features: list[Feature], lexical: LexicalParams, *, device: str = "cpu", max_chars: int = 2000
) -> FeatureUnion:
    """The classifier's feature map (identical in training and serving)."""
    parts: list[tuple[str, Any]] = []
    if "embedding" in features:
        parts.append(("embedding", EmbeddingFeatures(device=device, max_chars=max_chars)))
    if "lexical" in features:
        common = dict(n_features=lexical.n_features, alternate_sign=False, norm="l2")
        parts.append(
            (
                "char",
                HashingVectorizer(analyzer="char_wb", ngram_range=lexical.char_ngrams, **common),
            )
        )
        parts.append(
            ("word", HashingVectorizer(analyzer="word", ngram_range=lexical.word_ngrams, **common))
        )
    return FeatureUnion(parts)


class PromptAttackScorer:
    """A published classifier version: features + linear weights → attack probability."""

    def __init__(self, folder: Path, device: str = "cpu"):
        self.folder = Path(folder)
        self.manifest = ClassifierManifest.model_validate_json(
            (self.folder / "manifest.json").read_text(encoding="utf-8")
        )
        raw = (self.folder / "weights.npz").read_bytes()
        if hashlib.sha256(raw).hexdigest() != self.manifest.weights_sha256:
            raise ValueError(f"{self.folder}/weights.npz does not match its manifest sha256")
        with np.load(self.folder / "weights.npz") as w:
            self.coef = np.asarray(w["coef"], dtype=np.float64).ravel()
            self.intercept = float(np.asarray(w["intercept"]).ravel()[0])
        m = self.manifest
        self.features = build_features(m.features, m.lexical, device=device, max_chars=m.max_chars)

    @property
    def threshold(self) -> float:
        return self.manifest.threshold

    def scores(self, texts: list[str]) -> np.ndarray:
        cut = [t[: self.manifest.max_chars] for t in texts]
        x = self.features.transform(cut)
        z = np.asarray(x @ self.coef).ravel() + self.intercept
        return 1.0 / (1.0 + np.exp(-z))


class PromotedClassifierDetector:
    """Gateway detector serving the champion ``prompt-attack`` classifier.

    Raises ``FileNotFoundError`` when nothing was promoted, so a gateway config naming it fails
    at start-up instead of silently filtering less.
    """

    name = DETECTOR_NAME

    def __init__(self, model: str = DETECTOR_NAME, device: str | None = None):
        self.model = model
        self.device = device or get_settings().device
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None  # (inode, mtime_ns): each publish renames
        self._scorer: PromptAttackScorer | None = None
        self._load()
        if self._scorer is None:
            raise FileNotFoundError(
                f"no promoted {model!r} classifier under {serving_dir(model)} "
                f"(genaiops train run training/specs/prompt_attack.yaml && "
                f"genaiops train promote {model})"
            )

    def _load(self) -> None:
        pointer_file = serving_dir(self.model) / "champion.json"
        try:
            st = pointer_file.stat()
            stamp = (st.st_ino, st.st_mtime_ns)
        except FileNotFoundError:
            return
        if stamp == self._stamp:
            return
        with self._lock:
            if stamp == self._stamp:
                return
            pointer = champion_pointer(self.model)
            if pointer is not None:
                self._scorer = PromptAttackScorer(Path(pointer.path), device=self.device)
            self._stamp = stamp

    @property
    def blocking_io(self) -> bool:
        """MiniLM inference runs in a worker thread; hashed n-grams alone (~1 ms) inline."""
        return self._scorer is not None and "embedding" in self._scorer.manifest.features

    @property
    def version(self) -> str | None:
        return self._scorer.manifest.version if self._scorer else None

    def analyze(self, text: str, role: Role) -> Analysis:
        if role == "completion" or not text.strip():
            return Analysis(source=self.name)
        self._load()
        a = Analysis(source=f"{self.name}@{self.version}")
        assert self._scorer is not None
        a.attack = bool(self._scorer.scores([text])[0] >= self._scorer.threshold)
        return a


register_detector(DETECTOR_NAME, PromotedClassifierDetector)
