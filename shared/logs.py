"""Structured logs: one JSON object per line carrying ``device_id`` and ``request_id``.

Context comes from :func:`log_context` (a context variable: per thread and per asyncio task, so one
HTTP request or one device message is tagged without passing ids around) over process-wide values set
with :func:`bind_log_context` (an agent's own device id). Log calls name ids, states and reasons; they
never carry message bodies, transcripts, answers, tokens or passwords.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import IO, Literal

from pythonjsonlogger.json import JsonFormatter

FIELDS = ("device_id", "request_id")
_context: ContextVar[dict[str, str]] = ContextVar("linecrew_log_context", default={})  # noqa: B039 (never mutated)
_process: dict[str, str] = {}


def bind_log_context(**values: str) -> None:
    """Process-wide context (e.g. the agent's device id), under any :func:`log_context`."""
    _process.update(values)


@contextmanager
def log_context(**values: str | None) -> Iterator[None]:
    token = _context.set({**_context.get(), **{k: v for k, v in values.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


def current(name: str) -> str | None:
    return _context.get().get(name) or _process.get(name)


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for name in FIELDS:
            if not hasattr(record, name):
                setattr(record, name, current(name))
        return True


class TextFormatter(logging.Formatter):
    """Human-readable lines; the ids appear only when there are some."""

    def format(self, record: logging.LogRecord) -> str:
        ids = " ".join(f"{n}={v}" for n in FIELDS if (v := getattr(record, n, None)))
        line = super().format(record)
        return line.replace(" :: ", f" [{ids}] " if ids else " ", 1)


def configure_logging(*, verbose: bool = False, fmt: Literal["json", "text"] = "json",
                      stream: IO[str] | None = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(ContextFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s %(device_id)s "
                                           "%(request_id)s", rename_fields={"levelname": "level", "name": "logger"},
                                           timestamp=False))
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s :: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("httpx", "httpcore", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
