from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from linecrew.shared.crypto import FieldCipher
from linecrew.shared.db import Database
from linecrew.shared.errors import OutboxFullError, RejectedError, StorageError
from linecrew.shared.protocol import Ack, Message, Rejection, decode
from linecrew.shared.sync import (
    Backoff,
    Inbox,
    Outbox,
    OutboxLimits,
    Outcome,
    RetrySchedule,
    dead_letter_migration,
    sync_migration,
)


def _db(tmp_path: Path, name: str = "a.db") -> Database:
    db = Database(tmp_path / name, synchronous="NORMAL")
    db.migrate([sync_migration(1), dead_letter_migration(2)])
    return db


def _outbox(tmp_path: Path, **limits: object) -> Outbox:
    return Outbox(_db(tmp_path), sender_id="dev-1", cipher=FieldCipher(b"k" * 32),
                  limits=OutboxLimits(**limits))  # type: ignore[arg-type]


def _events(ob: Outbox, n: int, stream: str = "s", priority: int = 0) -> list[str]:
    return [e.id for e in ob.put_many([("event", {"name": f"e{i}"}) for i in range(n)], peer="server",
                                      stream=stream, priority=priority)]


def test_outbox_assigns_gap_free_sequences_per_stream(tmp_path: Path) -> None:
    ob = _outbox(tmp_path)
    _events(ob, 3, "a")
    _events(ob, 2, "b")
    _events(ob, 1, "a")
    got = [(p.stream, p.seq) for p in ob.pending("server", limit=100)]
    assert got == [("a", 1), ("a", 2), ("a", 3), ("a", 4), ("b", 1), ("b", 2)]


def test_outbox_body_is_sealed_at_rest(tmp_path: Path) -> None:
    ob = _outbox(tmp_path)
    ob.put("note", {"text": "secret transformer code 1234"}, peer="server", stream="notes")
    raw = ob.db.conn.execute("SELECT body FROM outbox").fetchone()[0]
    assert b"1234" not in raw
    assert b"1234" in ob.pending("server", limit=1)[0].body


def test_higher_priority_streams_go_first(tmp_path: Path) -> None:
    ob = _outbox(tmp_path)
    _events(ob, 2, "telemetry", priority=0)
    _events(ob, 1, "alerts", priority=9)
    assert [p.stream for p in ob.pending("server", limit=10)] == ["alerts", "telemetry", "telemetry"]


def test_ack_deletes_and_rejection_dead_letters(tmp_path: Path) -> None:
    ob = _outbox(tmp_path)
    ids = _events(ob, 3)
    used = ob.used_bytes()
    assert ob.acknowledge("server", ids[:1], [Rejection(id=ids[1], reason="schema")]) == 2
    assert [p.id for p in ob.pending("server", limit=10)] == [ids[2]]
    assert [d["id"] for d in ob.dead_letters()] == [ids[1]]
    assert 0 < ob.used_bytes() < used


def test_full_outbox_rejects_and_keeps_what_it_had(tmp_path: Path) -> None:
    ob = _outbox(tmp_path, quota_bytes=2000, on_full="reject")
    _events(ob, 3)
    with pytest.raises(OutboxFullError):
        _events(ob, 50)
    assert ob.depth() == 3 and ob.last_seq("server", "s") == 3


def test_full_outbox_evicts_lower_priority_into_skip_tombstones(tmp_path: Path) -> None:
    ob = _outbox(tmp_path, quota_bytes=4500, on_full="evict")
    big = {"name": "reading", "data": {"samples": "x" * 600}}
    low = [ob.put("event", big, peer="server", stream="telemetry").id for _ in range(5)]
    assert 4000 < ob.used_bytes() < 4300  # three alerts (~200 bytes each) will not fit
    _events(ob, 3, "alerts", priority=9)
    pend = {p.id: decode(p.body) for p in ob.pending("server", limit=100)}
    skipped = [i for i in low if pend[i].type == "skip"]
    assert skipped, "some low-priority messages were evicted"
    assert {d["id"] for d in ob.dead_letters()} == set(skipped)
    assert ob.used_bytes() <= 4500
    # Sequences stay gap-free: a tombstone keeps its slot.
    seqs = sorted(m.envelope.seq or 0 for m in pend.values() if m.envelope.stream == "telemetry")
    assert seqs == list(range(1, 6))


def test_a_row_the_key_cannot_open_goes_as_a_tombstone_and_the_rest_still_flow(tmp_path: Path) -> None:
    """A row sealed with another key (two processes once raced to create it) or damaged on disk must not stall
    the outbox: the receiver gets a tombstone in its slot, the sealed body is kept in dead letters."""
    ob = _outbox(tmp_path)
    ids = _events(ob, 3, "telemetry")
    other = FieldCipher(b"z" * 32).encrypt(b'{"not": "readable here"}', ids[1].encode())
    ob.db.conn.execute("UPDATE outbox SET body=? WHERE id=?", (other, ids[1]))
    pend = [decode(p.body) for p in ob.pending("server", limit=100)]
    assert [m.type for m in pend] == ["event", "skip", "event"]
    assert [m.envelope.seq for m in pend] == [1, 2, 3]  # the stream stays gap-free
    dead = ob.dead_letters()
    assert [d["id"] for d in dead] == [ids[1]] and "unreadable" in str(dead[0]["reason"])
    kept = ob.db.conn.execute("SELECT body FROM dead_letters WHERE id=?", (ids[1],)).fetchone()[0]
    assert kept == other
    assert [decode(p.body).type for p in ob.pending("server", limit=100)] == ["event", "skip", "event"]


def _msgs(ob: Outbox) -> list[tuple[str, Message]]:
    return [("dev-1", decode(p.body)) for p in ob.pending("server", limit=1000)]


def test_inbox_applies_in_order_once_and_asks_for_gaps(tmp_path: Path) -> None:
    ob = _outbox(tmp_path)
    _events(ob, 5)
    msgs = _msgs(ob)
    inbox = Inbox(_db(tmp_path, "b.db"))
    seen: list[int] = []

    def apply(conn: object, peer: str, m: Message) -> None:
        seen.append(m.envelope.seq or 0)

    r1 = inbox.accept([msgs[3], msgs[0], msgs[1]], apply)  # out of order, with a gap at 3
    assert seen == [1, 2]
    assert r1.acks["dev-1"].resend[0].from_seq == 3
    assert r1.outcomes == {Outcome.APPLIED: 2, Outcome.GAP: 1}
    r2 = inbox.accept(list(reversed(msgs)), apply)  # everything again, reversed
    assert seen == [1, 2, 3, 4, 5]
    assert r2.outcomes == {Outcome.DUPLICATE: 2, Outcome.APPLIED: 3}
    assert len(r2.acks["dev-1"].ids) == 5


def test_inbox_state_survives_reopen(tmp_path: Path) -> None:
    ob = _outbox(tmp_path)
    _events(ob, 2)
    msgs = _msgs(ob)
    Inbox(_db(tmp_path, "b.db")).accept(msgs[:1], lambda *a: None)
    count: list[int] = []
    Inbox(_db(tmp_path, "b.db")).accept(msgs, lambda c, p, m: count.append(1))
    assert count == [1]


def test_expired_skipped_and_rejected_advance_the_stream_without_effect(tmp_path: Path) -> None:
    ob = _outbox(tmp_path)
    ob.put("event", {"name": "stale"}, peer="server", stream="s", ttl_s=0.001)
    ob.put("event", {"name": "refuse-me"}, peer="server", stream="s")
    ob.put("event", {"name": "ok"}, peer="server", stream="s")
    inbox = Inbox(_db(tmp_path, "b.db"))
    applied: list[str] = []

    def apply(conn: object, peer: str, m: Message) -> None:
        if m.payload.name == "refuse-me":  # type: ignore[attr-defined]
            raise RejectedError("not for this device")
        applied.append(m.payload.name)  # type: ignore[attr-defined]

    res = inbox.accept(_msgs(ob), apply, now=1e12)
    assert res.outcomes == {Outcome.EXPIRED: 1, Outcome.REJECTED: 1, Outcome.APPLIED: 1}
    assert applied == ["ok"]
    ack: Ack = res.acks["dev-1"]
    assert ack.rejected[0].reason == "not for this device" and len(ack.ids) == 2


def test_a_message_that_breaks_its_apply_step_is_rejected_alone(tmp_path: Path) -> None:
    ob = _outbox(tmp_path)
    _events(ob, 3)
    inbox = Inbox(_db(tmp_path, "b.db"))
    applied: list[int] = []

    def poison_at_2(conn: object, peer: str, m: Message) -> None:
        if m.envelope.seq == 2:
            raise KeyError("a value the code cannot take")
        applied.append(m.envelope.seq or 0)

    result = inbox.accept(_msgs(ob), poison_at_2)
    assert applied == [1, 3], "the rest of the batch is applied"
    [ack] = result.acks.values()
    assert len(ack.ids) == 2
    assert [r.reason for r in ack.rejected] == ["apply failed: KeyError: 'a value the code cannot take'"]
    assert result.outcomes[Outcome.REJECTED] == 1
    [dead] = inbox.dead_letters()
    assert dead["reason"].startswith("apply failed: KeyError") and '"seq":2' in str(dead["body"])


@pytest.mark.parametrize("failure", [sqlite3.OperationalError("disk I/O error"), StorageError("disk full")])
def test_a_failing_store_rolls_back_the_whole_batch(tmp_path: Path, failure: Exception) -> None:
    ob = _outbox(tmp_path)
    _events(ob, 2)
    inbox = Inbox(_db(tmp_path, "b.db"))

    def boom(conn: object, peer: str, m: Message) -> None:
        if m.envelope.seq == 2:
            raise failure

    with pytest.raises(StorageError):  # a driver error is converted where it leaves the transaction
        inbox.accept(_msgs(ob), boom)
    assert inbox.applied_count() == 0


@pytest.mark.parametrize(("attempt", "rnd", "expected"), [(0, 0.0, 0.5), (1, 1.0, 1.0), (3, 1.0, 4.0),
                                                         (10, 1.0, 30.0), (10, 0.0, 0.5), (2, 0.5, 1.25)])
def test_backoff_is_capped_and_jittered(attempt: int, rnd: float, expected: float) -> None:
    assert Backoff(0.5, 30.0).delay(attempt, lambda: rnd) == pytest.approx(expected)


def test_retry_schedule_resends_after_timeout_and_on_request(tmp_path: Path) -> None:
    ob = _outbox(tmp_path)
    _events(ob, 3)
    pend = ob.pending("server", limit=10)
    s = RetrySchedule(Backoff(1.0, 1.0), ack_timeout_s=5.0)
    for p in pend:
        s.sent(p, now=0.0)
    assert s.due(4.9) == []
    assert len(s.due(5.0)) == 3
    s.done([pend[0].id])
    s.forget_stream_from("s", 3)
    assert s.due(0.1) == [pend[2].id]


def test_pruned_applied_ids_still_reject_duplicates_by_sequence(tmp_path: Path) -> None:
    ob = _outbox(tmp_path)
    _events(ob, 2)
    msgs = _msgs(ob)
    inbox = Inbox(_db(tmp_path, "b.db"))
    inbox.accept(msgs, lambda *a: None, now=1000.0)
    assert inbox.prune(older_than=2000.0) == 2 and inbox.applied_count() == 0
    effects: list[int] = []
    res = inbox.accept(msgs, lambda c, p, m: effects.append(1), now=3000.0)
    assert effects == [] and res.outcomes == {Outcome.DUPLICATE: 2}
