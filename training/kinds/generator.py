"""Kind 3: LoRA SFT of the local generator (SmolLM2-135M-Instruct) for cited RAG answers.

* Data (:mod:`training.kinds.generator_data`): Python FAQ questions with retrieved context and
  the official answer plus a citation, in the chat shape the RAG flow sends; a seeded
  validation split.  Only the answer tokens carry loss.
* Training: PEFT ``LoraConfig`` on the attention projections, transformers ``Trainer`` from the
  dequantized base weights (float32 on CPU); the training loss of every step, and the
  validation loss before and after, go to MLflow as per-step metrics.
* Evaluation on the validation split, base vs LoRA, through the serving code itself
  (:class:`~genaiops.providers.generator.LocalGenerator`, greedy): ROUGE-L and answer similarity
  (:mod:`evaluation.metrics`) against the official answer, and groundedness from the offline
  judge (1–5, a word-overlap heuristic: no model judge runs offline).
* Output: the MERGED weights (``merge_and_unload`` + ``save_pretrained``, bfloat16, with the
  tokenizer) in ``model/``; a gateway ``local`` deployment serves it with ``model:`` set.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path
from typing import Any

from genaiops.serving import publish
from training.kinds import Comparison, KindResult, TrainContext, hf_trainer_args, quiet_trainer
from training.kinds.generator_data import Example, build_examples, messages_for
from training.spec import GeneratorSpec, expand_path

__all__ = ["GeneratorKind", "score"]

METRICS = ("rougeL", "answer_similarity", "groundedness")


def _encode(tok: Any, ex: Example, max_length: int) -> dict[str, Any]:
    """input_ids/labels for one example: the context is cut until prompt + answer fit."""
    answer = tok(ex.target, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    answer = answer[: max(1, max_length // 2)]
    ctx = [dict(c) for c in ex.context]
    for _ in range(8):
        text = tok.apply_chat_template(
            messages_for(ex.question, ctx), add_generation_prompt=True, tokenize=False
        )
        prompt = tok(text, add_special_tokens=False)["input_ids"]
        over = len(prompt) + len(answer) - max_length
        if over <= 0 or not ctx:
            break
        total = sum(len(c["text"]) for c in ctx) or 1
        keep = max(0.0, 1.0 - (over * 4.5) / total)  # ~4.5 chars per token, then re-check
        ctx = [{**c, "text": c["text"][: int(len(c["text"]) * keep)]} for c in ctx]
        ctx = [c for c in ctx if c["text"]] if keep < 0.05 else ctx
    prompt = prompt[: max_length - len(answer)]
    return {
        "input_ids": prompt + answer,
        "attention_mask": [1] * (len(prompt) + len(answer)),
        "labels": [-100] * len(prompt) + answer,
        "context": ctx,
    }


def score(generator: Any, ev: list[dict[str, Any]], max_new_tokens: int, batch: int) -> dict:
    """Greedy answers of ``generator`` on saved validation rows, and their mean metrics."""
    from evaluation.judges import JudgedEvaluator, OfflineJudge
    from evaluation.metrics import EvalSample, RougeEvaluator, SimilarityEvaluator
    from genaiops.providers import ChatMessage

    responses: list[str] = []
    for i in range(0, len(ev), batch):
        rows = ev[i : i + batch]
        convs = [[ChatMessage(m["role"], m["content"]) for m in r["messages"]] for r in rows]
        out = generator.generate_batch(convs, max_tokens=max_new_tokens, temperature=0.0)
        responses += [g.text.strip() for g in out]
    evaluators = [
        RougeEvaluator(),
        SimilarityEvaluator(),
        JudgedEvaluator("groundedness", OfflineJudge()),
    ]
    sums = dict.fromkeys(METRICS, 0.0)
    counts = dict.fromkeys(METRICS, 0)
    for r, resp in zip(ev, responses, strict=True):
        sample = EvalSample(
            query=r["question"],
            response=resp,
            context="\n".join(c["text"] for c in r["context"]),
            ground_truth=r["answer"],
        )
        got: dict[str, Any] = {}
        for e in evaluators:
            got |= e(sample)
        for m in METRICS:
            v = got.get(m)
            if isinstance(v, int | float) and not math.isnan(v):
                sums[m] += float(v)
                counts[m] += 1
    metrics = {m: sums[m] / counts[m] if counts[m] else 0.0 for m in METRICS}
    return {"metrics": metrics, "responses": responses}


def _handoff(spec: GeneratorSpec) -> dict[str, Any]:
    """The spec's ``gateway:`` section with its paths resolved (promotion runs from anywhere)."""
    h = spec.gateway

    def path(value: str | None, key: str) -> str | None:
        return str(expand_path(value, spec.base_dir, key=key)) if value else None

    return {
        "gate": path(h.gate, "gateway.gate"),
        "baseline": path(h.baseline, "gateway.baseline"),
        "config": path(h.config, "gateway.config"),
        "gate_limit": h.gate_limit,
        "gate_variants": h.gate_variants,
        "alias": h.alias,
        "steps": h.steps,
        "interval": h.interval,
    }


class GeneratorKind:
    """Train, compare, gate and publish a LoRA fine-tune of the local generator."""

    def train(self, spec: GeneratorSpec, ctx: TrainContext) -> KindResult:
        import torch
        from peft import LoraConfig, get_peft_model
        from transformers import (
            AutoModelForCausalLM,
            AutoTokenizer,
            DataCollatorForSeq2Seq,
            Trainer,
            TrainerCallback,
            TrainingArguments,
        )

        from datasets import Dataset  # type: ignore[attr-defined]  # HF datasets
        from genaiops.providers.generator import LocalGenerator, base_model_dir

        p = spec.params
        ctx.progress("data", 0, 1)
        train_ex, val_ex, records, source = build_examples(spec)
        base_dir = base_model_dir()
        tok = AutoTokenizer.from_pretrained(base_dir)
        tok.padding_side = "right"
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        enc_train = [_encode(tok, e, p.max_length) for e in train_ex]
        enc_val = [_encode(tok, e, p.max_length) for e in val_ex]
        cols = ("input_ids", "attention_mask", "labels")
        train_ds = Dataset.from_dict({c: [e[c] for e in enc_train] for c in cols})
        val_ds = Dataset.from_dict({c: [e[c] for e in enc_val] for c in cols})
        ctx.progress("data", 1, 1)

        model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
        lora = LoraConfig(
            r=p.lora_r,
            lora_alpha=p.lora_alpha,
            lora_dropout=p.lora_dropout,
            target_modules=list(p.target_modules),
            task_type="CAUSAL_LM",
        )
        peft_model = get_peft_model(model, lora)
        trainable = sum(x.numel() for x in peft_model.parameters() if x.requires_grad)

        class _Log(TrainerCallback):
            def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any):
                step = int(state.global_step)
                for src, dst in (("loss", "train_loss"), ("eval_loss", "val_loss")):
                    if logs and src in logs:
                        ctx.log_metrics({dst: float(logs[src])}, step)
                if logs and "loss" in logs:
                    ctx.progress("train", step, state.max_steps, loss=float(logs["loss"]))

            def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                ctx.progress("train", state.global_step, state.max_steps)

        args = TrainingArguments(
            num_train_epochs=p.epochs,
            max_steps=p.max_steps,
            per_device_train_batch_size=p.batch_size,
            per_device_eval_batch_size=p.eval_batch_size,
            gradient_accumulation_steps=p.grad_accum,
            learning_rate=p.learning_rate,
            warmup_steps=p.warmup_ratio,  # transformers 5: a float < 1 is a ratio of the steps
            eval_strategy="no",
            **hf_trainer_args(ctx, spec.seed),
        )
        trainer = Trainer(
            model=peft_model,
            args=args,
            train_dataset=train_ds,
            eval_dataset=val_ds,
            data_collator=DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-100),
            callbacks=[_Log()],
        )
        quiet_trainer(trainer)
        ctx.progress("validation loss", 0, 2)
        base_val_loss = float(trainer.evaluate()["eval_loss"])  # LoRA B = 0: the base model
        ctx.progress("validation loss", 1, 2)
        out = trainer.train()
        val_loss = float(trainer.evaluate()["eval_loss"])  # logged at the last step by _Log
        ctx.progress("validation loss", 2, 2)
        epochs_done = float(trainer.state.epoch or p.epochs)
        runtime = float(out.metrics["train_runtime"])
        steps = int(trainer.state.global_step)
        seen = steps * p.batch_size * p.grad_accum
        lengths = [len(e["input_ids"]) for e in enc_train]
        train_tokens = sum(lengths[i % len(lengths)] for i in range(seen))

        folder = ctx.out_dir / "model"
        merged: Any = peft_model.merge_and_unload()
        merged.to(torch.bfloat16).save_pretrained(folder)
        tok.padding_side = "left"
        tok.save_pretrained(folder)
        shutil.rmtree(ctx.out_dir / "hf", ignore_errors=True)
        del trainer, peft_model, merged, model

        # answered with the whole retrieved context, as served (max_length bounds training only)
        ev = [
            {
                "id": e.id,
                "question": e.question,
                "answer": e.answer,
                "context": e.context,
                "messages": messages_for(e.question, e.context),
            }
            for e in val_ex
        ]
        ctx.progress("evaluate base", 0, 1)
        base = score(LocalGenerator(ctx.device), ev, p.max_new_tokens, p.eval_batch_size)
        ctx.progress("evaluate base", 1, 1)
        ctx.progress("evaluate LoRA", 0, 1)
        tuned = score(
            LocalGenerator(ctx.device, model=str(folder)), ev, p.max_new_tokens, p.eval_batch_size
        )
        ctx.progress("evaluate LoRA", 1, 1)
        (ctx.out_dir / "eval").mkdir(exist_ok=True)
        for row, b, t in zip(ev, base["responses"], tuned["responses"], strict=True):
            row["base_response"], row["lora_response"] = b, t
        eval_doc = {"max_new_tokens": p.max_new_tokens, "rows": ev}
        (ctx.out_dir / "eval" / "validation.json").write_text(json.dumps(eval_doc, indent=1))

        metrics = dict(tuned["metrics"])
        metrics |= {f"base_{k}": v for k, v in base["metrics"].items()}
        metrics |= {
            "val_loss": val_loss,
            "base_val_loss": base_val_loss,
            "train_examples": float(len(train_ex)),
            "validation_examples": float(len(val_ex)),
            "trainable_params": float(trainable),
            "train_steps": float(steps),
            "train_runtime_s": runtime,
            "train_tokens_per_s": train_tokens / runtime if runtime else 0.0,
            "time_per_epoch_s": runtime / epochs_done if epochs_done else runtime,
        }
        rows = [e.to_dict() for e in train_ex + val_ex]
        digest = hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()
        return KindResult(
            metrics=metrics,
            data=records,
            data_digest={"train_and_validation": digest},
            extra={"context_source": source, "merged_model": "model/", "gateway": _handoff(spec)},
        )

    def compare(self, challenger: Path, champion: Path, metric: str) -> Comparison:
        """Both merged models answer the challenger's validation split (greedy)."""
        from genaiops.providers.generator import LocalGenerator

        doc = json.loads((challenger / "eval" / "validation.json").read_text())
        got = {
            name: score(
                LocalGenerator("cpu", model=str(folder / "model")),
                doc["rows"],
                int(doc["max_new_tokens"]),
                4,
            )["metrics"]
            for name, folder in (("challenger", challenger), ("champion", champion))
        }
        return Comparison(
            metric,
            got["challenger"][metric],
            got["champion"][metric],
            {"n": len(doc["rows"]), **got},
        )

    def gate(self, model: str, version: str, folder: Path, champion: str | None) -> dict:
        """Before the alias moves: beat the base model (first version) and pass the project's
        evaluation gate with the candidate served (``training.handoff``)."""
        from training.handoff import generator_gate

        return generator_gate(model, version, folder, champion)

    def publish(self, model: str, version: str, folder: Path, history: list[str]) -> dict:
        """Copy to ``serving/<model>/v<N>``, add a gateway deployment, start its rollout."""
        from genaiops.providers.generator import LocalGenerator
        from training.handoff import deploy_generator

        def check(dest: Path) -> None:  # the served copy loads before the pointer moves
            LocalGenerator("cpu", model=str(dest)).warm_up()

        publish(model, "generator", version, folder / "model", history, check=check)
        return deploy_generator(model, version, folder)
