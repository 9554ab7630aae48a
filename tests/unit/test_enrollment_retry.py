"""A device enrolling while many others do (429 from the server) asks again after the time the server names."""

from __future__ import annotations

import httpx
import pytest

from linecrew.agent.enroll import post_enrollment
from linecrew.agent.errors import EnrollmentRefusedError


def _client(codes: list[int]) -> tuple[httpx.Client, list[int]]:
    seen: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        code = codes[len(seen)]
        seen.append(code)
        if code == 429:
            return httpx.Response(429, headers={"retry-after": "0"}, json={"detail": "slow down"})
        if code == 200:
            return httpx.Response(200, json={"device_id": "truck-1"})
        return httpx.Response(code, json={"detail": "refused"})

    return httpx.Client(base_url="http://server", transport=httpx.MockTransport(handler)), seen


def test_a_busy_server_is_asked_again() -> None:
    http, seen = _client([429, 429, 200])
    assert post_enrollment(http, {})["device_id"] == "truck-1"
    assert seen == [429, 429, 200]


def test_it_gives_up_after_a_few_tries_with_a_clear_error() -> None:
    http, seen = _client([429] * 5)
    with pytest.raises(EnrollmentRefusedError, match="429"):
        post_enrollment(http, {}, attempts=5)
    assert len(seen) == 5
