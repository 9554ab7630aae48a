"""``linecrew config check|show``: which file is in force and what it says, before anything runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from linecrew.cli._common import _friendly, config_option, json_option

ROLES = ("agent", "server")


def _load(role: str, config_path: Path | None) -> Any:
    if role == "agent":
        from linecrew.agent.config import AgentConfig

        return AgentConfig.load(config_path)
    from linecrew.server.config import ServerConfig

    return ServerConfig.load(config_path)


@click.group()
def config() -> None:
    """Find, check and show the configuration in force (search: --config, $LINECREW_CONFIG, ./ROLE.toml,
    ~/.config/linecrew/ROLE.toml, /etc/linecrew/ROLE.toml)."""


@config.command("check")
@click.argument("role", type=click.Choice(ROLES))
@config_option
@_friendly
def config_check(role: str, config_path: Path | None) -> None:
    """Validate the config file for ROLE; a typo or wrong type is one line naming the key and the file."""
    cfg = _load(role, config_path)
    click.echo(f"OK: {cfg.source or 'no config file (defaults and environment)'}")


@config.command("show")
@click.argument("role", type=click.Choice(ROLES))
@config_option
@json_option
@_friendly
def config_show(role: str, config_path: Path | None, as_json: bool) -> None:
    """Every setting in force for ROLE and the file it came from (secrets masked)."""
    cfg = _load(role, config_path)
    values = json.loads(cfg.model_dump_json())
    for key in [k for k in values if any(w in k for w in ("password", "secret", "token"))]:
        values[key] = "***" if values[key] else values[key]
    if as_json:
        click.echo(json.dumps({"source": str(cfg.source) if cfg.source else None, "settings": values}, indent=2))
        return
    click.echo(f"# {cfg.source or 'no config file: defaults and environment'}")
    for key, value in values.items():
        click.echo(f"{key} = {json.dumps(value)}")


@config.command("example")
@click.argument("role", type=click.Choice(ROLES))
def config_example(role: str) -> None:
    """Print the example ROLE.toml shipped in the package (every key with its default), to start a config."""
    import importlib.resources

    click.echo(importlib.resources.files("linecrew").joinpath(f"_files/config/{role}.example.toml").read_text(),
               nl=False)
