"""The command line a new user can follow: every option says what it is, shows its default, and the same option
means the same thing everywhere."""

from __future__ import annotations

import click

from linecrew.cli import COMMANDS, main


def _commands() -> list[tuple[str, click.Command]]:
    out: list[tuple[str, click.Command]] = []
    ctx = click.Context(main)

    def walk(prefix: str, cmd: click.Command) -> None:
        out.append((prefix, cmd))
        if isinstance(cmd, click.Group):
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                assert sub is not None
                walk(f"{prefix} {name}", sub)

    for name in COMMANDS:
        cmd = main.get_command(ctx, name)
        assert cmd is not None, name
        walk(name, cmd)
    return out


def _options() -> list[tuple[str, click.Option]]:
    return [(path, p) for path, cmd in _commands() for p in cmd.params if isinstance(p, click.Option)]


def test_every_option_has_help_text() -> None:
    missing = [f"{path} {p.opts[0]}" for path, p in _options() if not p.help]
    assert not missing, missing


def _has_default(p: click.Option) -> bool:
    unset = p.default is None or type(p.default).__name__ == "Sentinel"  # click's "no default" marker
    return not unset and p.default not in (False, ()) and not p.is_flag and not p.multiple


def test_every_option_with_a_default_shows_it() -> None:
    shown_everywhere = bool(main.context_settings.get("show_default"))  # inherited by every subcommand's context
    hidden = [f"{path} {p.opts[0]}" for path, p in _options()
              if _has_default(p) and (p.show_default is False or (p.show_default is None and not shown_everywhere))]
    assert not hidden, hidden


def test_the_same_option_means_the_same_everywhere() -> None:
    meaning: dict[str, set[str]] = {}
    for _path, p in _options():
        for opt in p.opts:
            if opt in ("--data-dir", "--json", "--config", "--device-class", "--url", "--token"):
                meaning.setdefault(opt, set()).add(str(p.name).removesuffix("es"))  # one or several of it
    assert all(len(names) == 1 for names in meaning.values()), meaning
    assert {"--data-dir", "--json", "--config"} <= set(meaning)


def test_every_command_that_shows_a_listing_offers_json() -> None:
    listing = {"agent status", "agent inbox", "agent stats", "agent update status", "server devices",
               "server messages", "server escalations list", "server release offers", "server token list",
               "rollout status", "plan run", "plan roster", "plan dispatch", "config show"}
    found = {path: cmd for path, cmd in _commands()}
    lacking = [c for c in listing if not any(isinstance(p, click.Option) and "--json" in p.opts
                                             for p in found[c].params)]
    assert not lacking, lacking
