"""How a flow runs: the strict promptflow DAG reader (``dag``, ``flow``), the node executor, the
batch runner with resume and its ``run.json`` (``run_meta``), the gateway LLM client the flows use
(``llm``, on the core client seam :mod:`genaiops.openai_client`), data loading and column mapping,
the one promptflow seam (``pf_runner``) and a local gateway process manager. Scoring and gating
of the results live in :mod:`evaluation`; the runtime never imports them.
"""
