from __future__ import annotations

import json

import pytest

from linecrew.shared.errors import (
    MalformedMessageError,
    OversizedMessageError,
    SchemaError,
    UnknownMessageTypeError,
    UnsupportedVersionError,
)
from linecrew.shared.protocol import MAX_MESSAGE_BYTES, Topics, acl_patterns, decode, encode, make_envelope


def _raw(**over: object) -> bytes:
    e = make_envelope("note", {"text": "hi"}, device_id="dev-1", stream="notes", seq=1).model_dump()
    e.update(over)
    return json.dumps(e).encode()


def test_roundtrip_keeps_every_field() -> None:
    env = make_envelope("note", {"text": "pole 7", "job_id": "J1"}, device_id="dev-1", stream="n", seq=3, ttl_s=60)
    msg = decode(encode(env))
    assert msg.envelope == env
    assert msg.payload.text == "pole 7"  # type: ignore[attr-defined]
    assert msg.envelope.expires == pytest.approx(env.created + 60)


@pytest.mark.parametrize(
    ("raw", "error", "reason"),
    [
        (b"{not json", MalformedMessageError, "malformed"),
        (b"\xff\xfe", MalformedMessageError, "malformed"),
        (b'"a string"', MalformedMessageError, "malformed"),
        (_raw(id=None), MalformedMessageError, "malformed"),
        (_raw(extra_field=1), MalformedMessageError, "malformed"),
        (_raw(type="self_destruct"), UnknownMessageTypeError, "unknown_type"),
        (_raw(v=2), UnsupportedVersionError, "unsupported_version"),
        (_raw(payload={"text": ""}), SchemaError, "schema"),
        (_raw(payload={"text": "x", "evil": 1}), SchemaError, "schema"),
        (_raw(seq=None), MalformedMessageError, "malformed"),
        (b"x" * (MAX_MESSAGE_BYTES + 1), OversizedMessageError, "oversized"),
    ],
)
def test_decode_rejects_with_reason(raw: bytes, error: type[Exception], reason: str) -> None:
    with pytest.raises(error) as info:
        decode(raw)
    assert info.value.reason == reason  # type: ignore[attr-defined]


def test_outgoing_payload_is_validated_too() -> None:
    with pytest.raises(ValueError):
        make_envelope("note", {"text": ""}, device_id="d", stream="s", seq=1)


def test_topics_carry_device_id_and_parse_back() -> None:
    assert Topics.d2s("dev-1") == "linecrew/v1/devices/dev-1/d2s"
    assert Topics.parse(Topics.s2d_ack("dev-1")) == ("dev-1", "s2d/ack")
    with pytest.raises(MalformedMessageError):
        Topics.parse("other/tree/x")
    assert all(s.startswith("$share/linecrew-server/linecrew/v1/") for s in Topics.server_subscriptions())


def test_acl_confines_devices_to_their_own_subtree() -> None:
    lines = acl_patterns()
    assert all(line.startswith("pattern ") and "/devices/%u/" in line for line in lines)
    assert "pattern write linecrew/v1/devices/%u/d2s" in lines
    assert not any(line.startswith("pattern write") and line.endswith("/s2d") for line in lines)
