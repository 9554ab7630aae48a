"""The ``linecrew`` command: one module per command group, each thin (parse, one library call, print).

Command groups are imported only when they run, so ``linecrew --help`` and a quick ``linecrew agent status``
do not pay for FastAPI, OR-Tools, llama.cpp or Whisper. A command turns a ``LinecrewError`` into one clear
line with exit status 1 (no traceback for expected failures).
"""

from __future__ import annotations

import importlib

import click

from linecrew.cli._common import _logging

# name -> (module:attribute, one-line help shown by ``linecrew --help`` without importing the module)
COMMANDS: dict[str, tuple[str, str]] = {
    "agent": ("linecrew.cli.agent:agent", "The device agent: enrollment, sync, voice, assistant, updates."),
    "config": ("linecrew.cli.config:config", "Find, check and show the configuration in force."),
    "demo": ("linecrew.cli.demo:demo", "The whole tour on one machine (server, devices, rollout, dashboard)."),
    "eval": ("linecrew.cli.eval:eval_", "Measure the assistant on a labelled set (accuracy, abstention, intents)."),
    "fleet": ("linecrew.cli.fleet:fleet", "Simulated devices for load tests and rollout rehearsals."),
    "image": ("linecrew.cli.release:image", "Device image bundles per device class."),
    "kb": ("linecrew.cli.kb:kb", "The procedures the assistant answers from: add, list, remove, search."),
    "plan": ("linecrew.cli.plan:plan", "Central planner: rosters, dispatch, live re-planning."),
    "release": ("linecrew.cli.release:release", "Signed model releases: keys, root of trust, deltas."),
    "rollout": ("linecrew.cli.rollout:rollout", "Staged rollouts of a release over the admin API."),
    "server": ("linecrew.cli.server:server", "The central sync server and its data."),
    "transcribe": ("linecrew.cli.agent:transcribe", "Transcribe a file, a stream or stdin offline."),
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use (click's documented lazy-loading pattern)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module, attr = COMMANDS[cmd_name][0].split(":")
        cmd: click.Command = getattr(importlib.import_module(module), attr)
        return cmd

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, COMMANDS[name][1]) for name in self.list_commands(ctx)])


@click.group(cls=LazyGroup, context_settings={"show_default": True})
@click.option("-v", "--verbose", is_flag=True, help="debug logging")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", envvar="LINECREW_LOG_FORMAT",
              show_default=True, help="json: one object per line with device_id and request_id (for daemons)")
@click.version_option(package_name="linecrew")
def main(verbose: bool, log_format: str) -> None:
    """Linecrew: offline-first runtime for field crews."""
    _logging(verbose, log_format)
