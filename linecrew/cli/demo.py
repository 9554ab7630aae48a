"""``linecrew demo``: the whole tour on one machine."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import click

from linecrew.cli._common import (
    _friendly,
    _wait_for_signal,
)


@click.command("demo")
@click.option("--data-dir", "--dir", "data_dir", type=click.Path(path_type=Path), default=Path(".linecrew/demo"),
              help="where the tour keeps its server, devices and keys")
@click.option("--notes", type=int, default=5, help="notes the demo agent sends")
@click.option("--http-port", type=int, default=0, help="dashboard/API port (default: a free one)")
@click.option("--keep/--no-keep", default=None,
              help="keep everything running for the dashboard until Ctrl-C (default: when run in a terminal)")
@_friendly
def demo(data_dir: Path, notes: int, http_port: int, keep: bool | None) -> None:
    """The whole tour on one machine: server + broker, simulated devices and one real agent, a spoken
    question answered, a plan pushed, an escalation answered, a staged delta rollout, the dashboard."""
    from linecrew.tools.demo import interactive, run_demo

    started = time.monotonic()

    def done() -> None:
        click.echo(f"demo finished in {time.monotonic() - started:.1f} s")

    def hold() -> None:
        done()
        _wait_for_signal()

    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        logging.getLogger().setLevel(logging.WARNING)  # the tour prints what happens; logs only for trouble
    keep = interactive() if keep is None else keep
    run_demo(data_dir, notes=notes, echo=click.echo, http_port=http_port, wait=hold if keep else None)
    if not keep:
        done()
