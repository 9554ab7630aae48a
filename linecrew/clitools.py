"""Helpers every ``linecrew`` command module shares: friendly errors, logging set-up, waiting for a signal."""

from __future__ import annotations

import functools
import signal
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import click

from shared.errors import LinecrewError
from shared.logs import configure_logging

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
