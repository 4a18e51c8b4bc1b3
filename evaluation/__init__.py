"""How answers are scored and gated: metrics, judges, scoring, the CI gate, reports, tracking.

How a flow *runs* (the DAG reader, executor, batch runner, the gateway LLM client, the promptflow
seam) lives in :mod:`evaluation.runtime`.
"""
