"""Crash-safe file writes: temp file in the same folder, fsync, ``os.replace``, fsync the folder."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _complete_temp(path: Path, data: bytes, mode: int) -> str:
    """``data`` written and synced to a temporary file beside ``path`` (its name returned)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


def atomic_write(path: Path | str, data: bytes, *, mode: int = 0o644) -> None:
    path = Path(path)
    tmp = _complete_temp(path, data, mode)
    try:
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def create_exclusive(path: Path | str, data: bytes, *, mode: int = 0o644) -> bool:
    """Write ``data`` to ``path`` only if no file is there, atomically and complete; ``False`` when another
    process (or an earlier call) created it first, whose content then stands."""
    path = Path(path)
    tmp = _complete_temp(path, data, mode)
    try:
        os.link(tmp, path)  # fails if the name exists: the first writer wins, never half a file
    except FileExistsError:
        return False
    finally:
        os.unlink(tmp)
    fsync_dir(path.parent)
    return True


def atomic_write_text(path: Path | str, text: str, *, mode: int = 0o644) -> None:
    atomic_write(path, text.encode(), mode=mode)


def fsync_dir(folder: Path | str) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
