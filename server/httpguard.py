"""Guards in front of the HTTP API: a cap on every request body, and a rate limit on unauthenticated calls.

Both are ASGI middleware around the FastAPI app, so a 20 MB body is refused with 413 before anything reads it,
and one client hammering ``/v1/enroll`` gets 429 while everyone else is served. The limiter is a pure token
bucket per client address (clock passed in), bounded in the number of addresses it remembers.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True)
class HttpLimits:
    max_body_bytes: int = 256 * 1024  # the largest legitimate body (a release spec, a job) is a few KB
    unauthenticated_per_s: float = 5.0  # per client address: enrollment, health, metrics
    unauthenticated_burst: float = 20.0
    remembered_clients: int = 10_000


class RateLimiter:
    """Token buckets per key; ``allow`` says whether one more call fits now (pure: ``now`` is passed in)."""

    def __init__(self, rate: float, burst: float, *, max_keys: int = 10_000) -> None:
        self.rate, self.burst, self.max_keys = rate, burst, max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)

    def allow(self, key: str, now: float) -> bool:
        tokens, at = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        allowed = tokens >= 1.0
        self._buckets[key] = (tokens - 1.0 if allowed else tokens, now)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)  # forget the longest-quiet client
        return allowed


async def _reply(send: Send, status: int, text: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps({"detail": text}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """413 for a declared or streamed body over ``max_bytes``; nothing past the limit is buffered."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await _reply(send, 413, f"request body over {self.max_bytes} bytes")
            return
        if declared is not None:
            await self.app(scope, receive, send)  # within the limit; the server enforces the declared length
            return
        # no declared length (chunked): read up to the limit here, then hand the app what was read
        parts: list[bytes] = []
        size = 0
        while True:
            msg = await receive()
            if msg["type"] != "http.request":
                return  # the client went away
            size += len(msg.get("body", b""))
            if size > self.max_bytes:
                await _reply(send, 413, f"request body over {self.max_bytes} bytes")
                return
            parts.append(msg.get("body", b""))
            if not msg.get("more_body", False):
                break
        body = b"".join(parts)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


class UnauthenticatedRateLimit:
    """429 when one client address makes unauthenticated calls faster than the limit; token holders pass."""

    def __init__(self, app: ASGIApp, limiter: RateLimiter, clock: Callable[[], float] = time.monotonic) -> None:
        self.app, self.limiter, self.clock = app, limiter, clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not _has_bearer(scope) and not str(scope.get("path", "")).startswith(
                "/dashboard"):
            client = scope.get("client") or ("?", 0)
            if not self.limiter.allow(str(client[0]), self.clock()):
                await _reply(send, 429, "too many unauthenticated requests; slow down",
                             [(b"retry-after", b"1")])
                return
        await self.app(scope, receive, send)


def _has_bearer(scope: Scope) -> bool:
    auth = dict(scope.get("headers") or []).get(b"authorization", b"")
    return auth.lower().startswith(b"bearer ") and len(auth) > 12


def guard(app: ASGIApp, limits: HttpLimits) -> ASGIApp:
    """The app behind both guards (the body cap first: a flood of huge bodies is refused unread)."""
    limiter = RateLimiter(limits.unauthenticated_per_s, limits.unauthenticated_burst,
                          max_keys=limits.remembered_clients)
    return BodyLimit(UnauthenticatedRateLimit(app, limiter), limits.max_body_bytes)
