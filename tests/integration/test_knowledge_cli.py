"""The technician's own manuals and the evaluation, through the real CLI: kb add/list/search/remove on real
PDF, DOCX and HTML files, agent ask --json answering from them, and eval assistant on the labelled set."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO
from tests.helpers.manuals import WRITERS

QA = REPO / "tests" / "data" / "assistant" / "qa.jsonl"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "linecrew.cli", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=600)


def test_manuals_in_every_format_are_imported_answered_from_and_removed(tmp_path: Path) -> None:
    dev = str(tmp_path / "dev")
    files = [WRITERS[ext](tmp_path / f"vault-{ext}.{ext}") for ext in ("pdf", "docx", "html")]
    added = _cli("kb", "add", "--data-dir", dev, "--json", *map(str, files))
    assert added.returncode == 0, added.stderr
    assert sorted(d["name"] for d in json.loads(added.stdout)) == ["vault-docx.docx", "vault-html.html",
                                                                    "vault-pdf.pdf"]
    listed = json.loads(_cli("kb", "list", "--data-dir", dev, "--json").stdout)
    assert {d["origin"] for d in listed} == {"sample", "user"} and len(listed) == 16
    _cli("kb", "remove", "--data-dir", dev, "vault-docx.docx")
    _cli("kb", "remove", "--data-dir", dev, "vault-html.html")
    found = json.loads(_cli("kb", "search", "--data-dir", dev, "--json", "pump size for a large vault").stdout)
    assert found["sections"][0]["citation"] == "vault-pdf.pdf#pump-sizes" and "4 inch pump" in found["answer"]

    r = _cli("agent", "ask", "--data-dir", dev, "--json", "how far from the vault opening does the pump hose go?")
    reply = json.loads(r.stdout)
    for key in ("answer", "intent", "route", "citations", "grounded", "abstained", "confidence",
                "needs_confirmation", "ttft_ms", "latency_ms"):
        assert key in reply, key
    assert reply["grounded"] and not reply["abstained"] and "at least 3 meters" in reply["answer"]
    assert "vault-pdf.pdf#pump-out-steps:step-2" in reply["citations"]

    bad = tmp_path / "broken.pdf"
    bad.write_bytes(b"%PDF-1.4 truncated")
    r = _cli("kb", "add", "--data-dir", dev, str(bad))
    assert r.returncode == 1 and "broken.pdf: not a readable PDF" in r.stderr and "Traceback" not in r.stderr
    assert _cli("kb", "remove", "--data-dir", dev, "nope.md").returncode == 1


def test_eval_assistant_reports_every_figure_on_the_held_out_part(tmp_path: Path) -> None:
    r = _cli("eval", "assistant", "--data-dir", str(tmp_path / "dev"), "--split", "heldout", "--json", str(QA))
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    for key in ("answer_accuracy", "contradictions", "invented_figures", "abstain_rate_uncovered",
                "false_abstain_rate", "intent_accuracy", "per_intent", "retrieval_hit_at_1", "retrieval_hit_at_3",
                "latency_p50_ms", "latency_p95_ms"):
        assert key in report, key
    assert report["cases"] == sum(1 for line in QA.read_text().splitlines() if '"heldout"' in line)
    assert report["contradictions"] == 0 and report["invented_figures"] == 0
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"nothing": 1}\n')
    r = _cli("eval", "assistant", "--data-dir", str(tmp_path / "dev"), str(bad))
    assert r.returncode == 1 and "bad.jsonl:1: not a case" in r.stderr


def test_eval_calibrate_writes_its_models_and_a_bank_of_the_tune_part_only(tmp_path: Path) -> None:
    """``linecrew eval calibrate`` through the real CLI on a slice of the labelled set: the answerability model and
    the question bank load, and the bank holds the slice's tune questions (none held out)."""
    from linecrew.agent.answerability import BANK_FEATURES, HEARD_FEATURES, AnswerabilityModel, QuestionBank
    from linecrew.agent.grounding import FEATURES

    rows = [json.loads(line) for line in QA.read_text().splitlines() if line.strip()]
    tune = [r for r in rows if r["split"] == "tune" and "answerable" in r]
    held = [r for r in rows if r["split"] == "heldout" and "answerable" in r]
    part = [r for k, r in enumerate(tune) if k % 8 == 0] + held[:10]  # both kinds of question, a few held out
    cases = tmp_path / "qa.jsonl"
    cases.write_text("".join(json.dumps(r) + "\n" for r in part), encoding="utf-8")
    r = _cli("eval", "calibrate", "--data-dir", str(tmp_path / "dev"), str(cases), "--out", str(tmp_path / "m.json"))
    assert r.returncode == 0, r.stderr
    printed = json.loads(r.stdout)
    assert printed["curve"] and printed["bank"]["curve"] and printed["heard"]["curve"]
    model = AnswerabilityModel.load(tmp_path / "m.json")
    heard = AnswerabilityModel.load(tmp_path / "answerability_heard.json")  # for the recogniser's other readings
    assert heard.features == HEARD_FEATURES and model.features == FEATURES and set(FEATURES) > set(HEARD_FEATURES)
    bank = QuestionBank.load(tmp_path / "question_bank.json")
    assert bank is not None and 0.0 < model.threshold < 1.0 and bank.model.features == BANK_FEATURES
    assert [a.question for a in bank.asked] == [r["question"] for r in part if r["split"] == "tune"]
    assert any(a.cites for a in bank.asked) and any(not a.covered for a in bank.asked) and bank.digests
