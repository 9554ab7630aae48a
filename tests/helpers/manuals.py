"""Small procedure manuals in every supported format, written by real writers (python-docx, fpdf2)."""

from __future__ import annotations

from pathlib import Path

TITLE = "Vault pump-out procedure"
STEPS = ["Test the vault air for gas with a four-gas meter before entry.",
         "Set the pump hose at least 3 meters from the vault opening.",
         "Pump the water to the storm drain only after checking for an oil sheen."]
WARNING = "Warning: never enter a vault that fails the gas test."
ROWS = [("Vault size", "Pump"), ("small", "2 inch pump"), ("large", "4 inch pump")]


def write_html(path: Path) -> Path:
    rows = "".join(f"<tr>{''.join(f'<td>{c}</td>' for c in r)}</tr>" for r in ROWS[1:])
    path.write_text(
        f"<html><head><style>p{{}}</style><script>var x=1;</script></head><body><nav>menu</nav><h1>{TITLE}</h1>"
        f"<h2>Pump-out steps</h2><p class='warning'>{WARNING.split(': ', 1)[1]}</p>"
        f"<ol>{''.join(f'<li>{s}</li>' for s in STEPS)}</ol><h2>Pump sizes</h2>"
        f"<table><tr><th>{ROWS[0][0]}</th><th>{ROWS[0][1]}</th></tr>{rows}</table></body></html>", encoding="utf-8")
    return path


def write_docx(path: Path) -> Path:
    import docx

    d = docx.Document()
    d.add_heading(TITLE, 1)
    d.add_heading("Pump-out steps", 2)
    d.add_paragraph(WARNING)
    for s in STEPS:
        d.add_paragraph(s, style="List Number")
    d.add_heading("Pump sizes", 2)
    t = d.add_table(rows=len(ROWS), cols=2)
    for i, r in enumerate(ROWS):
        for j, c in enumerate(r):
            t.cell(i, j).text = c
    d.save(str(path))
    return path


def write_pdf(path: Path) -> Path:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=20)
    pdf.cell(0, 12, TITLE, new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=15)
    pdf.cell(0, 10, "Pump-out steps", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=11)
    pdf.multi_cell(0, 7, WARNING, new_x="LMARGIN", new_y="NEXT")
    for i, s in enumerate(STEPS, 1):
        pdf.multi_cell(0, 7, f"{i}. {s}", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=15)
    pdf.cell(0, 10, "Pump sizes", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=11)
    with pdf.table() as table:
        for r in ROWS:
            row = table.row()
            for c in r:
                row.cell(c)
    pdf.output(str(path))
    return path


def write_markdown(path: Path) -> Path:
    table = "\n".join(f"| {a} | {b} |" for a, b in ROWS[1:])
    steps = "\n".join(f"{i}. {s}" for i, s in enumerate(STEPS, 1))
    path.write_text(f"# {TITLE}\n\n## Pump-out steps\n{WARNING}\n\n{steps}\n\n## Pump sizes\n"
                    f"| {ROWS[0][0]} | {ROWS[0][1]} |\n| --- | --- |\n{table}\n", encoding="utf-8")
    return path


WRITERS = {"md": write_markdown, "html": write_html, "docx": write_docx, "pdf": write_pdf}
