"""Real headless Chromium (Debian's) through Playwright, for every page's tests."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def have_chromium() -> bool:
    return Path(CHROMIUM).exists()


def chromium(shots: Path) -> Iterator[Any]:
    """A browser for a module's tests; screenshots go to ``shots``."""
    from playwright.sync_api import sync_playwright

    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()
