"""Kind 1: the prompt-attack classifier (scikit-learn on MiniLM embeddings + hashed n-grams).

The model is a scikit-learn ``Pipeline``: the feature map the gateway also uses
(:func:`gateway.safety.classifier.build_features`) and a ``LogisticRegression``.  The operating
threshold is the one with the best F1 on out-of-fold scores of the training split (grouped
folds, so no template is on both sides of a fold), never on the test split.  The published
model is the feature parameters plus the linear weights (``weights.npz``): no pickle.

Reported on the held-out test split: precision, recall, F1, ROC-AUC, FPR, the FPR on benign
prompts that use trigger words innocently, recall per source, and the offline default
detector's figures on the same texts for comparison.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import numpy as np

from gateway.safety.classifier import (
    ClassifierManifest,
    LexicalParams,
    PromptAttackScorer,
    build_features,
)
from genaiops.serving import publish
from training.kinds import Comparison, KindResult, TrainContext
from training.kinds.prompt_attack_data import (
    Example,
    build_dataset,
    examples_digest,
    split,
)
from training.report import SourceFigure
from training.spec import PromptAttackSpec

__all__ = ["PromptAttackKind", "binary_metrics", "load_eval"]

INNOCENT = "written innocent triggers (benign)"


def binary_metrics(y: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    """Precision, recall, F1, FPR at ``threshold`` and the threshold-free ROC-AUC."""
    from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

    pred = (scores >= threshold).astype(int)
    neg = y == 0
    out = {
        "precision": float(precision_score(y, pred, zero_division=0)),
        "recall": float(recall_score(y, pred, zero_division=0)),
        "f1": float(f1_score(y, pred, zero_division=0)),
        "fpr": float(pred[neg].mean()) if neg.any() else 0.0,
        "threshold": float(threshold),
    }
    if len(set(y.tolist())) == 2:
        out["roc_auc"] = float(roc_auc_score(y, scores))
    return out


def _best_threshold(y: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import precision_recall_curve

    p, r, t = precision_recall_curve(y, scores)
    f1 = 2 * p[:-1] * r[:-1] / np.maximum(p[:-1] + r[:-1], 1e-12)
    best = float(t[int(np.argmax(f1))]) if len(t) else 0.5
    return min(max(best, 1e-6), 1 - 1e-6)


def _per_source(test: list[Example], flagged: np.ndarray) -> dict[str, SourceFigure]:
    out: dict[str, SourceFigure] = {}
    for src in sorted({e.source for e in test}):
        idx = [i for i, e in enumerate(test) if e.source == src]
        n, hit = len(idx), int(flagged[idx].sum())
        label: Literal[0, 1] = 1 if test[idx[0]].label else 0
        out[src] = SourceFigure(n=n, flagged=hit, rate=round(hit / n, 4), label=label)
    return out


def _offline_flags(test: list[Example]) -> np.ndarray:
    from gateway.safety.detectors import OfflineDetector

    det = OfflineDetector()
    return np.array([det.analyze(e.text, e.role).attack for e in test], dtype=int)


def load_eval(folder: Path) -> list[Example]:
    """The held-out split a run wrote to ``eval/test.jsonl``."""
    rows = [json.loads(x) for x in (folder / "test.jsonl").read_text().splitlines() if x]
    return [Example(r["text"], r["label"], r["source"], r["role"]) for r in rows]


class PromptAttackKind:
    """Train, compare and publish the prompt-attack classifier."""

    def train(self, spec: PromptAttackSpec, ctx: TrainContext) -> KindResult:
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import GroupKFold
        from sklearn.pipeline import Pipeline

        ctx.progress("data", 0, 1)
        examples, records = build_dataset(spec)
        train, test, groups = split(examples, spec)
        ctx.progress("data", 1, 1)
        p = spec.params
        lex = LexicalParams(n_features=p.lexical_n_features)
        feats = build_features(p.features, lex, device=ctx.device, max_chars=spec.data.max_chars)
        clf = LogisticRegression(
            C=p.C,
            max_iter=p.max_iter,
            random_state=spec.seed,
            class_weight="balanced" if p.class_weight == "balanced" else None,
        )
        pipe = Pipeline([("features", feats), ("clf", clf)])
        texts = [e.text for e in train]
        y = np.array([e.label for e in train])
        # embed once in batches (progress + cache); the pipeline's transforms then hit the cache
        step = 64
        for i in range(0, len(texts), step):
            feats.transform(texts[i : i + step])
            ctx.progress("features", min(i + step, len(texts)), len(texts))
        x = feats.transform(texts)
        folds = min(p.cv_folds, len(set(groups.tolist())))
        oof = np.zeros(len(y))
        for k, (tr, va) in enumerate(GroupKFold(n_splits=folds).split(x, y, groups)):
            ctx.progress("cross-validation", k, folds)
            fold = LogisticRegression(**clf.get_params()).fit(x[tr], y[tr])
            oof[va] = fold.predict_proba(x[va])[:, 1]
            fold_m = binary_metrics(y[va], oof[va], 0.5)
            ctx.log_metrics({f"cv_fold_{m}": v for m, v in fold_m.items()}, k)
        ctx.progress("cross-validation", folds, folds)
        # per-feature-set out-of-fold AUC: the measurement the feature choice rests on
        cv_auc = _feature_set_auc(x, y, groups, folds, feats, clf) if len(p.features) > 1 else {}
        threshold = p.threshold or _best_threshold(y, oof)
        ctx.progress("fit", 0, 1)
        pipe.fit(texts, y)
        ctx.progress("fit", 1, 1)
        fitted = pipe.named_steps["clf"]
        ctx.log_metrics({"train_loss": _log_loss(y, pipe.predict_proba(texts)[:, 1])}, folds)

        test_texts = [e.text for e in test]
        y_test = np.array([e.label for e in test])
        scores = pipe.predict_proba(test_texts)[:, 1] if test else np.zeros(0)
        metrics = binary_metrics(y_test, scores, threshold)
        flagged = (scores >= threshold).astype(int)
        innocent = [i for i, e in enumerate(test) if e.source == INNOCENT]
        if innocent:
            metrics["fpr_innocent_triggers"] = float(flagged[innocent].mean())
        off = _offline_flags(test)
        for name, val in binary_metrics(y_test, off.astype(float), 0.5).items():
            if name not in ("threshold", "roc_auc"):
                metrics[f"offline_{name}"] = val
        metrics |= {"cv_oof_" + k: v for k, v in binary_metrics(y, oof, threshold).items()}
        metrics |= cv_auc
        metrics |= {"n_train": float(len(train)), "n_test": float(len(test))}

        model_dir = ctx.out_dir / "model"
        model_dir.mkdir(parents=True, exist_ok=True)
        np.savez(
            model_dir / "weights.npz",
            coef=fitted.coef_.astype(np.float64),
            intercept=fitted.intercept_.astype(np.float64),
        )
        from genaiops.providers import LocalEmbedder

        manifest = ClassifierManifest(
            model=spec.name,
            run_id=ctx.run_id,
            features=list(p.features),
            embedder_model_id=LocalEmbedder().model_id if "embedding" in p.features else None,
            lexical=lex,
            max_chars=spec.data.max_chars,
            threshold=threshold,
            weights_sha256=hashlib.sha256((model_dir / "weights.npz").read_bytes()).hexdigest(),
            metrics={
                k: metrics[k] for k in ("precision", "recall", "f1", "roc_auc") if k in metrics
            },
        )
        (model_dir / "manifest.json").write_text(manifest.model_dump_json(indent=2))
        eval_dir = ctx.out_dir / "eval"
        eval_dir.mkdir(parents=True, exist_ok=True)
        with (eval_dir / "test.jsonl").open("w", encoding="utf-8") as f:
            for e, s in zip(test, scores, strict=True):
                row = {
                    "text": e.text,
                    "label": e.label,
                    "source": e.source,
                    "role": e.role,
                    "score": round(float(s), 6),
                }
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        per_source = _per_source(test, flagged) if test else {}
        offline = _per_source(test, off) if test else {}
        return KindResult(
            metrics=metrics,
            data=records,
            per_source=per_source,
            data_digest={"train": examples_digest(train), "test": examples_digest(test)},
            extra={
                "offline_per_source": {k: v.model_dump() for k, v in offline.items()},
                "features": list(p.features),
            },
        )

    def compare(self, challenger: Path, champion: Path, metric: str) -> Comparison:
        """Both versions scored on the challenger's held-out split, each at its own threshold."""
        test = load_eval(challenger / "eval")
        y = np.array([e.label for e in test])
        texts = [e.text for e in test]
        out = {}
        for name, folder in (("challenger", challenger), ("champion", champion)):
            scorer = PromptAttackScorer(folder / "model")
            out[name] = binary_metrics(y, scorer.scores(texts), scorer.threshold)
        if metric not in out["challenger"]:
            raise KeyError(metric)
        return Comparison(
            metric,
            out["challenger"][metric],
            out["champion"][metric],
            {"n": len(test), **{k: v for k, v in out.items()}},
        )

    def publish(self, model: str, version: str, folder: Path, history: list[str]) -> None:
        """Copy the version into the gateway's serving folder and point ``champion.json`` at it."""

        def stamp(dest: Path) -> None:
            manifest = ClassifierManifest.model_validate_json((dest / "manifest.json").read_text())
            manifest.version = version
            (dest / "manifest.json").write_text(manifest.model_dump_json(indent=2))
            PromptAttackScorer(dest)  # refuses a folder whose weights do not match the manifest

        publish(model, "prompt_attack", version, folder / "model", history, check=stamp)


def _log_loss(y: np.ndarray, p: np.ndarray) -> float:
    from sklearn.metrics import log_loss

    return float(log_loss(y, np.clip(p, 1e-9, 1 - 1e-9), labels=[0, 1]))


def _feature_set_auc(
    x: Any, y: np.ndarray, groups: np.ndarray, folds: int, feats: Any, clf: Any
) -> dict[str, float]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import GroupKFold

    x = x.tocsr() if hasattr(x, "tocsr") else x
    widths = [
        384 if name == "embedding" else int(t.n_features) for name, t in feats.transformer_list
    ]
    names = [name for name, _ in feats.transformer_list]
    cols, start = {}, 0
    for n, w in zip(names, widths, strict=True):
        cols[n] = (start, start + w)
        start += w
    sets = {"embedding": ["embedding"], "lexical": ["char", "word"]}
    out = {}
    for label, parts in sets.items():
        idx = np.concatenate([np.arange(*cols[p]) for p in parts if p in cols])
        sub = x[:, idx]
        oof = np.zeros(len(y))
        for tr, va in GroupKFold(n_splits=folds).split(sub, y, groups):
            oof[va] = (
                LogisticRegression(**clf.get_params())
                .fit(sub[tr], y[tr])
                .predict_proba(sub[va])[:, 1]
            )
        out[f"cv_auc_{label}_only"] = float(roc_auc_score(y, oof))
    return out
