"""``linecrew kb ...``: the device's procedures — import manuals, list, remove, search."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from linecrew.cli._common import _agent_config, _friendly, config_option, device_dir_option, json_option, local_time


def _kb(config_path: Path | None, data_dir: Path | None) -> Any:
    from linecrew.agent.daemon import knowledge_base, open_store

    cfg = _agent_config(config_path, data_dir=data_dir)
    return knowledge_base(cfg, open_store(cfg))


@click.group()
def kb() -> None:
    """The procedures the assistant answers from (bundled sample base plus your own manuals)."""


@kb.command("add")
@config_option
@device_dir_option
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@json_option
@_friendly
def kb_add(config_path: Path | None, data_dir: Path | None, paths: tuple[Path, ...], as_json: bool) -> None:
    """Import Markdown, HTML, PDF or DOCX manuals (files or folders); a document of the same name is replaced."""
    added = _kb(config_path, data_dir).add_paths(list(paths))
    if as_json:
        click.echo(json.dumps([{"name": n, "units": u} for n, u in added]))
        return
    for name, units in added:
        click.echo(f"added {name}: {units} steps, items, rows and sentences")


@kb.command("list")
@config_option
@device_dir_option
@json_option
@_friendly
def kb_list(config_path: Path | None, data_dir: Path | None, as_json: bool) -> None:
    """Every document: name, origin (sample or user), format, sections, units, when added."""
    docs = _kb(config_path, data_dir).documents()
    if as_json:
        click.echo(json.dumps(docs))
        return
    for d in docs:
        click.echo(f"{d['name']:<40} {d['origin']:<6} {d['fmt']:<8} {d['sections']:>3} sections {d['units']:>4} units"
                   f"  {local_time(float(d['added_at']))}  {d['title']}")


@kb.command("remove")
@config_option
@device_dir_option
@click.argument("name")
@_friendly
def kb_remove(config_path: Path | None, data_dir: Path | None, name: str) -> None:
    """Remove one document by name (see kb list)."""
    _kb(config_path, data_dir).remove(name)
    click.echo(f"removed {name}")


@kb.command("search")
@config_option
@device_dir_option
@click.argument("query")
@click.option("--limit", type=int, default=5, help="sections to show")
@json_option
@_friendly
def kb_search(config_path: Path | None, data_dir: Path | None, query: str, limit: int, as_json: bool) -> None:
    """Rank sections for QUERY (trade words widened by the lexicon), and the answer the assistant would quote."""
    from linecrew.agent.answering import Answerer
    from linecrew.agent.daemon import knowledge_base, open_store

    cfg = _agent_config(config_path, data_dir=data_dir)
    base = knowledge_base(cfg, open_store(cfg))
    sections = base.search(query, limit=limit)
    g = Answerer(base, encoder_dir=cfg.embedding_model, cache_dir=cfg.data_dir).answer(query)
    out: dict[str, Any] = {"sections": [{"citation": p.citation, "title": p.title, "heading": p.heading,
                                         "score": round(p.score, 3)} for p in sections],
           "answer": None if g.abstained else g.answer, "citations": g.citations, "confidence": round(g.confidence, 3)}
    if as_json:
        click.echo(json.dumps(out))
        return
    for s in out["sections"]:
        click.echo(f"{s['score']:>8}  {s['citation']}  ({s['title']})")
    click.echo(f"\nanswer ({out['confidence']}): {out['answer'] or 'no procedure covers this'}")
    for c in out["citations"]:
        click.echo(f"  {c}")
