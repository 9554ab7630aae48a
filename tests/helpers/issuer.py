"""A credential issuer for an API under test without a broker (enrollment is not what is measured)."""

from __future__ import annotations


class NoBrokerIssuer:
    ca_pem = ""

    def add_device(self, device_id: str) -> str:
        return "unused"

    def remove_device(self, device_id: str) -> None:
        return None

    def device_url(self, host: str | None = None) -> str:
        return "mqtts://localhost:8883"
