"""Helpers every ``linecrew`` command module shares: friendly errors, logging set-up, waiting for a signal."""

from __future__ import annotations

import functools
import signal
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from linecrew.shared.errors import LinecrewError
from linecrew.shared.logs import configure_logging

F = TypeVar("F", bound=Callable[..., Any])


def _friendly(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (LinecrewError, FileNotFoundError) as e:
            raise click.ClickException(str(e)) from e

    return wrapper  # type: ignore[return-value]


def _logging(verbose: bool, fmt: str = "text") -> None:
    configure_logging(verbose=verbose, fmt="json" if fmt == "json" else "text")


def _wait_for_signal() -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.is_set():
        stop.wait(1.0)

config_option = click.option(
    "--config", "config_path", type=click.Path(path_type=Path), default=None,
    help="agent.toml / server.toml (default: $LINECREW_CONFIG, ./ROLE.toml, ~/.config/linecrew/, /etc/linecrew/)")
device_dir_option = click.option("--data-dir", "--dir", "data_dir", type=click.Path(path_type=Path),
                                 help="device data folder (default: the config's data_dir, .linecrew/agent)")
server_dir_option = click.option("--data-dir", "--dir", "data_dir", type=click.Path(path_type=Path),
                                 help="server data folder (default: the config's data_dir, .linecrew/server)")
url_option = click.option("--url", envvar="LINECREW_URL", default="http://127.0.0.1:8700", show_default=True,
                          help="server admin API (env LINECREW_URL)")
token_option = click.option("--token", envvar="LINECREW_TOKEN", default=None,
                            help="admin API token (env LINECREW_TOKEN); 'linecrew server token create' makes one")
json_option = click.option("--json", "as_json", is_flag=True, help="print one JSON document instead of text")


def read_manifest(path: Path) -> dict[str, Any]:
    """A release manifest file, or one clear error line naming it (never a traceback)."""
    from linecrew.shared.release import parse_manifest

    try:
        return parse_manifest(path.read_bytes())
    except LinecrewError as e:
        raise click.ClickException(f"{path}: {e}") from e


def local_time(epoch: float | None) -> str:
    """Times for people: local ISO 8601 to the second (``-`` for none), never epoch floats."""
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch).astimezone().isoformat(timespec="seconds")


def _agent_config(config_path: Path | None, **overrides: Any) -> Any:
    from linecrew.agent.config import AgentConfig

    return AgentConfig.load(config_path, **overrides)

def _server_config(config_path: Path | None, **overrides: Any) -> Any:
    from linecrew.server.config import ServerConfig

    return ServerConfig.load(config_path, **overrides)


def _open_store(cfg: Any) -> Any:
    """The server's existing store; admin commands never create one (a wrong folder would look empty)."""
    from linecrew.server.store import ServerStore

    if not cfg.database_url and not (cfg.data_dir / "server.db").exists():
        where = f" (config {cfg.source})" if cfg.source else " (no config file found)"
        raise click.ClickException(f"no server database in {cfg.data_dir}{where}: start 'linecrew server run' "
                                   "there first, or point --data-dir / --config / LINECREW_CONFIG at its data")
    return ServerStore(cfg.data_dir, database_url=cfg.database_url)

