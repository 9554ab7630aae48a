"""Background loops that outlive a failing iteration.

Every long-running loop (sync pump, receiver, update transfer, telemetry, rollout tick, broker supervisor)
runs each iteration through an ``IterationGuard``: an exception is logged once with the loop's name and
context, the loop pauses briefly (so a persistent fault does not spin) and goes on. The same error repeated is
counted, not logged again, until it changes or the loop recovers, so logs stay readable during an outage.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class IterationGuard:
    name: str
    logger: logging.Logger
    pause_s: float = 0.5
    stop: threading.Event = field(default_factory=threading.Event)
    failures: int = 0
    _last: str | None = None

    def run(self, fn: Callable[[], object], *, context: str = "") -> bool:
        """Run one iteration; ``False`` when it failed (already logged and paused for)."""
        try:
            fn()
        except Exception as e:
            self.failures += 1
            key = f"{type(e).__name__}: {e}"
            if key != self._last:
                where = f" ({context})" if context else ""
                self.logger.error("%s iteration failed%s; the loop goes on", self.name, where, exc_info=True)
                self._last = key
            self.stop.wait(self.pause_s)
            return False
        if self._last is not None:
            self.logger.info("%s recovered after %d failed iteration(s)", self.name, self.failures)
            self._last = None
        return True
