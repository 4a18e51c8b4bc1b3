from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from evaluation.errors import FlowError
from evaluation.runtime.flow import load_flow, select_variants
from tests.evaluation.fake_openai import FakeOpenAI, grounded_answer

REPO = Path(__file__).resolve().parents[2]


def _flow(tmp_path: Path, dag: dict, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "flow.dag.yaml").write_text(yaml.safe_dump(dag, sort_keys=False))
    return tmp_path


def _two_variant_dag() -> dict:
    def prompt(path: str) -> dict:
        return {
            "node": {
                "type": "prompt",
                "source": {"type": "code", "path": path},
                "inputs": {"q": "${inputs.q}"},
            }
        }

    return {
        "inputs": {"q": {"type": "string"}},
        "outputs": {"out": {"type": "string", "reference": "${b.output}"}},
        "nodes": [{"name": "a", "use_variants": True}, {"name": "b", "use_variants": True}],
        "node_variants": {
            "a": {
                "default_variant_id": "x",
                "variants": {"x": prompt("p.jinja2"), "y": prompt("p.jinja2")},
            },
            "b": {
                "default_variant_id": "u",
                "variants": {"u": prompt("p.jinja2"), "v": prompt("p.jinja2")},
            },
        },
    }


def test_rag_flow_loads_with_two_prompt_variants() -> None:
    flow = load_flow(REPO / "flows/rag")
    assert [n.name for n in flow.resolved_nodes()] == [
        "retrieve",
        "answer_prompt",
        "generate",
        "format_answer",
    ]
    assert [v.label for v in select_variants(flow, "all")] == [
        "answer_prompt.cited",
        "answer_prompt.terse",
    ]
    assert flow.prompt_hash(select_variants(flow, "all")[0]) != flow.prompt_hash(
        select_variants(flow, "all")[1]
    )


def test_chat_flow_loads() -> None:
    flow = load_flow(REPO / "flows/chat")
    assert flow.inputs["chat_history"].is_chat_history
    assert flow.inputs["chat_history"].type == "list" and flow.inputs["chat_history"].default == []
    assert flow.inputs["question"].is_chat_input and not flow.inputs["question"].is_chat_history
    assert [n for n, i in flow.inputs.items() if i.is_chat_input] == ["question"]
    assert flow.outputs["answer"]["is_chat_output"] is True
    assert [n for n, o in flow.outputs.items() if o["is_chat_output"]] == ["answer"]
    assert [n.name for n in flow.resolved_nodes()] == [
        "rewrite",
        "retrieve",
        "answer_prompt",
        "generate",
        "format_answer",
    ]
    assert flow.connection_names() == {"genaiops_gateway"}
    assert flow.retrieved_output == "context"
    assert flow.outputs["standalone_question"]["reference"] == "${rewrite.output}"
    assert [v.label for v in select_variants(flow, "all")] == ["default"]


def _chat_history() -> list[dict]:
    return [
        {
            "inputs": {"question": "How do I install Lumen?"},
            "outputs": {"answer": "Run the installer [guides/getting-started.md]."},
        }
    ]


def test_chat_flow_rewrites_a_follow_up_with_history(
    sample_index: Path, fake_gateway: FakeOpenAI
) -> None:
    """With history, the follow-up is rewritten by the model and retrieval uses the rewrite;
    without history, no rewrite call is made."""
    from evaluation.runtime.executor import FlowExecutor

    standalone = "Does Lumen run on Windows?"
    fake_gateway.upstream.answer = lambda msgs: (
        standalone if "Last question:" in msgs[-1]["content"] else grounded_answer(msgs)
    )
    ex = FlowExecutor(load_flow(REPO / "flows/chat"))
    res = ex.run_line({"question": "And on Windows?", "chat_history": _chat_history()})
    assert res.error is None, res.error
    assert res.outputs["standalone_question"] == standalone
    rewrite_call = fake_gateway.requests[0]["messages"][-1]["content"]
    assert "User: How do I install Lumen?" in rewrite_call
    assert "Assistant: Run the installer" in rewrite_call
    assert "Last question: And on Windows?" in rewrite_call
    assert res.retrieved[0]["doc_id"] == "faq-windows"  # retrieved for the rewrite
    assert len(fake_gateway.requests) == 2  # rewrite + answer
    alone = ex.run_line({"question": standalone})
    assert alone.outputs["standalone_question"] == standalone
    assert len(fake_gateway.requests) == 3  # no rewrite call without history


def _one_node_dag(**node: object) -> dict:
    return {
        "inputs": {"q": {"type": "string"}},
        "outputs": {"o": {"reference": "${a.output}"}},
        "nodes": [
            {
                "name": "a",
                "type": "prompt",
                "source": {"type": "code", "path": "p.jinja2"},
                "inputs": {"q": "${inputs.q}"},
                **node,
            }
        ],
    }


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (
            lambda d: d["nodes"][0].update(activate={"when": "${inputs.q}", "is": "x"}),
            "nodes.0.activate",
        ),
        (lambda d: d["nodes"][0].update(aggregaton=True), "nodes.0.aggregaton"),
        (lambda d: d.update(node_variant={}), "node_variant"),
        (lambda d: d["inputs"]["q"].update(defualt="x"), "inputs.q.defualt"),
        (lambda d: d["nodes"][0]["source"].update(tool="x"), "nodes.0.source.tool"),
    ],
)
def test_unsupported_or_misspelt_keys_are_refused(tmp_path: Path, edit, key: str) -> None:
    dag = _one_node_dag()
    edit(dag)
    with pytest.raises(FlowError) as e:
        load_flow(_flow(tmp_path, dag, {"p.jinja2": "{{ q }}"}))
    msg = str(e.value)
    assert "flow.dag.yaml" in msg and f"{key}: not supported by the genaiops runner" in msg
    assert "use --runner pf" in msg


def test_connection_comes_from_the_declared_connection_input(
    tmp_path: Path, fake_gateway: FakeOpenAI
) -> None:
    """A python tool gets the connection object for its ``connection`` input whatever its
    annotation; a parameter merely annotated ``...Connection`` is not guessed at."""
    from evaluation.runtime.executor import FlowExecutor

    tool = (
        "class MyConnection: ...\n\n"
        "def t(connection, other: MyConnection) -> dict:\n"
        "    return {'url': connection.base_url, 'other': other}\n"
    )
    dag = {
        "inputs": {},
        "outputs": {"o": {"reference": "${t.output}"}},
        "nodes": [
            {
                "name": "t",
                "type": "python",
                "source": {"type": "code", "path": "t.py"},
                "inputs": {"connection": "genaiops_gateway", "other": "genaiops_gateway"},
            }
        ],
    }
    flow = load_flow(_flow(tmp_path, dag, {"t.py": tool}))
    res = FlowExecutor(flow).run_line({})
    assert res.error is None, res.error
    assert res.outputs["o"] == {"url": fake_gateway.url, "other": "genaiops_gateway"}
    assert flow.connection_names() == {"genaiops_gateway"}


def test_retrieved_chunks_come_only_from_the_declared_output(tmp_path: Path) -> None:
    """A node returning doc_id dicts is not taken for retrieval unless the flow's ``context``
    output holds them."""
    from evaluation.runtime.executor import FlowExecutor

    tool = "def t() -> list:\n    return [{'doc_id': 'a.md', 'text': 'x'}]\n"
    node = {"name": "t", "type": "python", "source": {"type": "code", "path": "t.py"}}
    dag = {"inputs": {}, "outputs": {"o": {"reference": "${t.output}"}}, "nodes": [node]}
    res = FlowExecutor(load_flow(_flow(tmp_path, dag, {"t.py": tool}))).run_line({})
    assert res.error is None and res.retrieved == []
    dag["outputs"]["context"] = {"type": "list", "reference": "${t.output}"}
    res = FlowExecutor(load_flow(_flow(tmp_path, dag, {"t.py": tool}))).run_line({})
    assert res.retrieved == [{"doc_id": "a.md", "text": "x"}]


def test_all_is_one_node_at_a_time_and_grid_is_cartesian(tmp_path: Path) -> None:
    flow = load_flow(_flow(tmp_path, _two_variant_dag(), {"p.jinja2": "{{ q }}"}))
    assert [v.label for v in select_variants(flow, "default")] == ["a.x+b.u"]
    assert [v.label for v in select_variants(flow, "all")] == ["a.x+b.u", "a.y+b.u", "a.x+b.v"]
    assert sorted(v.label for v in select_variants(flow, "grid")) == [
        "a.x+b.u",
        "a.x+b.v",
        "a.y+b.u",
        "a.y+b.v",
    ]
    assert [v.label for v in select_variants(flow, "a.y")] == ["a.y+b.u"]
    with pytest.raises(FlowError, match="a.x"):
        select_variants(flow, "a.nope")


def test_unknown_node_reference_names_file_and_key(tmp_path: Path) -> None:
    dag = _two_variant_dag()
    dag["outputs"]["out"]["reference"] = "${b.output}"
    dag["node_variants"]["b"]["variants"]["v"]["node"]["inputs"]["q"] = "${aa.output}"
    with pytest.raises(FlowError) as e:
        load_flow(_flow(tmp_path, dag, {"p.jinja2": "{{ q }}"}))
    msg = str(e.value)
    assert "flow.dag.yaml" in msg and "node_variants.b.variants.v.inputs.q" in msg
    assert "'aa'" in msg


def test_unknown_flow_input_and_missing_file(tmp_path: Path) -> None:
    dag = _two_variant_dag()
    dag["node_variants"]["a"]["variants"]["x"]["node"]["inputs"]["q"] = "${inputs.question}"
    with pytest.raises(FlowError, match="unknown flow input 'question'"):
        load_flow(_flow(tmp_path, dag, {"p.jinja2": "{{ q }}"}))
    (tmp_path / "p.jinja2").unlink()
    with pytest.raises(FlowError, match="not found"):
        load_flow(_flow(tmp_path, _two_variant_dag(), {}))


def test_cycle_is_rejected(tmp_path: Path) -> None:
    dag = _one_node_dag(inputs={"x": "${b.output}"})
    dag["nodes"].append({**dag["nodes"][0], "name": "b", "inputs": {"x": "${a.output}"}})
    with pytest.raises(FlowError, match="cycle"):
        load_flow(_flow(tmp_path, dag, {"p.jinja2": "{{ x }}"}))


def test_eval_flow_scores_a_line_with_the_package_evaluators() -> None:
    from evaluation.runtime.executor import FlowExecutor

    flow = load_flow(REPO / "flows/eval_rag")
    assert [n.name for n in flow.resolved_nodes()] == ["score", "aggregate"]
    ctx = [
        {"doc_id": "guides/security.pdf", "text": "Lumen encrypts every connection with TLS 1.3."}
    ]
    res = FlowExecutor(flow).run_line(
        {
            "question": "Which TLS version?",
            "answer": "Lumen uses TLS 1.3.",
            "ground_truth": "TLS 1.3",
            "context": ctx,
            "doc_ids": ["guides/security.pdf"],
        }
    )
    assert res.error is None, res.error
    scores = res.outputs["scores"]
    assert scores["recall_at_4"] == 1.0 and scores["groundedness"] >= 4
    assert 0 < scores["rougeL"] <= 1


def test_aggregation_node_runs_once_over_the_batch(tmp_path: Path) -> None:
    import json

    from evaluation.runtime.runner import RunRequest, run_flow

    data = tmp_path / "d.jsonl"
    rows = [
        {
            "question": "Which TLS version?",
            "answer": "Lumen uses TLS 1.3.",
            "ground_truth": "TLS 1.3",
        },
        {"question": "License?", "answer": "bananas", "ground_truth": "Apache License 2.0"},
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = run_flow(RunRequest(flow=str(REPO / "flows/eval_rag"), data=str(data)))
    agg = json.loads((res.path / "default" / "aggregates.json").read_text())["aggregate"]
    per_line = [ln.outputs["scores"]["rougeL"] for ln in res.lines["default"]]
    assert agg["rougeL"] == sum(per_line) / 2 and agg["rougeL_nan"] == 0.0
