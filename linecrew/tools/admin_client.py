"""A small client of the server's admin API, for the CLI (``linecrew rollout ...``, ``fleet simulate``)."""

from __future__ import annotations

from typing import Any

import httpx

from linecrew.tools.errors import AdminApiError


class AdminClient:
    def __init__(self, url: str, token: str | None, *, timeout_s: float = 30.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout_s)

    def _call(self, method: str, path: str, **kw: Any) -> Any:
        try:
            r = self._http.request(method, path, **kw)
        except httpx.HTTPError as e:
            raise AdminApiError(f"cannot reach the server at {self.url}: {e}") from e
        if r.status_code >= 400:
            try:
                detail = r.json().get("detail", r.text)
            except ValueError:
                detail = r.text
            raise AdminApiError(f"{method} {path} refused ({r.status_code}): {detail}")
        return r.json()

    def create_rollout(self, spec: dict[str, Any], reason: str) -> dict[str, Any]:
        return self._call("POST", "/v1/rollouts", json={"spec": spec, "reason": reason})

    def act(self, rollout_id: str, action: str, reason: str) -> dict[str, Any]:
        return self._call("POST", f"/v1/rollouts/{rollout_id}/{action}", json={"reason": reason})

    def rollout(self, rollout_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/rollouts/{rollout_id}")

    def rollouts(self) -> list[dict[str, Any]]:
        return self._call("GET", "/v1/rollouts")

    def enroll_tokens(self, count: int, device_class: str | None, tags: list[str]) -> list[str]:
        body = {"count": count, "device_class": device_class, "tags": tags}
        return self._call("POST", "/v1/enroll-tokens", json=body)["tokens"]

    def decommission(self, device_id: str, reason: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", f"/v1/devices/{device_id}/decommission", json={"reason": reason})
        return result

    def close(self) -> None:
        self._http.close()
