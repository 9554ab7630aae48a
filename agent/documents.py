"""Procedure documents in, structure out: sections, numbered steps, list items, table rows, warnings.

Every format goes through a well-kept parser — Markdown: markdown-it-py; HTML: Beautiful Soup; PDF:
pdfplumber (text with font sizes, and its table finder); DOCX: python-docx — and comes out as the same
``Document``. A unit is the smallest thing an answer may quote: one step, one item, one table row (its
header named, "Class 2: Maximum use voltage 17,000 V"), or one sentence of prose. Warnings are kept as
their own kind, so they are read before the step they guard.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from linecrew.agent.errors import DocumentError

FORMATS = {".md": "markdown", ".markdown": "markdown", ".html": "html", ".htm": "html", ".pdf": "pdf",
           ".docx": "docx"}
MAX_BYTES = 50 * 1024 * 1024

_WARN = re.compile(r"^\s*(warning|caution|danger|never)\b", re.I)
_STEP = re.compile(r"^\s*(\d{1,2})[.)]\s+(.*)")
_BULLET = re.compile(r"^\s*[-*\u2022]\s+(.*)")
_SENT = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")


@dataclass(frozen=True)
class Unit:
    kind: str  # step | item | row | warning | sentence
    text: str
    number: int | None = None  # a step's number


@dataclass
class Section:
    heading: str
    units: list[Unit] = field(default_factory=list)


@dataclass
class Document:
    name: str  # file name, the citation's first part
    title: str
    fmt: str
    sections: list[Section] = field(default_factory=list)

    def unit_count(self) -> int:
        return sum(len(s.units) for s in self.sections)


def sentences(text: str) -> list[str]:
    text = " ".join(text.split())
    return [s.strip() for s in _SENT.split(text) if s.strip()]


def _prose(text: str, heading: str) -> list[Unit]:
    guard = bool(_WARN.match(heading))
    return [Unit("warning" if guard or _WARN.match(s) else "sentence", s) for s in sentences(text)]


def _item(text: str, heading: str) -> Unit:
    text = " ".join(text.split())
    return Unit("warning" if _WARN.match(text) or _WARN.match(heading) else "item", text)


def _rows(header: list[str], body: Iterable[list[str]]) -> list[Unit]:
    out = []
    for cells in body:
        cells = [" ".join(c.split()) for c in cells]
        if not any(cells):
            continue
        rest = [f"{h}: {c}" if h else c for h, c in zip(header[1:], cells[1:], strict=False) if c]
        out.append(Unit("row", f"{cells[0]}: " + "; ".join(rest) if rest else cells[0]))
    return out


class _Builder:
    def __init__(self, name: str, fmt: str) -> None:
        self.doc = Document(name, "", fmt)
        self._section: Section | None = None

    def heading(self, text: str, level: int) -> None:
        text = " ".join(text.split())
        if not text:
            return
        if level == 1 and not self.doc.title:
            self.doc.title = text
        self._section = Section(text)
        self.doc.sections.append(self._section)

    def add(self, units: Iterable[Unit]) -> None:
        if self._section is None:
            self._section = Section(self.doc.title or self.doc.name)
            self.doc.sections.append(self._section)
        self._section.units.extend(units)

    @property
    def current(self) -> str:
        return self._section.heading if self._section else ""

    def build(self) -> Document:
        self.doc.sections = [s for s in self.doc.sections if s.units]
        if not self.doc.title:
            self.doc.title = self.doc.sections[0].heading if self.doc.sections else self.doc.name
        if not self.doc.sections:
            raise DocumentError(f"{self.doc.name}: no text found")
        return self.doc


# ------------------------------------------------------------------------------------------ Markdown
def parse_markdown(text: str, name: str) -> Document:
    from markdown_it import MarkdownIt

    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    b = _Builder(name, "markdown")
    lists: list[tuple[str, int]] = []  # (ordered|bullet, next number)
    row: list[str] = []
    header: list[str] = []
    body: list[list[str]] = []
    in_head = False
    for i, tok in enumerate(tokens):
        t = tok.type
        if t == "heading_open":
            b.heading(tokens[i + 1].content, int(tok.tag[1]))
        elif t in ("ordered_list_open", "bullet_list_open"):
            start = int(tok.attrGet("start") or 1) if t == "ordered_list_open" else 0
            lists.append(("ordered" if t == "ordered_list_open" else "bullet", start))
        elif t in ("ordered_list_close", "bullet_list_close"):
            lists.pop()
        elif t == "inline" and tokens[i - 1].type == "paragraph_open" and tokens[i - 2].type != "heading_open":
            content = tok.content
            if lists and tokens[i - 2].type == "list_item_open":
                kind, n = lists[-1]
                if kind == "ordered":
                    lists[-1] = (kind, n + 1)
                    u = Unit("step", " ".join(content.split()), n)
                    b.add([Unit("warning", u.text, n) if _WARN.match(u.text) else u])
                else:
                    b.add([_item(content, b.current)])
            elif lists:  # a second paragraph inside a list item: part of it
                b.add(_prose(content, b.current))
            else:
                b.add(_prose(content, b.current))
        elif t == "thead_open":
            in_head, header, body = True, [], []
        elif t == "thead_close":
            in_head = False
        elif t == "tr_open":
            row = []
        elif t in ("th_open", "td_open"):
            row.append(tokens[i + 1].content if tokens[i + 1].type == "inline" else "")
        elif t == "tr_close":
            if in_head:
                header = row
            else:
                body.append(row)
        elif t == "table_close":
            b.add(_rows(header, body))
    return b.build()


# ------------------------------------------------------------------------------------------ HTML
def parse_html(text: str, name: str) -> Document:
    from bs4 import BeautifulSoup, Tag

    soup = BeautifulSoup(text, "html.parser")
    for junk in soup(["script", "style", "nav", "header", "footer", "noscript"]):
        junk.decompose()
    b = _Builder(name, "html")
    root = soup.body or soup
    for el in root.find_all(["h1", "h2", "h3", "h4", "p", "ol", "ul", "table", "div", "aside"]):
        if not isinstance(el, Tag) or el.find_parent(["ol", "ul", "table", "p"]):
            continue
        classes = " ".join(el.get("class") or []).lower()
        if el.name in ("h1", "h2", "h3", "h4"):
            b.heading(el.get_text(" "), int(el.name[1]))
        elif el.name == "p" or (el.name in ("div", "aside") and not el.find(["p", "ol", "ul", "table", "h1", "h2",
                                                                               "h3", "h4", "div"])):
            words = " ".join(el.get_text(" ").split())
            if not words:
                continue
            if re.search(r"warning|caution|danger", classes) and not _WARN.match(words):
                b.add([Unit("warning", s) for s in sentences(words)])
            else:
                b.add(_prose(words, b.current))
        elif el.name == "ol":
            start = int(str(el.get("start") or 1))
            items = [li for li in el.find_all("li") if li.find_parent(["ol", "ul"]) is el]
            b.add(Unit("warning" if _WARN.match(li.get_text(" ")) else "step", " ".join(li.get_text(" ").split()),
                       start + k) for k, li in enumerate(items))
        elif el.name == "ul":
            items = [li for li in el.find_all("li") if li.find_parent(["ol", "ul"]) is el]
            b.add(_item(li.get_text(" "), b.current) for li in items)
        elif el.name == "table":
            rows = [[c.get_text(" ") for c in tr.find_all(["th", "td"])] for tr in el.find_all("tr")]
            if rows:
                b.add(_rows(rows[0], rows[1:]))
    return b.build()


# ------------------------------------------------------------------------------------------ DOCX
def parse_docx(path: Path, name: str) -> Document:
    import docx
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    try:
        d = docx.Document(str(path))
    except Exception as e:  # python-docx raises zipfile/KeyError/ValueError variants on a bad file
        raise DocumentError(f"{name}: not a readable DOCX file ({type(e).__name__})") from e
    b = _Builder(name, "docx")
    numbers: dict[str, int] = {}
    for block in d.iter_inner_content():
        if isinstance(block, Table):
            rows = [[c.text for c in r.cells] for r in block.rows]
            if rows:
                b.add(_rows(rows[0], rows[1:]))
            continue
        assert isinstance(block, Paragraph)
        text, style = block.text.strip(), (block.style.name if block.style is not None else "") or ""
        if not text:
            continue
        m = re.match(r"(Heading|Title)\s*(\d?)", style)
        if m:
            b.heading(text, 1 if m.group(1) == "Title" else int(m.group(2) or 1))
        elif "List Number" in style:
            n = numbers.get(b.current, 0) + 1
            numbers[b.current] = n
            b.add([Unit("warning" if _WARN.match(text) else "step", text, n)])
        elif "List" in style:
            b.add([_item(text, b.current)])
        else:
            step = _STEP.match(text)
            if step:
                b.add([Unit("step", step.group(2), int(step.group(1)))])
            else:
                b.add(_prose(text, b.current))
    return b.build()


# ------------------------------------------------------------------------------------------ PDF
def parse_pdf(path: Path, name: str) -> Document:
    """Headings are lines set larger than the body text; tables come from pdfplumber's table finder."""
    import pdfplumber

    try:
        return _pdf_document(_pdf_read(pdfplumber.open(str(path))), name)
    except DocumentError:
        raise
    except Exception as e:  # pdfminer raises many kinds (syntax, encryption, missing /Root) on a bad file
        raise DocumentError(f"{name}: not a readable PDF ({type(e).__name__})") from e


def _pdf_read(pdf: Any) -> list[tuple[float, str, bool]]:
    lines: list[tuple[float, str, bool]] = []  # (font size, text, inside a table)
    with pdf:
        for page in pdf.pages:
            tables = page.find_tables()
            boxes = [t.bbox for t in tables]
            words = page.extract_words(extra_attrs=["size"], keep_blank_chars=False, use_text_flow=True)
            for line in _pdf_lines(words, boxes):
                lines.append(line)
            for t in tables:
                rows = [[c or "" for c in r] for r in t.extract()]
                if rows:
                    lines.append((-1.0, _TABLE_MARK, False))
                    lines.extend((-2.0, "\t".join(r), True) for r in rows)
    return lines


_TABLE_MARK = "\x00table"


def _pdf_lines(words: list[dict[str, Any]], boxes: list[tuple[float, float, float, float]]) -> list[
        tuple[float, str, bool]]:
    out: list[tuple[float, str, bool]] = []
    cur: list[dict[str, Any]] = []

    def flush() -> None:
        if cur:
            out.append((max(float(w["size"]) for w in cur), " ".join(str(w["text"]) for w in cur), False))
            cur.clear()

    for w in words:
        x, y = (float(w["x0"]) + float(w["x1"])) / 2, (float(w["top"]) + float(w["bottom"])) / 2
        if any(b[0] <= x <= b[2] and b[1] <= y <= b[3] for b in boxes):
            continue
        if cur and abs(float(w["top"]) - float(cur[-1]["top"])) > 2:
            flush()
        cur.append(w)
    flush()
    return out


def _pdf_document(lines: list[tuple[float, str, bool]], name: str) -> Document:
    sizes = sorted(s for s, _, tab in lines if s > 0 and not tab)
    body = sizes[len(sizes) // 2] if sizes else 0.0
    b = _Builder(name, "pdf")
    para: list[str] = []
    table: list[list[str]] = []
    levels = sorted({s for s in sizes if s > body + 0.5}, reverse=True)

    def flush_para() -> None:
        if para:
            _pdf_paragraph(" ".join(para), b)
            para.clear()

    def flush_table() -> None:
        if table:
            b.add(_rows(table[0], table[1:]))
            table.clear()

    for size, text, in_table in lines:
        if text == _TABLE_MARK:
            flush_para()
            flush_table()
            continue
        if in_table:
            table.append(text.split("\t"))
            continue
        flush_table()
        if size > body + 0.5:
            flush_para()
            b.heading(text, levels.index(size) + 1 if size in levels else 2)
        elif _STEP.match(text) or _BULLET.match(text) or _WARN.match(text):
            flush_para()
            para.append(text)
        else:
            para.append(text)
    flush_para()
    flush_table()
    return b.build()


def _pdf_paragraph(text: str, b: _Builder) -> None:
    step, bullet = _STEP.match(text), _BULLET.match(text)
    if step:
        body = step.group(2)
        b.add([Unit("warning" if _WARN.match(body) else "step", " ".join(body.split()), int(step.group(1)))])
    elif bullet:
        b.add([_item(bullet.group(1), b.current)])
    else:
        b.add(_prose(text, b.current))


# ------------------------------------------------------------------------------------------ entry
def load(path: Path) -> Document:
    """Parse one file by its extension; a clear ``DocumentError`` for anything it cannot read."""
    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DocumentError(f"{path.name}: unsupported format (use {', '.join(sorted(set(FORMATS)))})")
    try:
        size = path.stat().st_size
    except OSError as e:
        raise DocumentError(f"{path}: {e.strerror}") from e
    if size > MAX_BYTES:
        raise DocumentError(f"{path.name}: {size} bytes is over the {MAX_BYTES} byte limit")
    if fmt == "pdf":
        return parse_pdf(path, path.name)
    if fmt == "docx":
        return parse_docx(path, path.name)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DocumentError(f"{path.name}: not UTF-8 text") from e
    return parse_markdown(text, path.name) if fmt == "markdown" else parse_html(text, path.name)
