"""How a flow runs: the promptflow DAG reader, the node executor, the batch runner with resume,
the LLM client the flows use, data loading and column mapping, and the one promptflow seam
(``pf_runner``). Scoring and gating of the results live in :mod:`evaluation`.
"""
