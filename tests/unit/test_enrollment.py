from __future__ import annotations

import time
from pathlib import Path

import pytest

from linecrew.server.errors import EnrollmentError
from linecrew.server.store import ServerStore


def _enroll(store: ServerStore, token: str, device_id: str = "dev-1", cls: str = "x86-dev") -> None:
    store.registry.enroll(token=token, device_id=device_id, device_class=cls, public_key="k" * 44)


def test_token_is_single_use(tmp_path: Path) -> None:
    store = ServerStore(tmp_path)
    tok = store.registry.create_enroll_token(ttl_s=60)
    _enroll(store, tok)
    with pytest.raises(EnrollmentError, match="already used"):
        _enroll(store, tok, "dev-2")


def test_expired_unknown_and_wrong_class_tokens_are_refused(tmp_path: Path) -> None:
    store = ServerStore(tmp_path)
    old = store.registry.create_enroll_token(ttl_s=0.01)
    time.sleep(0.05)
    with pytest.raises(EnrollmentError, match="expired"):
        _enroll(store, old)
    with pytest.raises(EnrollmentError, match="unknown"):
        _enroll(store, "made-up-token")
    jet = store.registry.create_enroll_token(ttl_s=60, device_class="jetson-orin-nano")
    with pytest.raises(EnrollmentError, match="device class"):
        _enroll(store, jet)
    assert store.registry.all() == []


def test_bad_or_taken_device_ids_are_refused(tmp_path: Path) -> None:
    store = ServerStore(tmp_path)
    _enroll(store, store.registry.create_enroll_token(ttl_s=60), "dev-1")
    with pytest.raises(EnrollmentError, match="already enrolled"):
        _enroll(store, store.registry.create_enroll_token(ttl_s=60), "dev-1")
    for bad in ("+", "dev/1", "#", "A", ""):
        with pytest.raises(EnrollmentError, match="invalid device id"):
            _enroll(store, store.registry.create_enroll_token(ttl_s=60), bad)


def test_tokens_are_stored_hashed(tmp_path: Path) -> None:
    store = ServerStore(tmp_path)
    tok = store.registry.create_enroll_token(ttl_s=60)
    assert tok not in str(store.db.query("SELECT * FROM enroll_tokens"))
