"""``linecrew eval ...``: measure the assistant on a labelled set (a release can gate on it)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import click

from linecrew.cli._common import _agent_config, _friendly, config_option, device_dir_option


@click.group("eval")
def eval_() -> None:
    """Evaluate the assistant on labelled questions and utterances."""


@eval_.command("assistant")
@config_option
@device_dir_option
@click.argument("cases_file", metavar="QA.jsonl", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--split", default=None, help="only cases of this split (e.g. heldout)")
@click.option("--json", "as_json", is_flag=True, help="the report as one JSON object")
@_friendly
def eval_assistant(config_path: Path | None, data_dir: Path | None, cases_file: Path, split: str | None,
                   as_json: bool) -> None:
    """Run QA.jsonl through the assistant (on a scratch copy: nothing is queued) and report accuracy,
    contradictions, abstention, intents, retrieval and latency."""
    from linecrew.agent.evaluation import evaluate, load_cases
    from linecrew.tools.evaluation import scratch_assistant

    cfg = _agent_config(config_path, data_dir=data_dir)
    cases = load_cases(cases_file, split=split)
    with tempfile.TemporaryDirectory(prefix="linecrew-eval-") as tmp:
        assistant = scratch_assistant(cfg, Path(tmp))
        try:
            result = evaluate(assistant, cases)
        finally:
            assistant.llm.close()
    if as_json:
        click.echo(json.dumps(result))
        return
    for k, v in result.items():
        if k != "per_intent":
            click.echo(f"{k:<24} {v}")
    for name, pr in result["per_intent"].items():
        click.echo(f"  {name:<22} precision {pr['precision']}  recall {pr['recall']}  (n={pr['n']})")


@eval_.command("calibrate")
@config_option
@device_dir_option
@click.argument("cases_file", metavar="QA.jsonl", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--split", default="tune", help="fit on this split only (keep the held-out part out)")
@click.option("--out", "out_file", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="where to write the answerability model (JSON)")
@click.option("--bank-out", "bank_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="where to write the question bank and its model (default: question_bank.json beside --out)")
@click.option("--heard-out", "heard_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="where to write the model for the recogniser's other readings (default: answerability_heard.json "
                   "beside --out)")
@_friendly
def eval_calibrate(config_path: Path | None, data_dir: Path | None, cases_file: Path, split: str,
                   out_file: Path, bank_file: Path | None, heard_file: Path | None) -> None:
    """Fit the answer-or-abstain models on labelled questions; prints their reliability curves."""
    from linecrew.agent.answerability import HEARD_FEATURES
    from linecrew.agent.answering import Answerer
    from linecrew.agent.evaluation import calibrate, calibrate_bank, load_cases
    from linecrew.agent.grounding import FEATURES
    from linecrew.tools.evaluation import scratch_knowledge

    cfg = _agent_config(config_path, data_dir=data_dir)
    cases = load_cases(cases_file, split=split)
    with tempfile.TemporaryDirectory(prefix="linecrew-calibrate-") as tmp:
        kb = scratch_knowledge(cfg, Path(tmp))
        model, heard = calibrate(Answerer(kb, encoder_dir=cfg.embedding_model, bank=None), cases,
                                 (FEATURES, HEARD_FEATURES))
        bank = calibrate_bank(Answerer(kb, model, encoder_dir=cfg.embedding_model, bank=None), cases)
    model.save(out_file)
    heard.save(heard_file or out_file.with_name("answerability_heard.json"))
    bank.save(bank_file or out_file.with_name("question_bank.json"))
    click.echo(json.dumps({"threshold": model.threshold, "fitted_on": model.fitted_on, "curve": model.curve,
                           "heard": {"threshold": heard.threshold, "curve": heard.curve},
                           "bank": {"threshold": bank.model.threshold, "fitted_on": bank.model.fitted_on,
                                    "curve": bank.model.curve}}))
