"""The Linecrew wire protocol: topic tree, message envelope and every message type.

Rules (see docs/protocol.md for the operator's view):

* Topics live under ``linecrew/v1/``; every device topic carries the device id, and the broker ACL
  lets a device touch only its own subtree.
* Every message is one JSON envelope: ``id`` (UUIDv7), ``type``, ``v`` (schema version of that type),
  ``device_id``, ``created`` (Unix seconds), optional ``stream``/``seq`` (durable, ordered messages),
  optional ``expires`` (Unix seconds after which it must not act) and a typed ``payload``.
* Decoding checks size first, then JSON, envelope, type, version and payload, and raises one
  :class:`~shared.errors.ProtocolError` subclass naming the reason. It never raises anything else.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass
from enum import StrEnum
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Literal

import uuid6
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from linecrew.shared.e2e import SEALED_KEY, Opener
from linecrew.shared.errors import (
    CryptoError,
    MalformedMessageError,
    OversizedMessageError,
    SchemaError,
    UnknownMessageTypeError,
    UnsupportedVersionError,
)

PROTOCOL_VERSION = 1
TOPIC_ROOT = f"linecrew/v{PROTOCOL_VERSION}"
MAX_MESSAGE_BYTES = 64 * 1024
MAX_JSON_DEPTH = 16  # envelope → payload → a few levels; deeper is an attack on the parser, refused before parsing
MAX_NUMBER = 1e15  # any number a device sends is finite and at most this in magnitude
_JSON_STRING = re.compile(rb'"(?:\\.|[^"\\])*"')
_BRACKETS = re.compile(rb"[\[\]{}]")
SERVER_SHARE_GROUP = "linecrew-server"
DEVICE_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
# Every identity the server side uses on the broker (usernames, client ids of servers and workers) starts with
# INTERNAL_PREFIX, a character no device id may contain, so no device can enroll as one, take its client id or
# read with its rights. Device ids beginning with a reserved word are refused too (defence in depth).
INTERNAL_PREFIX = "_"
RESERVED_DEVICE_PREFIXES = ("linecrew", "server", "worker", "admin", "system")


def internal_id(name: str) -> str:
    """The broker identity of a server-side process (never a valid device id)."""
    return name if name.startswith(INTERNAL_PREFIX) else INTERNAL_PREFIX + name


def _package_version() -> str:
    try:
        return version("linecrew")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


LINECREW_VERSION = _package_version()


# -------------------------------------------------------------------------------------------- streams
class Stream(StrEnum):
    """Outbox streams: each ``(peer, stream)`` has its own gap-free sequence; the higher priority is sent first
    when a link comes back after an outage (an escalation before a day of telemetry)."""

    ESCALATIONS = "escalations"
    ANSWERS = "answers"
    ASSIGNMENTS = "assignments"
    JOBS = "jobs"
    NOTES = "notes"
    RESULTS = "results"
    UPDATES = "updates"
    TASKS = "tasks"
    COMMANDS = "commands"
    TELEMETRY = "telemetry"

    @property
    def priority(self) -> int:
        return _STREAM_PRIORITY[self]


_STREAM_PRIORITY = {
    Stream.ESCALATIONS: 9, Stream.ANSWERS: 9, Stream.ASSIGNMENTS: 7, Stream.JOBS: 6, Stream.NOTES: 5,
    Stream.RESULTS: 5, Stream.UPDATES: 4, Stream.TASKS: 3, Stream.COMMANDS: 0, Stream.TELEMETRY: 0,
}


class UpdateState(StrEnum):
    """What a device reports about an update (``update_report.state``); the device's A/B state machine is
    ``agent.update_machine``, the server maps these onto rollout device states."""

    IDLE = "idle"
    DOWNLOADING = "downloading"
    INSTALLING = "installing"
    ACTIVATING = "activating"
    HEALTH = "health"
    COMMITTED = "committed"
    ROLLING_BACK = "rolling_back"
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"


class TaskKind(StrEnum):
    """Deferred tasks a device may hand to the server's workers."""

    SUMMARIZE_JOB_LOG = "summarize_job_log"


# --------------------------------------------------------------------------------------------- topics
class Topics:
    """The versioned topic tree. Direction is in the name: ``d2s`` device→server, ``s2d`` back."""

    @staticmethod
    def device_root(device_id: str) -> str:
        return f"{TOPIC_ROOT}/devices/{device_id}"

    @classmethod
    def d2s(cls, device_id: str) -> str:
        """Durable messages a device sends; the server acknowledges them on :meth:`d2s_ack`."""
        return f"{cls.device_root(device_id)}/d2s"

    @classmethod
    def d2s_ack(cls, device_id: str) -> str:
        return f"{cls.device_root(device_id)}/d2s/ack"

    @classmethod
    def s2d(cls, device_id: str) -> str:
        """Durable messages the server sends; the device acknowledges them on :meth:`s2d_ack`."""
        return f"{cls.device_root(device_id)}/s2d"

    @classmethod
    def s2d_ack(cls, device_id: str) -> str:
        return f"{cls.device_root(device_id)}/s2d/ack"

    @classmethod
    def presence(cls, device_id: str) -> str:
        """Retained ``presence`` message; the broker publishes the offline one as the will."""
        return f"{cls.device_root(device_id)}/presence"

    @classmethod
    def xfer_request(cls, device_id: str) -> str:
        """Device asks for chunks of an offered update (``chunk_request``)."""
        return f"{cls.device_root(device_id)}/xfer/req"

    @classmethod
    def xfer_data(cls, device_id: str) -> str:
        """Raw chunk bytes; offer id, index and sha256 ride in MQTT 5 user properties."""
        return f"{cls.device_root(device_id)}/xfer/data"

    @staticmethod
    def task_run(kind: str) -> str:
        """Deferred work for server workers (shared subscription ``$share/linecrew-workers/...``)."""
        return f"{TOPIC_ROOT}/tasks/run/{kind}"

    @staticmethod
    def task_results() -> str:
        return f"{TOPIC_ROOT}/tasks/results"

    @staticmethod
    def worker_subscriptions(share_group: str = "linecrew-workers") -> list[str]:
        return [f"$share/{share_group}/{TOPIC_ROOT}/tasks/run/+"]

    @staticmethod
    def server_subscriptions(share_group: str | None = SERVER_SHARE_GROUP) -> list[str]:
        """What server processes subscribe to; a shared group spreads devices over processes."""
        filters = [
            f"{TOPIC_ROOT}/devices/+/d2s",
            f"{TOPIC_ROOT}/devices/+/s2d/ack",
            f"{TOPIC_ROOT}/devices/+/presence",
            f"{TOPIC_ROOT}/tasks/results",
            f"{TOPIC_ROOT}/devices/+/xfer/req",
        ]
        if share_group:
            return [f"$share/{share_group}/{f}" for f in filters]
        return filters

    @staticmethod
    def parse(topic: str) -> tuple[str, str]:
        """Split a device topic into ``(device_id, leaf)`` such as ``("dev-1", "d2s/ack")``."""
        prefix = f"{TOPIC_ROOT}/devices/"
        if not topic.startswith(prefix):
            raise MalformedMessageError(f"topic outside the device tree: {topic!r}", reason="bad_topic")
        device_id, _, leaf = topic[len(prefix) :].partition("/")
        if not device_id or not leaf:
            raise MalformedMessageError(f"topic without device id or leaf: {topic!r}", reason="bad_topic")
        return device_id, leaf


DEVICE_TOPICS: tuple[tuple[str, str], ...] = (
    ("d2s", "write"), ("d2s/ack", "read"), ("s2d", "read"), ("s2d/ack", "write"), ("presence", "readwrite"),
    ("xfer/req", "write"), ("xfer/data", "read"),
)


def device_acl(device_id: str) -> list[tuple[str, str]]:
    """(topic, read|write|readwrite) a device may use: its own subtree and nothing else, no wildcards."""
    return [(f"{Topics.device_root(device_id)}/{leaf}", access) for leaf, access in DEVICE_TOPICS]


def acl_patterns() -> list[str]:
    """The same rules as Mosquitto ``acl_file`` ``pattern`` lines (``%u`` = username = device id), for brokers
    operated elsewhere; the managed broker enforces them per device with the dynamic-security plugin."""
    return [f"pattern {access} {TOPIC_ROOT}/devices/%u/{leaf}" for leaf, access in DEVICE_TOPICS]


# ------------------------------------------------------------------------------------------- payloads
class Payload(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RequestStats(Payload):
    """One model's assistant requests on a device since its store began: cumulative counters and
    histogram bucket counts (bounds in :mod:`shared.metrics`), so a fleet sums them exactly."""

    count: int = Field(0, ge=0)
    errors: int = Field(0, ge=0)
    escalated: int = Field(0, ge=0)
    deferred: int = Field(0, ge=0)
    resolved: int = Field(0, ge=0)
    tokens: int = Field(0, ge=0)
    generation_s: float = Field(0.0, ge=0)
    latency_sum_s: float = Field(0.0, ge=0)
    latency_buckets: list[int] = Field(default_factory=list, max_length=32)
    token_buckets: list[int] = Field(default_factory=list, max_length=32)


class Telemetry(Payload):
    """Device health numbers, e.g. outbox depth, free disk, CPU temperature; per-model request stats."""

    metrics: dict[str, float] = Field(max_length=64)
    requests: dict[str, RequestStats] = Field(default_factory=dict, max_length=16)


class Note(Payload):
    """A technician's note on a job (sensitive: encrypted at rest on both sides)."""

    text: str = Field(min_length=1, max_length=8000)
    job_id: str | None = Field(default=None, max_length=128)


class Event(Payload):
    """A named device event with small structured data (e.g. ``agent_started``)."""

    name: str = Field(min_length=1, max_length=128)
    data: dict[str, Any] = Field(default_factory=dict)


class Command(Payload):
    """A server→device instruction; stale ones carry ``expires`` and are dropped unapplied."""

    name: str = Field(min_length=1, max_length=128)
    args: dict[str, Any] = Field(default_factory=dict)


class Rejection(Payload):
    id: str
    reason: str = Field(max_length=512)


class Resend(Payload):
    stream: str
    from_seq: int = Field(ge=1)


class Ack(Payload):
    """Application-level acknowledgement, sent only after the receiver committed.

    ``ids``: applied now or earlier (duplicates are acknowledged again). ``rejected``: will never be
    applied, with the reason; the sender moves them to its dead-letter table. ``resend``: a gap was
    seen in a stream; the sender should resend that stream from ``from_seq``.
    """

    ids: list[str] = Field(default_factory=list, max_length=5000)
    rejected: list[Rejection] = Field(default_factory=list, max_length=5000)
    resend: list[Resend] = Field(default_factory=list, max_length=100)


class Presence(Payload):
    online: bool
    agent_version: str | None = None


class JobStatus(Payload):
    """A technician's job status; ``blocked`` carries the reason. Feeds the planner's next plan."""

    job_id: str | None = Field(default=None, max_length=128)
    status: Literal["on_site", "done", "blocked"]
    reason: str | None = Field(default=None, max_length=1000)


class PartItem(Payload):
    part: str = Field(min_length=1, max_length=200)
    quantity: int = Field(ge=1, le=10_000)


class PartsRequest(Payload):
    job_id: str | None = Field(default=None, max_length=128)
    items: list[PartItem] = Field(min_length=1, max_length=50)


class Escalation(Payload):
    """A question for a human expert (always sent on a safety emergency). Sensitive."""

    escalation_id: str = Field(min_length=8, max_length=64)
    question: str = Field(min_length=1, max_length=4000)
    reason: str = Field(max_length=500)
    intent: str = Field(max_length=64)
    job_id: str | None = Field(default=None, max_length=128)
    context: list[str] = Field(default_factory=list, max_length=20)


class EscalationAnswer(Payload):
    escalation_id: str = Field(min_length=8, max_length=64)
    answer: str = Field(min_length=1, max_length=8000)
    expert: str = Field(max_length=128)


class DeferredTask(Payload):
    """Heavy work the device hands to the server (e.g. summarising a whole job log)."""

    task_id: str = Field(min_length=8, max_length=64)
    kind: str = Field(min_length=1, max_length=64)
    job_id: str | None = Field(default=None, max_length=128)
    args: dict[str, Any] = Field(default_factory=dict)


class TaskResult(Payload):
    task_id: str = Field(min_length=8, max_length=64)
    kind: str = Field(max_length=64)
    ok: bool
    result: str = Field(max_length=16_000)


class AssignedJob(Payload):
    job_id: str = Field(max_length=128)
    title: str = Field(default="", max_length=500)
    location: tuple[float, float]
    order: int = Field(ge=1)
    start_min: int  # planned start, minutes since midnight
    end_min: int
    window: tuple[int, int]
    priority: int = Field(ge=1, le=5)
    role: Literal["lead", "crew", "helper"] = "lead"  # a crew job: who leads, who is qualified crew, who helps
    crew_with: list[str] = Field(default_factory=list, max_length=20)  # the other technicians on the job


class Assignment(Payload):
    """A technician's route from the planner; the first job becomes the assistant's job context."""

    plan_version: int = Field(ge=1)
    technician_id: str = Field(max_length=128)
    jobs: list[AssignedJob] = Field(max_length=200)


class UpdateOffer(Payload):
    """A signed release and the payload chosen for this device (delta or full, whichever is smaller)."""

    offer_id: str = Field(min_length=8, max_length=64)
    manifest: dict[str, Any]
    kind: Literal["full", "delta"]
    length: int = Field(ge=0)
    sha256: str = Field(min_length=64, max_length=64)
    chunk_size: int = Field(ge=1024, le=128 * 1024)
    chunks: int = Field(ge=0)


class UpdateReport(Payload):
    """Progress and outcome of an update, and what the device runs."""

    offer_id: str | None = None
    state: UpdateState
    version: int | None = None
    sha256: str | None = None
    progress: float = Field(default=0.0, ge=0, le=1)
    error: str | None = Field(default=None, max_length=1000)
    slots: dict[str, int | None] = Field(default_factory=dict, max_length=4, description="version per A/B slot")
    health: str | None = Field(default=None, max_length=32, description="last health check: ok / failed")


class ChunkRequest(Payload):
    offer_id: str = Field(min_length=8, max_length=64)
    indexes: list[int] = Field(min_length=1, max_length=64)


class TaskRun(Payload):
    """Server → worker: one deferred task with the context the worker needs (workers hold no state)."""

    task_id: str = Field(min_length=8, max_length=64)
    kind: str = Field(max_length=64)
    job_id: str | None = None
    args: dict[str, Any] = Field(default_factory=dict)
    context: dict[str, Any] = Field(default_factory=dict)


class TaskDone(Payload):
    task_id: str = Field(min_length=8, max_length=64)
    ok: bool
    result: str = Field(max_length=16_000)
    worker: str = Field(max_length=128)


@dataclass(frozen=True)
class MessageType:
    name: str
    version: int
    payload: type[Payload]
    durable: bool  # travels through an outbox and is acknowledged


_REGISTRY: dict[str, MessageType] = {}


def register(name: str, payload: type[Payload], *, version: int = 1, durable: bool = True) -> MessageType:
    """Add a message type; later issues register theirs here so decoding stays in one place."""
    if name in _REGISTRY:
        raise ValueError(f"message type {name!r} registered twice")
    mt = MessageType(name, version, payload, durable)
    _REGISTRY[name] = mt
    return mt


def message_type(name: str) -> MessageType:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownMessageTypeError(f"unknown message type {name!r}") from None


register("telemetry", Telemetry)
register("note", Note)
register("event", Event)
register("command", Command)
register("job_status", JobStatus)
register("parts_request", PartsRequest)
register("escalation", Escalation)
register("escalation_answer", EscalationAnswer)
register("deferred_task", DeferredTask)
register("task_result", TaskResult)
register("assignment", Assignment)
register("update_offer", UpdateOffer)
register("update_report", UpdateReport)
register("chunk_request", ChunkRequest, durable=False)
register("task_run", TaskRun, durable=False)
register("task_done", TaskDone, durable=False)
register("ack", Ack, durable=False)
register("presence", Presence, durable=False)


# ------------------------------------------------------------------------------------------- envelope
class Envelope(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=8, max_length=64)
    type: str = Field(min_length=1, max_length=64)
    v: int = Field(ge=1)
    device_id: str = Field(min_length=1, max_length=64)
    created: float
    stream: str | None = Field(default=None, max_length=64)
    seq: int | None = Field(default=None, ge=1)
    expires: float | None = None
    payload: dict[str, Any]

    def expired(self, now: float) -> bool:
        return self.expires is not None and now >= self.expires


@dataclass(frozen=True)
class Message:
    """A decoded, fully validated message."""

    envelope: Envelope
    payload: Payload

    @property
    def id(self) -> str:
        return self.envelope.id

    @property
    def type(self) -> str:
        return self.envelope.type


def new_id() -> str:
    """A UUIDv7: unique, and sortable by creation time (useful in logs and indexes)."""
    return str(uuid6.uuid7())


def make_envelope(
    type_: str,
    payload: Payload | dict[str, Any],
    *,
    device_id: str,
    stream: str | None = None,
    seq: int | None = None,
    ttl_s: float | None = None,
    now: float | None = None,
    id_: str | None = None,
) -> Envelope:
    """Build an envelope for a registered type, validating the payload on the way out too."""
    mt = message_type(type_)
    data = payload.model_dump() if isinstance(payload, Payload) else payload
    mt.payload.model_validate(data)
    created = time.time() if now is None else now
    return Envelope(
        id=id_ or new_id(),
        type=type_,
        v=mt.version,
        device_id=device_id,
        created=created,
        stream=stream,
        seq=seq,
        expires=None if ttl_s is None else created + ttl_s,
        payload=data,
    )


def encode(envelope: Envelope) -> bytes:
    return envelope.model_dump_json(exclude_none=True).encode()


def decode(raw: bytes, *, max_bytes: int = MAX_MESSAGE_BYTES, opener: Opener | None = None) -> Message:
    """Validate raw bytes into a :class:`Message` or raise a ``ProtocolError`` with the reason."""
    if len(raw) > max_bytes:
        raise OversizedMessageError(f"message of {len(raw)} bytes exceeds the limit of {max_bytes}")
    _check_depth(raw)
    try:
        obj = json.loads(raw, parse_constant=_refuse_constant, parse_float=_bounded_float, parse_int=_bounded_int)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise MalformedMessageError(f"not JSON: {e}") from e
    if not isinstance(obj, dict):
        raise MalformedMessageError("envelope is not a JSON object")
    try:
        env = Envelope.model_validate(obj)
    except ValidationError as e:
        raise MalformedMessageError(f"bad envelope: {_first_error(e)}") from e
    mt = message_type(env.type)
    if env.v != mt.version:
        raise UnsupportedVersionError(f"{env.type} v{env.v} not supported (expected v{mt.version})")
    if mt.durable and (env.stream is None or env.seq is None):
        raise MalformedMessageError(f"durable type {env.type} needs stream and seq")
    if SEALED_KEY in env.payload:
        env = env.model_copy(update={"payload": _open(env, opener)})
    try:
        payload = mt.payload.model_validate(env.payload)
    except ValidationError as e:
        raise SchemaError(f"bad {env.type} payload: {_first_error(e)}") from e
    return Message(env, payload)


def _open(env: Envelope, opener: Opener | None) -> dict[str, Any]:
    if opener is None:
        raise SchemaError(f"{env.type} has sealed fields and this side holds no key to open them", reason="sealed")
    try:
        return opener(env.payload, env.id, env.type)
    except CryptoError as e:
        raise MalformedMessageError(f"sealed fields of {env.type} could not be opened: {e}", reason="unsealable") from e


def _check_depth(raw: bytes) -> None:
    """Refuse nesting deeper than ``MAX_JSON_DEPTH`` before the parser recurses into it (strings skipped)."""
    depth = 0
    for b in _BRACKETS.findall(_JSON_STRING.sub(b"", raw)):
        depth += 1 if b in (b"[", b"{") else -1
        if depth > MAX_JSON_DEPTH:
            raise MalformedMessageError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels", reason="too_deep")


def _refuse_constant(name: str) -> float:
    raise MalformedMessageError(f"non-finite number {name}", reason="non_finite")


def _bounded_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or abs(value) > MAX_NUMBER:
        raise MalformedMessageError(f"number {text[:32]} out of range (|x| <= {MAX_NUMBER:g})", reason="out_of_range")
    return value


def _bounded_int(text: str) -> int:
    value = int(text) if len(text) <= 17 else None  # never convert a thousand-digit number
    if value is None or abs(value) > MAX_NUMBER:
        raise MalformedMessageError(f"number {text[:32]} out of range (|x| <= {MAX_NUMBER:g})", reason="out_of_range")
    return value


def _first_error(e: ValidationError) -> str:
    err = e.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "(root)"
    return f"{loc}: {err['msg']}"


def is_valid_device_id(device_id: str) -> bool:
    """2-63 of a-z, 0-9 and '-', not starting with a reserved word: never a server-side identity."""
    return bool(DEVICE_ID_RE.match(device_id)) and not device_id.startswith(RESERVED_DEVICE_PREFIXES)

