"""deploy/k8s: every manifest validates against the Kubernetes OpenAPI schemas (the strict JSON
schemas kubernetes-validate ships), and the pieces fit together: selectors, probes, Secrets by
name, non-root pods, resource requests, real genaiops commands.  No cluster runs here."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
K8S_VERSION = "1.37.0"
SECRET_NAME = "genaiops-secrets"
SECRETISH = re.compile(r"(^|_)(KEY|TOKEN|PASSWORD|SECRET|DSN|CREDENTIALS?)(_|$)", re.I)


def _docs() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for f in sorted(K8S.glob("*.yaml")):
        if f.name == "kustomization.yaml":
            continue
        out.extend((f.name, d) for d in yaml.safe_load_all(f.read_text()) if d)
    return out


DOCS = _docs()
BY_KIND: dict[str, list[dict[str, Any]]] = {}
for _, _d in DOCS:
    BY_KIND.setdefault(_d["kind"], []).append(_d)


def _one(kind: str, name: str) -> dict[str, Any]:
    return next(d for d in BY_KIND[kind] if d["metadata"]["name"] == name)


def _pod_specs() -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, pod spec) of every pod any manifest makes, RayJob pods included."""
    for _, d in DOCS:
        name, spec = f"{d['kind']}/{d['metadata']['name']}", d.get("spec", {})
        if d["kind"] in ("Deployment", "StatefulSet"):
            yield name, spec["template"]["spec"]
        elif d["kind"] == "CronJob":
            yield name, spec["jobTemplate"]["spec"]["template"]["spec"]
        elif d["kind"] == "RayJob":
            cluster = spec["rayClusterSpec"]
            yield f"{name}/head", cluster["headGroupSpec"]["template"]["spec"]
            for g in cluster["workerGroupSpecs"]:
                yield f"{name}/{g['groupName']}", g["template"]["spec"]
            yield f"{name}/submitter", spec["submitterPodTemplate"]["spec"]


def _containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return list(pod.get("initContainers", [])) + list(pod["containers"])


@pytest.mark.parametrize(
    "doc", [d for _, d in DOCS if d["kind"] != "RayJob"], ids=lambda d: d["metadata"]["name"]
)
def test_manifest_is_valid_kubernetes(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_rayjob_pod_templates_are_valid_kubernetes() -> None:
    """RayJob is a CRD (no schema in the Kubernetes set): its fields are checked here and its
    pod templates against the core PodTemplate schema."""
    (job,) = BY_KIND["RayJob"]
    assert job["apiVersion"] == "ray.io/v1"
    spec = job["spec"]
    assert spec["shutdownAfterJobFinishes"] is True and spec["entrypoint"].startswith("genaiops ")
    assert spec["submissionMode"] in ("K8sJobMode", "HTTPMode", "InteractiveMode")
    assert set(spec) <= {
        "entrypoint", "shutdownAfterJobFinishes", "ttlSecondsAfterFinished",
        "activeDeadlineSeconds", "submissionMode", "runtimeEnvYAML", "rayClusterSpec",
        "submitterPodTemplate",
    }  # fmt: skip
    assert "env_vars" in yaml.safe_load(spec["runtimeEnvYAML"])
    for where, pod in _pod_specs():
        if where.startswith("RayJob"):
            tmpl = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"},
                    "template": {"spec": pod}}  # fmt: skip
            kubernetes_validate.validate(tmpl, K8S_VERSION, strict=True)


def test_the_issue_list_of_resources_is_there() -> None:
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"} <= set(
        BY_KIND
    )
    assert {d["metadata"]["name"] for d in BY_KIND["CronJob"]} == {
        "genaiops-reindex",
        "genaiops-eval",
    }
    pg = _one("Service", "genaiops-postgres")
    assert pg["spec"]["type"] == "ExternalName" and pg["spec"]["externalName"]
    assert _one("StatefulSet", "genaiops-redis")
    assert BY_KIND["RayJob"]


def test_kustomization_lists_every_plain_manifest() -> None:
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kust["resources"])
    files = {f.name for f in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == files - {"ray-job.yaml"}  # the RayJob needs the KubeRay CRD first
    assert all((K8S / r).is_file() for r in listed)


@pytest.mark.parametrize(
    "where,pod", list(_pod_specs()), ids=lambda x: x if isinstance(x, str) else ""
)
def test_pods_run_as_non_root_with_requests_and_no_literal_secrets(
    where: str, pod: dict[str, Any]
) -> None:
    sc = pod["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] > 0, where
    assert sc["seccompProfile"]["type"] == "RuntimeDefault", where
    for c in _containers(pod):
        csc = c["securityContext"]
        assert csc["allowPrivilegeEscalation"] is False and csc["capabilities"]["drop"] == ["ALL"]
        req = c["resources"]["requests"]
        assert req.get("cpu") and req.get("memory"), (where, c["name"])
        assert c["resources"]["limits"].get("memory"), (where, c["name"])
        for env in c.get("env", []):
            if SECRETISH.search(env["name"]):
                ref = env["valueFrom"]["secretKeyRef"]  # never a literal value
                assert ref["name"] == SECRET_NAME and "value" not in env, (where, env["name"])


def test_secret_keys_are_documented() -> None:
    docs = (REPO / "docs" / "deploy.md").read_text()
    keys = {
        env["valueFrom"]["secretKeyRef"]["key"]
        for _, pod in _pod_specs()
        for c in _containers(pod)
        for env in c.get("env", [])
        if "valueFrom" in env
    }
    assert keys and all(f"--from-literal={k}=" in docs for k in keys), keys


def test_gateway_service_hpa_pdb_point_at_the_deployment() -> None:
    dep = _one("Deployment", "genaiops-gateway")
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items()
    svc = _one("Service", "genaiops-gateway")
    assert svc["spec"]["selector"].items() <= labels.items()
    pdb = _one("PodDisruptionBudget", "genaiops-gateway")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    hpa = _one("HorizontalPodAutoscaler", "genaiops-gateway")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "genaiops-gateway")
    assert hpa["spec"]["minReplicas"] > pdb["spec"]["minAvailable"]  # a node can always drain
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    port = next(p for p in c["ports"] if p["name"] == "http")
    assert svc["spec"]["ports"][0]["targetPort"] == "http"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": "http"}, probe
    assert str(port["containerPort"]) in c["args"]
    redis = _one("StatefulSet", "genaiops-redis")["spec"]["template"]["metadata"]["labels"]
    assert _one("Service", "genaiops-redis")["spec"]["selector"].items() <= redis.items()


def test_gateway_config_map_is_a_valid_gateway_config(tmp_path: Path) -> None:
    from gateway.config import load_config

    cm = _one("ConfigMap", "genaiops-gateway-config")
    (tmp_path / "gateway.yaml").write_text(cm["data"]["gateway.yaml"])
    cfg = load_config(tmp_path / "gateway.yaml")
    assert cfg.state.backend == "redis" and "genaiops-redis" in (cfg.state.redis_url or "")
    dep = _one("Deployment", "genaiops-gateway")
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    assert "/etc/genaiops/gateway.yaml" in c["args"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["GENAIOPS_GATEWAY_CONFIG"] == "/etc/genaiops/gateway.yaml"  # `kubectl exec` finds it
    assert cfg.admin_key_env in {e["name"] for e in c["env"]}


def _commands() -> list[tuple[str, list[str]]]:
    out = []
    for where, pod in _pod_specs():
        for c in _containers(pod):
            if "args" in c and c["image"] == "genaiops":
                out.append((f"{where}/{c['name']}", c["args"]))
    (job,) = BY_KIND["RayJob"]
    out.append(("RayJob/entrypoint", job["spec"]["entrypoint"].split()[1:]))
    return out


@pytest.mark.parametrize("where,args", _commands(), ids=lambda x: x if isinstance(x, str) else "")
def test_container_commands_are_real_genaiops_commands(where: str, args: list[str]) -> None:
    """Each job's arguments parse with the genaiops CLI (options and paths the image has)."""
    import click
    import typer.main

    from genaiops.cli import app

    cmd: click.Command = typer.main.get_command(app)
    words = list(args)
    ctx = None
    while isinstance(cmd, click.Group):
        name = words.pop(0)
        sub = cmd.get_command(click.Context(cmd), name)
        assert sub is not None, f"{where}: no command {name!r}"
        cmd = sub
    ctx = cmd.make_context(cmd.name or "", words)  # raises on unknown options / bad values
    for key in ("spec", "config", "baseline"):
        value = ctx.params.get(key)
        if value and not str(value).startswith("/"):
            assert (REPO / str(value)).exists(), f"{where}: {value} is not in the image"


def test_the_schema_check_catches_a_typo() -> None:
    """The validation above is strict: a misspelt field or a wrong type is an error."""
    import copy

    dep = copy.deepcopy(_one("Deployment", "genaiops-gateway"))
    dep["spec"]["replica"] = dep["spec"].pop("replicas")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(dep, K8S_VERSION, strict=True)
    hpa = copy.deepcopy(_one("HorizontalPodAutoscaler", "genaiops-gateway"))
    hpa["spec"]["minReplicas"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(hpa, K8S_VERSION, strict=True)


def test_rayjob_ray_version_is_the_pinned_extra() -> None:
    """KubeRay runs `ray start` from the image: its rayVersion must be the Ray the image has,
    which is the [ray] extra's pin (and what scripts/setup installs here)."""
    import tomllib

    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    (pin,) = pyproject["project"]["optional-dependencies"]["ray"]
    name, _, version = pin.partition("==")
    assert name == "ray[data]" and version
    (job,) = BY_KIND["RayJob"]
    assert job["spec"]["rayClusterSpec"]["rayVersion"] == version
    assert "--engine ray" in job["spec"]["entrypoint"]
    ray = pytest.importorskip("ray")
    assert ray.__version__ == version
