"""Local knowledge base: Markdown procedures split by heading, indexed in SQLite FTS5, ranked by bm25.

A sample base written for Linecrew ships with the agent (``agent/knowledge_base``): lockout/tagout,
transformer and breaker checks, meter replacement, storm damage assessment. Any folder of Markdown
can be indexed instead; re-indexing replaces the previous index in one transaction.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import re
from dataclasses import dataclass
from pathlib import Path

from linecrew.shared.db import Database

SAMPLE_KB = Path(str(importlib.resources.files("linecrew.agent").joinpath("knowledge_base")))

_STOP = set(
    "a an and are as at be by can do does for from how i if in is it me my of on or should the this to "
    "what when where which who why with you your we our there their then than that have has need".split()
)


@dataclass(frozen=True)
class Passage:
    doc: str  # file name, e.g. lockout-tagout.md
    title: str  # the document's first heading
    heading: str  # the section's heading
    text: str
    score: float  # bm25: lower is better

    @property
    def citation(self) -> str:
        return f"{self.doc}#{_slug(self.heading)}"


def _slug(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", s.lower()).strip("-")


def split_markdown(text: str) -> tuple[str, list[tuple[str, str]]]:
    """``(title, [(heading, body), ...])``: one section per ``#``/``##`` heading."""
    title, heading = "", ""
    sections: list[tuple[str, str]] = []
    body: list[str] = []
    for line in text.splitlines():
        m = re.match(r"^(#{1,3})\s+(.*)", line)
        if m:
            if body and "".join(body).strip():
                sections.append((heading or title, "\n".join(body).strip()))
            body = []
            heading = m.group(2).strip()
            if m.group(1) == "#" and not title:
                title = heading
        else:
            body.append(line)
    if body and "".join(body).strip():
        sections.append((heading or title, "\n".join(body).strip()))
    return title, sections


class KnowledgeBase:
    def __init__(self, db: Database) -> None:
        self.db = db
        with db.transaction() as conn:
            conn.execute(
                "CREATE VIRTUAL TABLE IF NOT EXISTS kb USING fts5("
                "doc UNINDEXED, title, heading, body, tokenize='porter unicode61')"
            )
            conn.execute("CREATE TABLE IF NOT EXISTS kb_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")

    def index_folder(self, folder: Path) -> int:
        """Index every ``*.md`` under ``folder`` (replacing the old index); returns the section count."""
        files = sorted(Path(folder).glob("**/*.md"))
        digest = hashlib.sha256(b"".join(f.name.encode() + f.read_bytes() for f in files)).hexdigest()
        rows = []
        for f in files:
            title, sections = split_markdown(f.read_text(encoding="utf-8"))
            rows += [(f.name, title, heading, body) for heading, body in sections]
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM kb")
            conn.executemany("INSERT INTO kb (doc, title, heading, body) VALUES (?,?,?,?)", rows)
            conn.execute("INSERT OR REPLACE INTO kb_meta VALUES ('digest', ?)", (digest,))
        return len(rows)

    def ensure_indexed(self, folder: Path = SAMPLE_KB) -> None:
        """Index on first use, or when the documents changed."""
        files = sorted(Path(folder).glob("**/*.md"))
        digest = hashlib.sha256(b"".join(f.name.encode() + f.read_bytes() for f in files)).hexdigest()
        if self.db.scalar("SELECT value FROM kb_meta WHERE key='digest'") != digest:
            self.index_folder(folder)

    def search(self, question: str, *, limit: int = 3) -> list[Passage]:
        terms = [w for w in re.findall(r"[a-z0-9]+", question.lower()) if w not in _STOP and len(w) > 1]
        if not terms:
            return []
        query = " OR ".join(f'"{t}"' for t in terms)
        rows = self.db.query(
            "SELECT doc, title, heading, body, bm25(kb, 0.0, 2.0, 4.0, 1.0) AS score FROM kb WHERE kb MATCH ?"
            " ORDER BY score LIMIT ?",
            (query, limit),
        )
        return [Passage(str(r["doc"]), str(r["title"]), str(r["heading"]), str(r["body"]),
                        float(r["score"])) for r in rows]  # type: ignore[arg-type]
