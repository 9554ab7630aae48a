"""The ``linecrew`` command: thin click commands over the agent, server and shared libraries.

Each command parses its arguments, makes one library call and turns a ``LinecrewError`` into a clear
one-line message with exit status 1 (no traceback for expected failures).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import click

from linecrew.clitools import _friendly, _logging, _wait_for_signal
from linecrew.fleet_cli import fleet, rollout


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="debug logging")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", envvar="LINECREW_LOG_FORMAT",
              show_default=True, help="json: one object per line with device_id and request_id (for daemons)")
@click.version_option(package_name="linecrew")
def main(verbose: bool, log_format: str) -> None:
    """Linecrew: offline-first runtime for field crews."""
    _logging(verbose, log_format)


# ============================================================================================ agent
@main.group()
def agent() -> None:
    """The device agent."""


config_option = click.option("--config", "config_path", type=click.Path(path_type=Path), default=None,
                             help="agent.toml / server.toml")
device_dir_option = click.option("--dir", "data_dir", type=click.Path(path_type=Path), help="device data folder")
server_dir_option = click.option("--dir", "data_dir", type=click.Path(path_type=Path), help="server data folder")


def _agent_config(config_path: Path | None, **overrides: Any) -> Any:
    from agent.config import AgentConfig

    return AgentConfig.load(config_path, **overrides)


@agent.command("enroll")
@config_option
@device_dir_option
@click.option("--server", "server_url", help="server HTTP URL, e.g. http://10.0.0.5:8700")
@click.option("--token", required=True, help="one-time enrollment token from 'linecrew server enroll-token'")
@click.option("--device-id", required=True, help="this device's id (a-z, 0-9, '-')")
@click.option("--device-class", default=None, help="hardware class, e.g. jetson-orin-nano")
@_friendly
def agent_enroll(config_path: Path | None, data_dir: Path | None, server_url: str | None, token: str,
                 device_id: str, device_class: str | None) -> None:
    """Create this device's identity and receive its broker credentials."""
    from agent.enroll import enroll

    cfg = _agent_config(config_path, data_dir=data_dir, server_url=server_url, device_class=device_class)
    creds = enroll(folder=cfg.data_dir, server_url=cfg.server_url, token=token, device_id=device_id,
                   device_class=cfg.device_class)
    click.echo(f"enrolled {creds.device_id} ({cfg.device_class}); broker {creds.broker_url}")


@agent.command("run")
@config_option
@device_dir_option
@_friendly
def agent_run(config_path: Path | None, data_dir: Path | None) -> None:
    """Run the agent daemon: keep the link to the server and drain the outbox."""
    from agent.daemon import run_agent

    cfg = _agent_config(config_path, data_dir=data_dir)
    run_agent(cfg, _wait_for_signal)


@agent.command("note")
@config_option
@device_dir_option
@click.option("--job", "job_id", default=None, help="job the note belongs to")
@click.argument("text")
@_friendly
def agent_note(config_path: Path | None, data_dir: Path | None, job_id: str | None, text: str) -> None:
    """Store a note (encrypted at rest) and queue it for the server."""
    from agent.daemon import open_configured

    store, _ = open_configured(_agent_config(config_path, data_dir=data_dir))
    note_id = store.add_note(text, job_id=job_id)
    click.echo(f"note {note_id} stored; {store.outbox.depth()} message(s) waiting in the outbox")


@agent.command("status")
@config_option
@device_dir_option
@click.option("--json", "as_json", is_flag=True)
@_friendly
def agent_status(config_path: Path | None, data_dir: Path | None, as_json: bool) -> None:
    """Show enrollment, outbox depth and dead letters."""
    from agent.daemon import open_configured

    store, address = open_configured(_agent_config(config_path, data_dir=data_dir))
    info = {
        "device_id": store.device_id,
        "broker": address.url,
        "outbox_depth": store.outbox.depth(),
        "outbox_bytes": store.outbox.used_bytes(),
        "dead_letters": len(store.outbox.dead_letters()),
        "commands_applied": len(store.commands()),
        "schema_version": store.db.version(),
    }
    click.echo(json.dumps(info) if as_json else "\n".join(f"{k}: {v}" for k, v in info.items()))


@agent.command("listen")
@config_option
@device_dir_option
@click.option("--device", "input_device", default=None, help="input device index or name (default: system's)")
@click.option("--json", "as_json", is_flag=True, help="one JSON line per partial/final result")
@_friendly
def agent_listen(config_path: Path | None, data_dir: Path | None, input_device: str | None, as_json: bool) -> None:
    """Listen on the microphone; finals go to the context cache. Ctrl-C stops."""
    from agent.audio import mic_chunks

    cfg = _agent_config(config_path, data_dir=data_dir)
    device: int | str | None = int(input_device) if input_device and input_device.isdigit() else input_device
    chunks = mic_chunks(device)
    _run_voice(chunks, cfg, as_json=as_json, store=_local_store(cfg))


def _local_store(cfg: Any) -> Any:
    from agent.daemon import open_store

    return open_store(cfg)


def _run_voice(chunks: Any, cfg: Any, *, as_json: bool, store: Any = None) -> None:
    from agent.speech import Final, StreamingRecognizer
    from agent.voice import VoiceSession, speech_config

    session = VoiceSession(StreamingRecognizer(speech_config(cfg)), store=store)
    try:
        for ev in session.events(chunks):
            if as_json:
                click.echo(json.dumps(ev.__dict__))
            elif isinstance(ev, Final):
                click.echo(f"[{ev.start_s:7.2f}-{ev.end_s:7.2f}] {ev.text}")
    except KeyboardInterrupt:
        pass
    summary = session.summary()
    if as_json:
        click.echo(json.dumps(summary))
    else:
        click.echo(f"{summary['utterances']} utterance(s), {summary['audio_s']} s audio, rtf {summary['rtf']}",
                   err=True)
    if session.error is not None:
        raise session.error


@main.command("transcribe")
@config_option
@click.argument("source")
@click.option("--realtime", is_flag=True, help="pace the file as if spoken live")
@click.option("--json", "as_json", is_flag=True, help="JSON lines: partials, finals, then a summary")
@click.option("--model", "asr_model", type=click.Path(path_type=Path), default=None, help="CTranslate2 model dir")
@click.option("--threads", type=int, default=None)
@click.option("--pcm-rate", type=int, default=16000, help="for SOURCE '-': raw PCM sample rate")
@click.option("--pcm-channels", type=int, default=1, help="for SOURCE '-': interleaved channels")
@click.option("--pcm-format", default="s16le", help="for SOURCE '-': s16le, s32le or f32le")
@click.option("--store", "store_dir", type=click.Path(path_type=Path), default=None,
              help="also keep finals in this device folder's context cache")
@_friendly
def transcribe(config_path: Path | None, source: str, realtime: bool, as_json: bool, asr_model: Path | None,
               threads: int | None, pcm_rate: int, pcm_channels: int, pcm_format: str,
               store_dir: Path | None) -> None:
    """Transcribe an audio file (WAV, FLAC, MP3, ...) or raw PCM on stdin ('-'), streaming."""
    from agent.audio import open_source

    cfg = _agent_config(config_path, asr_model=asr_model, threads=threads, data_dir=store_dir)
    chunks = open_source(source, realtime=realtime, pcm_rate=pcm_rate, pcm_channels=pcm_channels,
                         pcm_format=pcm_format)
    _run_voice(chunks, cfg, as_json=as_json, store=_local_store(cfg) if store_dir else None)


@agent.command("ask")
@config_option
@device_dir_option
@click.option("--json", "as_json", is_flag=True, help="one JSON object with answer, intent, route, timings")
@click.argument("text")
@_friendly
def agent_ask(config_path: Path | None, data_dir: Path | None, as_json: bool, text: str) -> None:
    """Ask the assistant; tokens stream to the terminal as the local model writes them."""
    from agent.daemon import build_assistant

    cfg = _agent_config(config_path, data_dir=data_dir)
    assistant = build_assistant(cfg, _local_store(cfg))
    streamed: list[str] = []

    def show(piece: str) -> None:
        if not as_json:
            streamed.append(piece)
            click.echo(piece, nl=False)

    reply = assistant.ask(text, on_token=show)
    assistant.llm.close()
    if as_json:
        click.echo(json.dumps(reply.as_dict()))
        return
    if not streamed:
        click.echo(reply.answer, nl=False)
    click.echo()
    if reply.citations:
        click.echo("sources: " + ", ".join(reply.citations), err=True)
    click.echo(f"[{reply.intent} {reply.confidence:.2f} -> {reply.route}{', degraded' if reply.degraded else ''}]",
               err=True)


@agent.command("talk")
@config_option
@device_dir_option
@click.option("--file", "audio_file", type=click.Path(path_type=Path), default=None,
              help="audio file instead of the microphone")
@click.option("--json", "as_json", is_flag=True, help="one JSON line per answered utterance")
@_friendly
def agent_talk(config_path: Path | None, data_dir: Path | None, audio_file: Path | None, as_json: bool) -> None:
    """Voice: listen -> transcript -> intent -> answer, one answer per utterance."""
    from agent.audio import file_chunks, mic_chunks
    from agent.daemon import build_assistant
    from agent.speech import Final, StreamingRecognizer
    from agent.voice import VoiceSession, speech_config

    cfg = _agent_config(config_path, data_dir=data_dir)
    store = _local_store(cfg)
    assistant = build_assistant(cfg, store)
    chunks = file_chunks(audio_file) if audio_file else mic_chunks()
    session = VoiceSession(StreamingRecognizer(speech_config(cfg)), store=store)
    try:
        for ev in session.events(chunks):
            if not isinstance(ev, Final):
                continue
            reply = assistant.ask(ev.text)
            if as_json:
                click.echo(json.dumps({"transcript": ev.text, "final_latency_ms": ev.latency_ms, **reply.as_dict()}))
            else:
                click.echo(f"you: {ev.text}\nlinecrew [{reply.intent} -> {reply.route}]: {reply.answer}")
    except KeyboardInterrupt:
        pass
    finally:
        assistant.llm.close()
    if session.error is not None:
        raise session.error


@agent.group("job")
def agent_job() -> None:
    """The technician's current job (set by the planner, or by hand)."""


@agent_job.command("set")
@config_option
@device_dir_option
@click.option("--title", default="")
@click.option("--location", default="")
@click.option("--details", default="")
@click.argument("job_id")
@_friendly
def agent_job_set(config_path: Path | None, data_dir: Path | None, title: str, location: str, details: str,
                  job_id: str) -> None:
    from dataclasses import asdict

    from agent.assistant import JobContext

    store = _local_store(_agent_config(config_path, data_dir=data_dir))
    job = JobContext(job_id, title, location, details)
    store.put("current_job", asdict(job))
    click.echo(f"current job: {job.describe()}")


@agent.command("inbox")
@config_option
@device_dir_option
@click.option("--json", "as_json", is_flag=True)
@_friendly
def agent_inbox(config_path: Path | None, data_dir: Path | None, as_json: bool) -> None:
    """Answers from experts and results of deferred tasks that reached this device."""
    store = _local_store(_agent_config(config_path, data_dir=data_dir))
    rows = store.answers()
    for r in rows:
        click.echo(json.dumps(r) if as_json else f"[{r['kind']} from {r['source']}] {r['text']}")
    store.mark_seen([str(r["id"]) for r in rows])


@agent.command("stats")
@config_option
@device_dir_option
@_friendly
def agent_stats(config_path: Path | None, data_dir: Path | None) -> None:
    """Request metrics: latency and TTFT p50/p95/p99, routes, manual-intervention rate."""
    from agent.assistant import request_stats

    click.echo(json.dumps(request_stats(_local_store(_agent_config(config_path, data_dir=data_dir)))))


# =========================================================================================== server
@main.group()
def server() -> None:
    """The central sync server."""


def _server_config(config_path: Path | None, **overrides: Any) -> Any:
    from server.config import ServerConfig

    return ServerConfig.load(config_path, **overrides)


def _open_store(cfg: Any) -> Any:
    from server.store import ServerStore

    return ServerStore(cfg.data_dir, database_url=cfg.database_url)


@server.command("run")
@config_option
@server_dir_option
@click.option("--broker", "broker_url", default=None, help="external broker mqtt[s]://HOST:PORT")
@click.option("--http-port", type=int, default=None)
@click.option("--mqtt-port", type=int, default=None)
@click.option("--mqtts-port", type=int, default=None)
@_friendly
def server_run(config_path: Path | None, data_dir: Path | None, broker_url: str | None,
               http_port: int | None, mqtt_port: int | None, mqtts_port: int | None) -> None:
    """Run the server with its managed Mosquitto (or an external broker)."""
    from server.app import Server

    cfg = _server_config(config_path, data_dir=data_dir, broker_url=broker_url, http_port=http_port,
                         mqtt_port=mqtt_port, mqtts_port=mqtts_port)
    srv = Server(cfg)
    srv.start()
    click.echo(f"server up: http://{cfg.http_host}:{cfg.http_port}  broker {srv.broker.device_url()}", err=True)
    try:
        _wait_for_signal()
    finally:
        srv.stop()


@server.command("enroll-token")
@config_option
@server_dir_option
@click.option("--ttl", "ttl_s", type=int, default=None, help="seconds the token stays valid")
@click.option("--device-class", default=None, help="restrict the token to one device class")
@click.option("--tag", "tags", multiple=True, help="tag the enrolled device carries (rollouts select by tags)")
@_friendly
def server_enroll_token(config_path: Path | None, data_dir: Path | None, ttl_s: int | None,
                        device_class: str | None, tags: tuple[str, ...]) -> None:
    """Issue a one-time, expiring enrollment token (printed once, stored hashed)."""
    cfg = _server_config(config_path, data_dir=data_dir)
    store = _open_store(cfg)
    click.echo(store.create_enroll_token(ttl_s=ttl_s or cfg.enroll_token_ttl_s, device_class=device_class,
                                         tags=list(tags)))


@server.command("tag")
@config_option
@server_dir_option
@click.argument("device_id")
@click.argument("tags", nargs=-1)
@_friendly
def server_tag(config_path: Path | None, data_dir: Path | None, device_id: str, tags: tuple[str, ...]) -> None:
    """Set a device's tags (replacing the old ones)."""
    _open_store(_server_config(config_path, data_dir=data_dir)).set_tags(device_id, list(tags))


@server.group("token")
def server_token() -> None:
    """Admin API tokens with roles: admin, release-manager, planner, expert."""


@server_token.command("create")
@config_option
@server_dir_option
@click.option("--name", required=True, help="who holds it (shown in the audit log)")
@click.option("--role", "roles", multiple=True, required=True,
              type=click.Choice(["admin", "release-manager", "planner", "expert"]))
@_friendly
def server_token_create(config_path: Path | None, data_dir: Path | None, name: str, roles: tuple[str, ...]) -> None:
    """Create a token; it is printed once and stored only as a hash."""
    click.echo(_open_store(_server_config(config_path, data_dir=data_dir)).tokens.create(name, roles))


@server_token.command("revoke")
@config_option
@server_dir_option
@click.argument("name")
@_friendly
def server_token_revoke(config_path: Path | None, data_dir: Path | None, name: str) -> None:
    """Revoke every token of NAME."""
    n = _open_store(_server_config(config_path, data_dir=data_dir)).tokens.revoke(name)
    click.echo(f"{n} token(s) revoked")


@server.command("devices")
@config_option
@server_dir_option
@click.option("--json", "as_json", is_flag=True)
@_friendly
def server_devices(config_path: Path | None, data_dir: Path | None, as_json: bool) -> None:
    """List enrolled devices."""
    store = _open_store(_server_config(config_path, data_dir=data_dir))
    for d in store.devices():
        row = {"id": d.id, "class": d.device_class, "online": d.online, "last_seen": d.last_seen,
               "messages": store.message_count(d.id)}
        click.echo(json.dumps(row) if as_json else "  ".join(f"{k}={v}" for k, v in row.items()))


@server.command("messages")
@config_option
@server_dir_option
@click.option("--device", "device_id", default=None)
@click.option("--limit", type=int, default=20)
@_friendly
def server_messages(config_path: Path | None, data_dir: Path | None, device_id: str | None, limit: int) -> None:
    """Show the latest applied device messages (decrypted for the operator), as JSON lines."""
    store = _open_store(_server_config(config_path, data_dir=data_dir))
    for m in store.messages(device_id, limit):
        click.echo(json.dumps(m))


@server.command("send")
@config_option
@server_dir_option
@click.option("--device", "device_id", required=True)
@click.option("--ttl", "ttl_s", type=float, default=None, help="seconds after which it must not act")
@click.argument("name")
@click.argument("args_json", default="{}")
@_friendly
def server_send(config_path: Path | None, data_dir: Path | None, device_id: str, ttl_s: float | None,
                name: str, args_json: str) -> None:
    """Queue a command to a device through the server outbox (a running server delivers it)."""
    from server.errors import UnknownDeviceError
    store = _open_store(_server_config(config_path, data_dir=data_dir))
    if store.device(device_id) is None:
        raise UnknownDeviceError(f"unknown device {device_id}")
    try:
        args = json.loads(args_json)
    except json.JSONDecodeError as e:
        raise click.BadParameter(f"ARGS_JSON is not JSON: {e}") from e
    from server.auth import audit
    with store.db.transaction() as conn:
        env = store.outbox.put("command", {"name": name, "args": args}, peer=device_id, stream="commands",
                               ttl_s=ttl_s, device_id=device_id)
        audit(conn, "cli", "command.send", f"device:{device_id}", "", {"command": name, "message": env.id})
    click.echo(f"queued {env.id} for {device_id}")


@server.group("escalations")
def server_escalations() -> None:
    """Questions waiting for a human expert."""


@server_escalations.command("list")
@config_option
@server_dir_option
@click.option("--all", "show_all", is_flag=True, help="answered ones too")
@click.option("--json", "as_json", is_flag=True)
@_friendly
def server_escalations_list(config_path: Path | None, data_dir: Path | None, show_all: bool, as_json: bool) -> None:
    store = _open_store(_server_config(config_path, data_dir=data_dir))
    for e in store.escalations(status=None if show_all else "open"):
        if as_json:
            click.echo(json.dumps(e))
        else:
            click.echo(f"{e['id']}  {e['device_id']}  {e['intent']}  [{e['status']}]  {e['question']}")


@server_escalations.command("answer")
@config_option
@server_dir_option
@click.option("--expert", default="expert", help="who answers")
@click.argument("escalation_id")
@click.argument("answer")
@_friendly
def server_escalations_answer(config_path: Path | None, data_dir: Path | None, expert: str, escalation_id: str,
                              answer: str) -> None:
    """Answer an escalation; the answer travels to the device through the durable outbox."""
    store = _open_store(_server_config(config_path, data_dir=data_dir))
    device = store.answer_escalation(escalation_id, answer, expert=expert)
    click.echo(f"answer queued for {device}")


@server.command("worker")
@config_option
@click.option("--dir", "data_dir", type=click.Path(path_type=Path), help="server data folder (broker secrets)")
@click.option("--id", "worker_id", required=True, help="unique worker id")
@_friendly
def server_worker(config_path: Path | None, data_dir: Path | None, worker_id: str) -> None:
    """Run a deferred-task worker (scale out: start more, on more machines)."""
    from agent.llm import LlmConfig
    from server.app import make_broker
    from server.broker import ManagedBroker
    from server.workers import TaskWorker, default_handlers

    cfg = _server_config(config_path, data_dir=data_dir)
    broker = make_broker(cfg)
    address = broker.server_address() if isinstance(broker, ManagedBroker) else broker.address
    worker = TaskWorker(address, worker_id=worker_id,
                        handlers=default_handlers(LlmConfig(model_path=cfg.worker_llm_model,
                                                            threads=cfg.worker_threads)))
    worker.start()
    try:
        _wait_for_signal()
    finally:
        worker.stop()


@server.group("release")
def server_release() -> None:
    """Releases this server delivers to devices (delta or full, whichever is smaller for each)."""


@server_release.command("add")
@config_option
@server_dir_option
@click.argument("manifest", type=click.Path(exists=True, path_type=Path))
@click.argument("model", type=click.Path(exists=True, path_type=Path))
@click.option("--delta", "deltas", type=click.Path(exists=True, path_type=Path), multiple=True)
@_friendly
def server_release_add(config_path: Path | None, data_dir: Path | None, manifest: Path, model: Path,
                       deltas: tuple[Path, ...]) -> None:
    """Register a signed release with its deltas; ship it to devices with 'linecrew rollout create'."""
    store = _open_store(_server_config(config_path, data_dir=data_dir))
    doc = json.loads(manifest.read_text())
    store.releases.add(doc, model, list(deltas))
    click.echo(f"{doc['signed']['name']} v{doc['signed']['version']} registered with {len(deltas)} delta(s);"
               " ship it with 'linecrew rollout create'")


@server_release.command("offers")
@config_option
@server_dir_option
@_friendly
def server_release_offers(config_path: Path | None, data_dir: Path | None) -> None:
    """Offers made to devices and their state (JSON lines)."""
    for o in _open_store(_server_config(config_path, data_dir=data_dir)).releases.offers():
        click.echo(json.dumps(o))


# ========================================================================================== planner
@main.group()
def plan() -> None:
    """Central planner: rostering (CP-SAT), dispatch (OR-Tools routing), live re-planning."""


def _hhmm(value: str) -> int:
    try:
        h, m = value.split(":")
        return int(h) * 60 + int(m)
    except ValueError as e:
        raise click.BadParameter(f"{value!r} is not HH:MM") from e


def _xy(value: str) -> tuple[float, float]:
    try:
        x, y = value.split(",")
        return float(x), float(y)
    except ValueError as e:
        raise click.BadParameter(f"{value!r} is not X,Y") from e


@plan.command("roster")
@click.option("--curtois", "path", type=click.Path(exists=True, path_type=Path), required=True,
              help="Curtois & Qu shift scheduling instance")
@click.option("--time-limit", "time_limit", type=float, default=60.0, show_default=True)
@click.option("--workers", type=int, default=8, show_default=True, help="CP-SAT search workers")
@click.option("--json", "as_json", is_flag=True)
@_friendly
def plan_roster(path: Path, time_limit: float, workers: int, as_json: bool) -> None:
    """Roster a benchmark instance; objective is the benchmark's penalty."""
    from server.planner.roster import parse_curtois, solve_roster

    r = solve_roster(parse_curtois(path), time_limit_s=time_limit, workers=workers)
    assignments = [{"staff": e, "day": d, "shift": s} for e, row in r.roster.items() for d, s in enumerate(row) if s]
    out = {"name": r.name, "objective": r.objective, "bound": r.bound, "status": r.status,
           "runtime_s": round(r.runtime_s, 2), "assignments": assignments, "unassigned": [],
           "violations": r.violations}
    if as_json:
        click.echo(json.dumps(out))
        return
    click.echo(f"{r.name}: objective {r.objective} (bound {r.bound}, {r.status}) in {r.runtime_s:.1f} s")
    for e, row in r.roster.items():
        click.echo(f"  {e:>4} " + "".join(s or "." for s in row))


@plan.command("dispatch")
@click.option("--vrplib", "path", type=click.Path(exists=True, path_type=Path), required=True,
              help="VRPLIB-style CVRPTW instance (Solomon)")
@click.option("--time-limit", "time_limit", type=float, default=10.0, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@_friendly
def plan_dispatch_cmd(path: Path, time_limit: float, as_json: bool) -> None:
    """Route a benchmark instance; objective is total distance."""
    from server.planner.vrptw import parse_vrplib, solve_vrptw

    r = solve_vrptw(parse_vrplib(path), time_limit_s=time_limit)
    out = {"name": r.name, "objective": r.objective, "bound": None, "runtime_s": round(r.runtime_s, 2),
           "vehicles": r.vehicles_used, "assignments": [{"vehicle": k, "route": route} for k, route in
                                                        enumerate(r.routes)],
           "unassigned": r.unassigned, "violations": r.violations}
    if as_json:
        click.echo(json.dumps(out))
        return
    click.echo(f"{r.name}: distance {r.objective} with {r.vehicles_used} vehicles in {r.runtime_s:.1f} s")
    for k, route in enumerate(r.routes):
        click.echo(f"  vehicle {k}: " + " ".join(map(str, route)))


def _live(config_path: Path | None, data_dir: Path | None) -> Any:
    from server.planner.live import LivePlanner
    return LivePlanner(_open_store(_server_config(config_path, data_dir=data_dir)))


@plan.command("tech")
@config_option
@server_dir_option
@click.option("--device", "device_id", default=None, help="the technician's device (assignments go there)")
@click.option("--skills", default="", help="comma-separated, e.g. lv,hv,meter")
@click.option("--depot", default="0,0", help="X,Y of the home depot")
@click.option("--shift", "shift", default="08:00-17:00", help="HH:MM-HH:MM")
@click.option("--unavailable", is_flag=True, help="mark as dropped out (sick, vehicle broken)")
@click.argument("tech_id")
@_friendly
def plan_tech(config_path: Path | None, data_dir: Path | None, device_id: str | None, skills: str, depot: str,
              shift: str, unavailable: bool, tech_id: str) -> None:
    """Add or update a technician."""
    from server.planner.dispatch import Technician

    a, _, b = shift.partition("-")
    t = Technician(tech_id, frozenset(x for x in skills.split(",") if x), _xy(depot), (_hhmm(a), _hhmm(b)),
                   device_id, not unavailable)
    _live(config_path, data_dir).add_technician(t)
    click.echo(f"technician {tech_id} {'unavailable' if unavailable else 'available'}")


@plan.command("job")
@config_option
@server_dir_option
@click.option("--title", default="")
@click.option("--at", "at", required=True, help="X,Y location")
@click.option("--duration", type=int, default=60, help="minutes")
@click.option("--window", default="08:00-17:00", help="earliest-latest start, HH:MM-HH:MM")
@click.option("--skills", default="")
@click.option("--priority", type=click.IntRange(1, 5), default=3, help="1 outage ... 5 routine")
@click.option("--pin", "pinned_to", default=None, help="keep with this technician")
@click.argument("job_id")
@_friendly
def plan_job(config_path: Path | None, data_dir: Path | None, title: str, at: str, duration: int, window: str,
             skills: str, priority: int, pinned_to: str | None, job_id: str) -> None:
    """Add or update a job (an urgent outage is priority 1)."""
    from server.planner.dispatch import Job

    a, _, b = window.partition("-")
    _live(config_path, data_dir).add_job(Job(job_id, _xy(at), duration, (_hhmm(a), _hhmm(b)),
                                             frozenset(x for x in skills.split(",") if x), priority, title,
                                             pinned_to))
    click.echo(f"job {job_id} added (priority {priority})")


@plan.command("run")
@config_option
@server_dir_option
@click.option("--now", default=None, help="HH:MM: re-plan from this time on")
@click.option("--time-limit", "time_limit", type=float, default=3.0, show_default=True)
@click.option("--no-push", is_flag=True, help="plan only; do not send to devices")
@click.option("--json", "as_json", is_flag=True)
@_friendly
def plan_run(config_path: Path | None, data_dir: Path | None, now: str | None, time_limit: float, no_push: bool,
             as_json: bool) -> None:
    """Re-plan the live fleet (keeps pins and work in progress, moves as little as possible)."""
    from dataclasses import asdict

    from server.planner.errors import InfeasiblePlanError

    try:
        version, p = _live(config_path, data_dir).replan(time_limit_s=time_limit, now=_hhmm(now) if now else None,
                                                          push=not no_push)
    except InfeasiblePlanError as e:
        if as_json:
            click.echo(json.dumps({"feasible": False, "conflicts": e.conflicts}))
        raise
    out = {"plan_version": version, "objective": p.objective, "bound": None, "runtime_s": round(p.runtime_s, 2),
           "travel": p.travel, "changed": p.changed, "assignments": [asdict(a) for a in p.assignments],
           "unassigned": [{"job_id": k, "reason": v} for k, v in p.unassigned.items()]}
    if as_json:
        click.echo(json.dumps(out))
        return
    click.echo(f"plan v{version}: travel {p.travel}, {p.changed} assignment(s) changed, {p.runtime_s:.1f} s")
    for tech, route in p.by_technician().items():
        click.echo(f"  {tech}: " + ", ".join(f"{a.job_id}@{a.start // 60:02d}:{a.start % 60:02d}" for a in route))
    for job, why in p.unassigned.items():
        click.echo(f"  unassigned {job}: {why}")


# ========================================================================================== release
@main.group()
def release() -> None:
    """Signed model releases: keys, root of trust, manifests, deltas, verification."""


def _key(path: Path) -> Any:
    from shared.identity import load_or_create_key

    if not path.exists():
        raise click.BadParameter(f"key file {path} not found")
    return load_or_create_key(path)


@release.command("keygen")
@click.option("--out", "out", type=click.Path(path_type=Path), required=True, help="private key file (0600)")
@_friendly
def release_keygen(out: Path) -> None:
    """Make an Ed25519 signing key; prints its public key (base64) and key id."""
    from shared.identity import load_or_create_key
    from shared.release import keyid, public_b64

    if out.exists():
        raise click.ClickException(f"{out} exists; refusing to overwrite a key")
    pub = public_b64(load_or_create_key(out))
    out.with_suffix(".pub").write_text(pub + "\n")
    click.echo(f"{keyid(pub)} {pub}")


@release.command("root")
@click.option("--root-key", "root_keys", type=click.Path(path_type=Path), multiple=True, required=True)
@click.option("--root-threshold", type=int, default=1)
@click.option("--release-pub", "release_pubs", type=click.Path(path_type=Path), multiple=True, required=True,
              help="public key files (.pub) of release signers")
@click.option("--release-threshold", type=int, default=1)
@click.option("--version", "version", type=int, default=1)
@click.option("--expires-days", type=float, default=365)
@click.option("--sign-with", "extra_signers", type=click.Path(path_type=Path), multiple=True,
              help="old root keys too, when rotating")
@click.option("--out", type=click.Path(path_type=Path), required=True)
@_friendly
def release_root(root_keys: tuple[Path, ...], root_threshold: int, release_pubs: tuple[Path, ...],
                 release_threshold: int, version: int, expires_days: float, extra_signers: tuple[Path, ...],
                 out: Path) -> None:
    """Write root metadata (run it where the offline root key lives)."""
    from shared.release import make_root

    keys = [_key(p) for p in root_keys]
    doc = make_root(version=version, expires=time.time() + expires_days * 86400, root_keys=keys,
                    root_threshold=root_threshold, release_public=[p.read_text().strip() for p in release_pubs],
                    release_threshold=release_threshold, signers=keys + [_key(p) for p in extra_signers])
    out.write_text(json.dumps(doc, indent=1))
    click.echo(f"root v{version} written to {out}")


@release.command("create")
@click.argument("model", type=click.Path(exists=True, path_type=Path))
@click.option("--name", required=True)
@click.option("--version", "version", type=int, required=True)
@click.option("--device-class", "device_classes", multiple=True, required=True)
@click.option("--key", "keys", type=click.Path(path_type=Path), multiple=True, required=True,
              help="release signing key(s); as many as the threshold")
@click.option("--expires-days", type=float, default=90)
@click.option("--source", default="local build")
@click.option("--base-model", default=None)
@click.option("--training-data", default=None)
@click.option("--builder", default="linecrew release create")
@click.option("--delta", "deltas", type=click.Path(exists=True, path_type=Path), multiple=True,
              help="delta file(s) (from 'release delta') to list in the manifest")
@click.option("--out", type=click.Path(path_type=Path), required=True)
@_friendly
def release_create(model: Path, name: str, version: int, device_classes: tuple[str, ...], keys: tuple[Path, ...],
                   expires_days: float, source: str, base_model: str | None, training_data: str | None,
                   builder: str, deltas: tuple[Path, ...], out: Path) -> None:
    """Sign a release manifest for a model file."""
    from shared.delta import read_header, sha256_file
    from shared.release import sign

    listed = []
    for d in deltas:
        header, _ = read_header(d)
        listed.append({"base_sha256": header["old_sha256"], "length": d.stat().st_size, "sha256": sha256_file(d),
                       "format": "linecrew-delta-1"})
    now = time.time()
    digest = sha256_file(model)
    signed: dict[str, Any] = {
              "type": "release", "name": name, "version": version, "device_classes": list(device_classes),
              "length": model.stat().st_size, "sha256": digest, "created": now,
              "expires": now + expires_days * 86400, "deltas": listed,
              "provenance": {"source": source, "base_model": base_model, "training_data": training_data,
                             "builder": builder}}
    out.write_text(json.dumps(sign(signed, [_key(k) for k in keys]), indent=1))
    click.echo(f"{name} v{version} ({digest[:12]}, {len(listed)} delta(s)) signed -> {out}")


@release.command("delta")
@click.argument("old", type=click.Path(exists=True, path_type=Path))
@click.argument("new", type=click.Path(exists=True, path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True)
@_friendly
def release_delta(old: Path, new: Path, out: Path) -> None:
    """Make a delta (GGUF: tensor by tensor; other files: whole-file bsdiff4)."""
    from shared.delta import make_delta

    header = make_delta(old, new, out)
    size = out.stat().st_size
    click.echo(f"{out}: {size} bytes ({100 * size / new.stat().st_size:.2f}% of the new file), "
               f"{len(header['ops'])} operations")


@release.command("verify")
@click.argument("manifest", type=click.Path(exists=True, path_type=Path))
@click.option("--trust-root", "trust_root", type=click.Path(exists=True, path_type=Path), required=True)
@click.option("--device-class", default=None, help="check it is for this class")
@click.option("--installed-version", type=int, default=0)
@click.option("--model", type=click.Path(exists=True, path_type=Path), default=None, help="check this file too")
@_friendly
def release_verify(manifest: Path, trust_root: Path, device_class: str | None, installed_version: int,
                   model: Path | None) -> None:
    """Verify signatures, threshold, expiry, version (and the model's length and hash)."""
    from shared.release import BoundedHasher, load_trusted_root, verify_release

    root = load_trusted_root(trust_root.read_bytes(), now=time.time())
    doc = json.loads(manifest.read_text())
    cls = device_class or doc.get("signed", {}).get("device_classes", ["?"])[0]
    rel = verify_release(doc, root, now=time.time(), installed_version=installed_version, device_class=cls)
    if model is not None:
        h = BoundedHasher(rel.length, rel.sha256)
        with open(model, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        h.finish()
    click.echo(f"OK: {rel.name} v{rel.version} for {rel.device_classes}, sha256 {rel.sha256[:12]}"
               + (", model matches" if model else ""))


@agent.group("update")
def agent_update() -> None:
    """Fail-safe A/B model updates on this device."""


def _updater(cfg: Any) -> Any:
    from agent.updates import Updater, llm_health_check
    from shared.release import load_trusted_root

    root_file = cfg.data_dir / "root.json"
    if not root_file.exists():
        raise click.ClickException(f"no pinned trust root at {root_file} (provisioning puts it there)")
    root = load_trusted_root(root_file.read_bytes(), now=time.time())
    return Updater(cfg.data_dir / "models", root=root, device_class=cfg.device_class, health=llm_health_check())


@agent_update.command("status")
@config_option
@device_dir_option
@_friendly
def agent_update_status(config_path: Path | None, data_dir: Path | None) -> None:
    click.echo(json.dumps(_updater(_agent_config(config_path, data_dir=data_dir)).status()))


@agent_update.command("apply")
@config_option
@device_dir_option
@click.argument("manifest", type=click.Path(exists=True, path_type=Path))
@click.argument("payload", type=click.Path(exists=True, path_type=Path))
@_friendly
def agent_update_apply(config_path: Path | None, data_dir: Path | None, manifest: Path, payload: Path) -> None:
    """Verify and apply a release (full model or delta); commits after the health check or rolls back."""
    up = _updater(_agent_config(config_path, data_dir=data_dir))
    up.resume()
    rec = up.apply(json.loads(manifest.read_text()), payload)
    click.echo(f"{rec.state}: " + " -> ".join(rec.history) + (f" ({rec.error})" if rec.error else ""))
    if rec.state != "committed":
        sys.exit(1)


@agent_update.command("rollback")
@config_option
@device_dir_option
@_friendly
def agent_update_rollback(config_path: Path | None, data_dir: Path | None) -> None:
    rec = _updater(_agent_config(config_path, data_dir=data_dir)).rollback()
    click.echo(f"{rec.state}: active slot is now {rec.previous}")


@main.group()
def image() -> None:
    """Device image bundles per device class (recipes in firmware-images/)."""


@image.command("build")
@click.argument("recipe", type=click.Path(exists=True, path_type=Path))
@click.option("--trust-root", "trust_root", type=click.Path(exists=True, path_type=Path), required=True)
@click.option("--manifest", type=click.Path(exists=True, path_type=Path), required=True, help="signed release")
@click.option("--model", type=click.Path(exists=True, path_type=Path), default=None,
              help="the release's model file (default: the packaged SmolLM2 GGUF)")
@click.option("--key", "keys", type=click.Path(path_type=Path), multiple=True, required=True,
              help="release signing key(s)")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="default firmware-images/out/NAME.tar")
@_friendly
def image_build(recipe: Path, trust_root: Path, manifest: Path, model: Path | None, keys: tuple[Path, ...],
                out: Path | None) -> None:
    """Make a signed image bundle for one device class."""
    from shared.image import build_image
    from shared.models import default_llm_path

    target = out or Path("firmware-images/out") / f"{recipe.stem}.tar"
    img = build_image(recipe, root=trust_root, manifest=manifest, model=model or default_llm_path(),
                      keys=[_key(k) for k in keys], out=target)
    click.echo(f"{target}: {img['device_class']} image, agent {img['agent_version']}, "
               f"{img['release']} v{img['release_version']}")


@agent.command("provision")
@click.argument("bundle", type=click.Path(exists=True, path_type=Path))
@click.option("--dir", "device_dir", type=click.Path(path_type=Path), required=True)
@click.option("--trust-root", "trust_root", type=click.Path(exists=True, path_type=Path), required=True,
              help="the organisation's root metadata, obtained out of band")
@_friendly
def agent_provision(bundle: Path, device_dir: Path, trust_root: Path) -> None:
    """Set up a fresh device from an image bundle; a tampered bundle is refused."""
    from shared.image import provision

    img = provision(bundle, device_dir, trust_root.read_bytes())
    click.echo(f"provisioned {device_dir} as {img['device_class']} with {img['release']} v{img['release_version']}")


# ============================================================================================= demo
@main.command("demo")
@click.option("--dir", "data_dir", type=click.Path(path_type=Path), default=Path(".linecrew/demo"))
@click.option("--notes", type=int, default=5, help="notes the demo agent sends")
@click.option("--http-port", type=int, default=0, help="dashboard/API port (default: a free one)")
@click.option("--keep/--no-keep", default=None,
              help="keep everything running for the dashboard until Ctrl-C (default: when run in a terminal)")
@_friendly
def demo(data_dir: Path, notes: int, http_port: int, keep: bool | None) -> None:
    """The whole tour on one machine: server + broker, simulated devices and one real agent, a spoken
    question answered, a plan pushed, an escalation answered, a staged delta rollout, the dashboard."""
    from linecrew.demo import interactive, run_demo

    started = time.monotonic()

    def done() -> None:
        click.echo(f"demo finished in {time.monotonic() - started:.1f} s")

    def hold() -> None:
        done()
        _wait_for_signal()

    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        logging.getLogger().setLevel(logging.WARNING)  # the tour prints what happens; logs only for trouble
    keep = interactive() if keep is None else keep
    run_demo(data_dir, notes=notes, echo=click.echo, http_port=http_port, wait=hold if keep else None)
    if not keep:
        done()


# ================================================================================== rollouts, fleet
main.add_command(rollout)
main.add_command(fleet)

if __name__ == "__main__":
    main()
