"""Local knowledge base: procedure documents as sections and units, in SQLite, ranked lexically.

A sample base written for Linecrew ships with the agent (``agent/knowledge_base``, 13 procedures); the
technician's utility adds its own manuals with ``linecrew kb add`` (Markdown, HTML, PDF, DOCX, parsed by
``agent.documents``). Each document is stored as its units (steps, items, table rows, warnings, sentences)
in reading order, and as one FTS5 row per section. Ranking is hybrid: FTS5 bm25 over sections (title,
heading, body) picks candidates, and ``agent.grounding`` scores the units inside them. Field words are
widened with the trade lexicon before either sees them.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import re
import time
from dataclasses import dataclass
from pathlib import Path

from linecrew.agent.documents import Document, Section, Unit, load
from linecrew.agent.errors import KnowledgeError
from linecrew.agent.lexicon import Lexicon
from linecrew.shared.db import Database

SAMPLE_KB = Path(str(importlib.resources.files("linecrew.agent").joinpath("knowledge_base")))
SAMPLE = "sample"
USER = "user"

_STOP = set(
    "a an and are as at be by can do does for from how i if in is it me my of on or should the this to "
    "what when where which who why with you your we our there their then than that have has need get "
    "got its it's im i'm we're so just about any some would could will tell say said "
    "they them those these they're without".split()
)
# spoken-question filler: words a technician wraps a question in that say nothing about its subject
_FILLER = set(
    "now ok okay still right away yeah well hey um uh like really actually gonna wanna gotta thing things stuff "
    "guy guys buddy mate anyway anything something here there's that's what's whats it'll i'll i've we've "
    "am was were been being did doing done go goes going gone put take takes know let lets want wants "
    "look looks looking see seems mean means ever also too very much many one out".split()
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kb_docs (
    name TEXT PRIMARY KEY, title TEXT NOT NULL, fmt TEXT NOT NULL, origin TEXT NOT NULL,
    digest TEXT NOT NULL, source TEXT NOT NULL, added_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS kb_units (
    doc TEXT NOT NULL, section INTEGER NOT NULL, heading TEXT NOT NULL, position INTEGER NOT NULL,
    kind TEXT NOT NULL, number INTEGER, ordinal INTEGER NOT NULL, text TEXT NOT NULL,
    PRIMARY KEY (doc, section, position));
CREATE VIRTUAL TABLE IF NOT EXISTS kb_sections USING fts5(
    doc UNINDEXED, section UNINDEXED, title, heading, body, tokenize='porter unicode61');
CREATE TABLE IF NOT EXISTS kb_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
DROP TABLE IF EXISTS kb;
"""


def slug(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", s.lower()).strip("-")


@dataclass(frozen=True)
class Passage:
    """One section, as retrieval ranks it."""

    doc: str  # file name, e.g. lockout-tagout.md
    title: str  # the document's title
    heading: str  # the section's heading
    text: str
    score: float  # bm25: lower is better
    section: int = 0

    @property
    def citation(self) -> str:
        return f"{self.doc}#{slug(self.heading)}"


@dataclass(frozen=True)
class UnitRef:
    """One quotable unit with where it lives; ``citation`` names exactly it (document, section, step)."""

    doc: str
    title: str
    heading: str
    section: int
    position: int
    kind: str
    number: int | None
    ordinal: int  # 1-based among the section's units of this kind
    text: str

    @property
    def citation(self) -> str:
        label = f"step-{self.number}" if self.kind == "step" and self.number else f"{self.kind}-{self.ordinal}"
        return f"{self.doc}#{slug(self.heading)}:{label}"


def split_markdown(text: str) -> tuple[str, list[tuple[str, str]]]:
    """``(title, [(heading, body), ...])`` of a Markdown text: kept for callers that want plain sections."""
    from linecrew.agent.documents import parse_markdown

    doc = parse_markdown(text, "inline.md")
    return doc.title, [(s.heading, "\n".join(u.text for u in s.units)) for s in doc.sections]


def _digest(files: list[Path]) -> str:
    return hashlib.sha256(b"".join(f.name.encode() + f.read_bytes() for f in files)).hexdigest()


class KnowledgeBase:
    def __init__(self, db: Database, lexicon: Lexicon | None = None) -> None:
        self.db = db
        self.lexicon = lexicon or Lexicon.load()
        self._units: list[UnitRef] | None = None
        with db.transaction() as conn:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)

    # ------------------------------------------------------------------ writing
    def add(self, document: Document, *, origin: str = USER, source: str = "", digest: str = "") -> int:
        """Store one parsed document, replacing any with the same name; returns its unit count."""
        rows, sections = [], []
        for si, sec in enumerate(document.sections):
            counts: dict[str, int] = {}
            for pi, u in enumerate(sec.units):
                counts[u.kind] = counts.get(u.kind, 0) + 1
                rows.append((document.name, si, sec.heading, pi, u.kind, u.number, counts[u.kind], u.text))
            sections.append((document.name, si, document.title, sec.heading, "\n".join(u.text for u in sec.units)))
        with self.db.transaction() as conn:
            self._delete(conn, document.name)
            conn.execute("INSERT INTO kb_docs VALUES (?,?,?,?,?,?,?)",
                         (document.name, document.title, document.fmt, origin, digest, source, time.time()))
            conn.executemany("INSERT INTO kb_units VALUES (?,?,?,?,?,?,?,?)", rows)
            conn.executemany("INSERT INTO kb_sections (doc, section, title, heading, body) VALUES (?,?,?,?,?)",
                             sections)
        self._units = None
        return len(rows)

    def add_paths(self, paths: list[Path]) -> list[tuple[str, int]]:
        """Import files (or every supported file under a folder); all are parsed before any is stored."""
        from linecrew.agent.documents import FORMATS

        files: list[Path] = []
        for p in map(Path, paths):
            if p.is_dir():
                files += sorted(f for f in p.rglob("*") if f.suffix.lower() in FORMATS and f.is_file())
            else:
                files.append(p)
        if not files:
            raise KnowledgeError("no procedure files found (Markdown, HTML, PDF or DOCX)")
        docs = [(load(f), f) for f in files]
        return [(d.name, self.add(d, origin=USER, source=str(f.resolve()), digest=_digest([f]))) for d, f in docs]

    def remove(self, name: str) -> None:
        with self.db.transaction() as conn:
            if conn.execute("SELECT 1 FROM kb_docs WHERE name=?", (name,)).fetchone() is None:
                raise KnowledgeError(f"no document named {name!r} (see: linecrew kb list)")
            self._delete(conn, name)
        self._units = None

    @staticmethod
    def _delete(conn: object, name: str) -> None:
        for table in ("kb_docs", "kb_units", "kb_sections"):
            col = "name" if table == "kb_docs" else "doc"
            conn.execute(f"DELETE FROM {table} WHERE {col}=?", (name,))  # type: ignore[attr-defined]

    def index_folder(self, folder: Path) -> int:
        """Replace the sample documents with every Markdown file under ``folder``; returns the section count."""
        files = sorted(Path(folder).glob("**/*.md"))
        with self.db.transaction() as conn:
            for (name,) in conn.execute("SELECT name FROM kb_docs WHERE origin=?", (SAMPLE,)).fetchall():
                self._delete(conn, name)
        sections = 0
        for f in files:
            doc = load(f)
            self.add(doc, origin=SAMPLE, source=str(f), digest=_digest([f]))
            sections += len(doc.sections)
        with self.db.transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO kb_meta VALUES ('digest', ?)", (_digest(files),))
        return sections

    def ensure_indexed(self, folder: Path = SAMPLE_KB) -> None:
        """Index the bundled (or configured) folder on first use, or when its documents changed."""
        files = sorted(Path(folder).glob("**/*.md"))
        if self.db.scalar("SELECT value FROM kb_meta WHERE key='digest'") != _digest(files):
            self.index_folder(folder)

    # ------------------------------------------------------------------ reading
    def documents(self) -> list[dict[str, object]]:
        rows = self.db.query("SELECT d.name, d.title, d.fmt, d.origin, d.source, d.added_at,"
                             " (SELECT COUNT(DISTINCT section) FROM kb_units u WHERE u.doc=d.name) AS sections,"
                             " (SELECT COUNT(*) FROM kb_units u WHERE u.doc=d.name) AS units"
                             " FROM kb_docs d ORDER BY d.origin, d.name")
        return [dict(r) for r in rows]

    def units(self) -> list[UnitRef]:
        """Every unit in reading order (cached until the base changes)."""
        if self._units is None:
            rows = self.db.query("SELECT u.doc, d.title, u.heading, u.section, u.position, u.kind, u.number,"
                                 " u.ordinal, u.text FROM kb_units u JOIN kb_docs d ON d.name=u.doc"
                                 " ORDER BY u.doc, u.section, u.position")
            self._units = [UnitRef(str(r["doc"]), str(r["title"]), str(r["heading"]), int(r["section"]),  # type: ignore[call-overload]
                                   int(r["position"]), str(r["kind"]),  # type: ignore[call-overload]
                                   None if r["number"] is None else int(r["number"]),  # type: ignore[call-overload]
                                   int(r["ordinal"]), str(r["text"])) for r in rows]  # type: ignore[call-overload]
        return self._units

    def section_units(self, doc: str, section: int) -> list[UnitRef]:
        return [u for u in self.units() if u.doc == doc and u.section == section]

    def document(self, name: str) -> Document:
        units = [u for u in self.units() if u.doc == name]
        if not units:
            raise KnowledgeError(f"no document named {name!r}")
        d = Document(name, units[0].title, "stored")
        for u in units:
            if not d.sections or d.sections[-1].heading != u.heading or len(d.sections) - 1 != u.section:
                d.sections.append(Section(u.heading))
            d.sections[-1].units.append(Unit(u.kind, u.text, u.number))
        return d

    def search(self, question: str, *, limit: int = 3) -> list[Passage]:
        """Sections ranked by bm25 (title x2, heading x4, body x1) over the question and its lexicon widening."""
        terms = [w for w in re.findall(r"[a-z0-9]+", self.lexicon.expand(question).lower())
                 if w not in _STOP and len(w) > 1]
        if not terms:
            return []
        query = " OR ".join(f'"{t}"' for t in dict.fromkeys(terms))
        rows = self.db.query(
            "SELECT doc, section, title, heading, body, bm25(kb_sections, 0.0, 0.0, 2.0, 4.0, 1.0) AS score"
            " FROM kb_sections WHERE kb_sections MATCH ? ORDER BY score LIMIT ?",
            (query, limit),
        )
        return [Passage(str(r["doc"]), str(r["title"]), str(r["heading"]), str(r["body"]), float(r["score"]),  # type: ignore[arg-type]
                        int(r["section"])) for r in rows]  # type: ignore[call-overload]
