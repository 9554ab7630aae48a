"""Helpers every ``linecrew`` command module shares: friendly errors, logging set-up, waiting for a signal."""

from __future__ import annotations

import functools
import signal
import threading
from collections.abc import Callable
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

config_option = click.option("--config", "config_path", type=click.Path(path_type=Path), default=None,
                             help="agent.toml / server.toml")
device_dir_option = click.option("--dir", "data_dir", type=click.Path(path_type=Path), help="device data folder")
server_dir_option = click.option("--dir", "data_dir", type=click.Path(path_type=Path), help="server data folder")


def _agent_config(config_path: Path | None, **overrides: Any) -> Any:
    from linecrew.agent.config import AgentConfig

    return AgentConfig.load(config_path, **overrides)

def _server_config(config_path: Path | None, **overrides: Any) -> Any:
    from linecrew.server.config import ServerConfig

    return ServerConfig.load(config_path, **overrides)


def _open_store(cfg: Any) -> Any:
    from linecrew.server.store import ServerStore

    return ServerStore(cfg.data_dir, database_url=cfg.database_url)

