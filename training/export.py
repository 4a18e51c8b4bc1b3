"""Export a job spec as an Azure ML **command job** (the same entry point, run in the cloud).

The job YAML follows the ``commandJob.schema.json`` Azure ML CLI v2 schema: ``code`` is the
repository, ``command`` runs ``python -m genaiops train run`` on the spec (``--json``) with MLflow
tracking going to the workspace (Azure ML sets ``MLFLOW_TRACKING_URI`` inside jobs), the spec's
data folders become ``uri_folder`` inputs, and the job's outputs (``GENAIOPS_HOME``) an output.

    >>> print(export_azureml("training/specs/prompt_attack.yaml"))      # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import yaml

from training.spec import PromptAttackSpec, expand_path, load_spec

__all__ = ["SCHEMA", "export_azureml"]

SCHEMA = "https://azuremlschemas.azureedge.net/latest/commandJob.schema.json"
DEFAULT_ENV = "azureml://registries/azureml/environments/acpt-pytorch-2.2-cuda12.1/labels/latest"
REPO = Path(__file__).resolve().parents[1]


def export_azureml(
    spec_path: str | Path,
    *,
    compute: str = "azureml:cpu-cluster",
    environment: str = DEFAULT_ENV,
    experiment: str | None = None,
    overrides: list[str] | None = None,
    relative_to: str | Path | None = None,
) -> str:
    """The command-job YAML text for ``spec_path`` (validated first, like ``train run``)."""
    spec = load_spec(spec_path, overrides)
    rel = Path(spec_path).resolve()
    with contextlib.suppress(ValueError):
        rel = rel.relative_to(REPO)
    inputs: dict[str, Any] = {}
    env_vars = {"GENAIOPS_HOME": "${{outputs.genaiops_home}}", "HF_HUB_OFFLINE": "1"}
    paths = (
        [b.path for b in spec.data.benign + spec.data.indirect_documents]
        if isinstance(spec, PromptAttackSpec)
        else [spec.data.corpus]
    )
    for raw in paths:
        folder = expand_path(raw, spec.base_dir, key="data").parent
        if str(folder) not in {v["path"] for v in inputs.values()}:
            inputs[f"data_{len(inputs)}"] = {
                "type": "uri_folder",
                "path": str(folder),
                "mode": "ro_mount",
            }
    # the spec's data paths expand from these variables on the compute node
    dirs = {str(v["path"]): k for k, v in inputs.items()}
    for var, default in (("PYTHON_DOCS_DIR", "python-docs"), ("SCIFACT_DIR", "scifact")):
        for path, name in dirs.items():
            if path.endswith(default):
                env_vars[var] = "${{inputs." + name + "}}"
    sets = " ".join(f"--set {o}" for o in overrides or [])
    device = "auto"
    command = (
        "pip install -e . && python -m genaiops train run "
        f"{rel.as_posix()} --device {device} {sets} --json".replace("  ", " ")
    )
    job = {
        "$schema": SCHEMA,
        "type": "command",
        "display_name": f"train-{spec.name}",
        "experiment_name": experiment or f"training-{spec.name}",
        "description": spec.description or f"genaiops training job {spec.kind}",
        # Azure ML resolves ``code`` against the job file's folder: keep the YAML portable
        "code": os.path.relpath(REPO, Path(relative_to or Path.cwd()).resolve()),
        "command": command,
        "environment": environment,
        "compute": compute,
        "environment_variables": env_vars,
        "inputs": inputs,
        "outputs": {"genaiops_home": {"type": "uri_folder", "mode": "rw_mount"}},
        "tags": {"genaiops.kind": spec.kind, "genaiops.model": spec.name},
    }
    return yaml.safe_dump(job, sort_keys=False)
