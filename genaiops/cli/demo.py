"""The main job on embedded defaults (README's first command)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from genaiops.cli._output import console, emit_json

SAMPLE_SPEC = Path(__file__).resolve().parents[2] / "indexing" / "specs" / "sample.yaml"


def demo(
    question: Annotated[
        str, typer.Option("--question", "-q")
    ] = "On which port does Lumen expose its Prometheus metrics?",
    json_: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Build the sample index, promote it to `current`, retrieve and answer a question locally."""
    from genaiops.providers import ChatMessage, get_local_generator
    from indexing import build_index, load_index_spec, retrieve

    spec = load_index_spec(SAMPLE_SPEC)
    result = build_index(spec, promote="current")
    hits = retrieve(question, k=3, mode="hybrid", index=spec.name)
    context = "\n\n".join(f"[{h.doc_id}] {h.text}" for h in hits)
    messages = [
        ChatMessage("system", "Answer the question using only the context. Be brief."),
        ChatMessage("user", f"Context:\n{context}\n\nQuestion: {question}"),
    ]
    answer = get_local_generator().generate(messages, max_tokens=96)
    if json_:
        emit_json(
            {
                "build": result.to_dict(),
                "question": question,
                "answer": answer.text,
                "citations": list(dict.fromkeys(h.doc_id for h in hits)),
            }
        )
        return
    console.print(escape(result.message))
    for q in result.quarantined:
        console.print(f"  [yellow]quarantined[/] {escape(q['path'])}: {escape(q['reason'])}")
    console.print(f"\n[bold]Q:[/] {escape(question)}\n[bold]A:[/] {escape(answer.text.strip())}")
    console.print("[dim]sources: " + ", ".join(dict.fromkeys(h.doc_id for h in hits)) + "[/]")
