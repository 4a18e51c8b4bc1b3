"""Build, version, promote and query indexes."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from genaiops.cli._output import StageBar, console, emit_json
from genaiops.errors import ConfigError

app = typer.Typer(no_args_is_help=True)

IndexOpt = Annotated[
    str, typer.Option("--index", "-i", envvar="GENAIOPS_INDEX", help="Index name.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


@app.command()
def build(
    spec: Annotated[str | None, typer.Option("--spec", help="Index spec YAML.")] = None,
    source: Annotated[
        list[str] | None,
        typer.Option("--source", help="Ad-hoc source path (repeatable), instead of --spec."),
    ] = None,
    name: Annotated[
        str, typer.Option("--index", "-i", help="Index name for --source.")
    ] = "default",
    promote: Annotated[str | None, typer.Option("--promote", help="Alias to point at it.")] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Exit 3 if anything was quarantined.")
    ] = False,
    max_file_size: Annotated[
        str | None,
        typer.Option(
            "--max-file-size",
            help="With --source: quarantine files larger than this (e.g. '20 MiB'; default"
            " 100 MiB). Specs set max_file_size.",
        ),
    ] = None,
    engine: Annotated[
        str | None,
        typer.Option(
            "--engine",
            help="local | ray: who runs parse/chunk/embed (default: the spec's engine, local)."
            " ray: a local Ray, or the cluster at RAY_ADDRESS. Same version either way.",
        ),
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """Build a new index version (incremental: unchanged chunks are never re-embedded)."""
    from indexing import adhoc_spec, build_index, load_index_spec

    if bool(spec) == bool(source):
        raise ConfigError("give exactly one of --spec FILE or --source PATH")
    if spec and max_file_size is not None:
        raise ConfigError("--max-file-size goes with --source; a spec sets max_file_size")
    if engine not in (None, "local", "ray"):
        raise ConfigError(f"--engine must be local or ray, not {engine!r}")
    index_spec = load_index_spec(spec) if spec else adhoc_spec(source or [], name, max_file_size)
    with StageBar(enabled=not json_) as bar:
        result = build_index(index_spec, promote=promote, progress=bar, engine=engine)
    if json_:
        emit_json(result.to_dict() | {"message": result.message})
    else:
        console.print(escape(result.message))
        for q in result.quarantined:
            console.print(f"  [yellow]quarantined[/] {escape(q['path'])}: {escape(q['reason'])}")
        if promote:
            console.print(f"alias {promote} -> {result.version_id}")
    if strict and result.quarantined:
        raise typer.Exit(3)


@app.command("list")
def list_(
    index: Annotated[
        str | None, typer.Option("--index", "-i", envvar="GENAIOPS_INDEX", help="Index name.")
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """List indexes, or one index's versions (oldest first) and the aliases pointing at them."""
    from indexing import Catalog

    if index is None:
        _list_indexes(json_)
        return
    cat = Catalog(index)
    aliases = cat.aliases()
    rows: list[dict[str, Any]] = [
        {
            "version_id": m.version_id,
            "created_at": m.created_at,
            "documents": m.counts.documents,
            "chunks": m.counts.chunks,
            "quarantined": m.counts.quarantined,
            "aliases": sorted(a for a, v in aliases.items() if v == m.version_id),
        }
        for m in cat.versions()
    ]
    if json_:
        emit_json({"index": index, "versions": rows, "aliases": aliases})
        return
    table = Table("version", "docs", "chunks", "quarantined", "aliases", title=f"index {index}")
    for r in rows:
        table.add_row(
            r["version_id"],
            str(r["documents"]),
            str(r["chunks"]),
            str(r["quarantined"]),
            ", ".join(r["aliases"]),
        )
    console.print(table)


def _list_indexes(json_: bool) -> None:
    from indexing import Catalog

    rows: list[dict[str, Any]] = []
    for name in Catalog.names():
        cat = Catalog(name)
        rows.append({"index": name, "versions": len(cat.versions()), "aliases": cat.aliases()})
    if json_:
        emit_json({"indexes": rows})
        return
    table = Table("index", "versions", "aliases", title="indexes (genaiops index list -i NAME)")
    for r in rows:
        aliases = ", ".join(f"{a}={v}" for a, v in r["aliases"].items())
        table.add_row(r["index"], str(r["versions"]), aliases)
    console.print(table)


@app.command()
def show(version: str, index: IndexOpt = "default", json_: JsonOpt = False) -> None:
    """Show a version's manifest (VERSION may be an alias)."""
    from indexing import Catalog

    cat = Catalog(index)
    m = cat.manifest(cat.resolve(version))
    if json_:
        emit_json(m.model_dump(mode="json"))
        return
    console.print(f"[bold]{m.version_id}[/] ({m.status}) model {escape(m.model_id)}")
    console.print(m.counts.model_dump())
    for q in m.quarantine:
        console.print(f"  quarantined {escape(q.path)}: {escape(q.reason)}")


@app.command()
def promote(
    version: str,
    alias: Annotated[str, typer.Option("--alias", "-a")],
    index: IndexOpt = "default",
    json_: JsonOpt = False,
) -> None:
    """Point ALIAS at VERSION atomically (the old target is kept for rollback)."""
    from indexing import Catalog

    cat = Catalog(index)
    rec = cat.promote(cat.resolve(version), alias)
    _print_alias(alias, rec.model_dump(mode="json"), json_)


@app.command()
def rollback(
    alias: Annotated[str, typer.Option("--alias", "-a")],
    index: IndexOpt = "default",
    json_: JsonOpt = False,
) -> None:
    """Point ALIAS back at the version it pointed at before."""
    from indexing import Catalog

    rec = Catalog(index).rollback(alias)
    _print_alias(alias, rec.model_dump(mode="json"), json_)


def _print_alias(alias: str, rec: dict[str, Any], json_: bool) -> None:
    if json_:
        emit_json(rec)
    else:
        console.print(f"alias {alias} -> {rec['version']}")


@app.command()
def diff(v1: str, v2: str, index: IndexOpt = "default", json_: JsonOpt = False) -> None:
    """Documents and chunks added, removed and changed from V1 to V2."""
    from indexing import Catalog

    d = Catalog(index).diff(v1, v2)
    if json_:
        emit_json(d)
        return
    console.print(f"{d['from']} -> {d['to']}")
    for key in ("docs_added", "docs_removed", "docs_changed"):
        console.print(f"{key}: {len(d[key])} {', '.join(d[key][:20])}")
    console.print(f"chunks: +{d['chunks_added']} -{d['chunks_removed']} ={d['chunks_unchanged']}")


@app.command()
def gc(
    keep: Annotated[int, typer.Option("--keep", min=0)] = 3,
    prune_cache: Annotated[
        bool, typer.Option("--prune-cache", help="Also drop cached embeddings no version uses.")
    ] = False,
    index: IndexOpt = "default",
    json_: JsonOpt = False,
) -> None:
    """Delete old versions, keeping the newest N; aliased versions are never deleted."""
    from indexing import Catalog
    from indexing.catalog import prune_embedding_cache

    r: dict[str, Any] = dict(Catalog(index).gc(keep))
    if prune_cache:
        r["cache"] = prune_embedding_cache()
    if json_:
        emit_json(r)
        return
    console.print(
        f"deleted {len(r['deleted'])}: {', '.join(r['deleted']) or '-'}; kept {len(r['kept'])}"
    )
    if prune_cache:
        console.print(
            f"embedding cache: removed {r['cache']['removed']}, kept {r['cache']['kept']}"
        )


@app.command()
def query(
    text: str,
    k: Annotated[int, typer.Option("-k", min=1, max=1000)] = 5,
    mode: Annotated[str, typer.Option("--mode", help="dense|lexical|hybrid")] = "hybrid",
    alias: Annotated[str, typer.Option("--alias", "-a", help="Alias or version id.")] = "current",
    filter_: Annotated[
        list[str] | None,
        typer.Option("--filter", help="KEY=VALUE on doc_id, source, title, url, doc_id_prefix."),
    ] = None,
    index: IndexOpt = "default",
    json_: JsonOpt = False,
) -> None:
    """Retrieve the best K chunks for TEXT."""
    from indexing import Retriever

    if mode not in ("dense", "lexical", "hybrid"):
        raise ConfigError(f"--mode must be dense, lexical or hybrid, not {mode!r}")
    filters: dict[str, str] = {}
    for item in filter_ or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--filter {item!r}: expected KEY=VALUE, e.g. doc_id_prefix=guides/")
        filters[key.strip()] = value
    retriever = Retriever(index, alias)
    hits = retriever.retrieve(text, k=k, mode=mode, filters=filters or None)  # type: ignore[arg-type]
    if json_:
        emit_json({"query": text, "mode": mode, "hits": [h.to_dict() for h in hits]})
        return
    for i, h in enumerate(hits, 1):
        head = " > ".join(h.headings)
        console.print(f"[bold]{i}. {h.doc_id}[/] score={h.score:.4f} {head}")
        console.print("   " + escape(h.text[:240].replace("\n", " ")))
