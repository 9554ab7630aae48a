"""``linecrew agent ...`` and ``linecrew transcribe``: the device side."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from linecrew.cli._common import (
    _agent_config,
    _friendly,
    _wait_for_signal,
    config_option,
    device_dir_option,
    json_option,
    local_time,
    read_manifest,
)


@click.group()
def agent() -> None:
    """The device agent: enrollment, sync, voice, assistant, updates."""


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
    from linecrew.agent.enroll import enroll

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
    from linecrew.agent.daemon import run_agent

    cfg = _agent_config(config_path, data_dir=data_dir)
    run_agent(cfg, _wait_for_signal)


class _Remote:
    """The running agent's local API (``agent run``): questions go to its warm assistant and one conversation."""

    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url, token

    def post(self, path: str, body: dict[str, Any]) -> Any:
        import httpx

        r = httpx.post(self.url + path, json=body, headers={"X-Linecrew-Token": self.token}, timeout=120)
        if r.status_code != 200:
            raise click.ClickException(f"the running agent refused: {r.json().get('error', r.text)}")
        return r.json()

    def ask(self, text: str, *, alternatives: Sequence[str] = ()) -> Any:
        from linecrew.agent.assistant import Reply

        return Reply(**self.post("/api/ask", {"text": text, "alternatives": list(alternatives)}))


def _running(cfg: Any) -> _Remote | None:
    """The running agent, if one answers on the address it wrote; None: work in this process."""
    import httpx

    from linecrew.agent.local_api import TOKEN_FILE, URL_FILE

    try:
        url = (cfg.data_dir / URL_FILE).read_text().strip()
        token = (cfg.data_dir / TOKEN_FILE).read_text().strip()
        httpx.get(url + "/healthz", timeout=2).raise_for_status()
    except (OSError, httpx.HTTPError):
        return None
    return _Remote(url, token)


@agent.command("note")
@config_option
@device_dir_option
@click.option("--job", "job_id", default=None, help="job the note belongs to")
@click.argument("text")
@_friendly
def agent_note(config_path: Path | None, data_dir: Path | None, job_id: str | None, text: str) -> None:
    """Store a note (encrypted at rest) and queue it for the server."""
    from linecrew.agent.sync import open_configured

    cfg = _agent_config(config_path, data_dir=data_dir)
    remote = _running(cfg)
    if remote is not None:
        note_id = remote.post("/api/note", {"text": text, "job_id": job_id})["note_id"]
        click.echo(f"note {note_id} stored by the running agent")
        return
    store, _ = open_configured(cfg)
    note_id = store.add_note(text, job_id=job_id)
    click.echo(f"note {note_id} stored; {store.outbox.depth()} message(s) waiting in the outbox")


@agent.command("status")
@config_option
@device_dir_option
@json_option
@_friendly
def agent_status(config_path: Path | None, data_dir: Path | None, as_json: bool) -> None:
    """Show enrollment, outbox depth and dead letters."""
    from linecrew.agent.sync import open_configured

    cfg = _agent_config(config_path, data_dir=data_dir)
    store, address = open_configured(cfg)
    remote = _running(cfg)
    info = {
        "agent": remote.url if remote is not None else "not running",
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
    from linecrew.agent.audio import mic_chunks

    cfg = _agent_config(config_path, data_dir=data_dir)
    device: int | str | None = int(input_device) if input_device and input_device.isdigit() else input_device
    chunks = mic_chunks(device)
    _run_voice(chunks, cfg, as_json=as_json, store=_local_store(cfg))


def _local_store(cfg: Any) -> Any:
    from linecrew.agent.daemon import open_store

    return open_store(cfg)


def _run_voice(chunks: Any, cfg: Any, *, as_json: bool, store: Any = None) -> None:
    from linecrew.agent.speech import Final, StreamingRecognizer
    from linecrew.agent.voice import VoiceSession, speech_config

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


@click.command("transcribe")
@config_option
@click.argument("source")
@click.option("--realtime", is_flag=True, help="pace the file as if spoken live")
@click.option("--json", "as_json", is_flag=True, help="JSON lines: partials, finals, then a summary")
@click.option("--model", "asr_model", type=click.Path(path_type=Path), default=None, help="CTranslate2 model dir")
@click.option("--threads", type=int, default=None, help="CPU threads for decoding (default: the config's threads)")
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
    from linecrew.agent.audio import open_source

    cfg = _agent_config(config_path, asr_model=asr_model, threads=threads, data_dir=store_dir)
    chunks = open_source(source, realtime=realtime, pcm_rate=pcm_rate, pcm_channels=pcm_channels,
                         pcm_format=pcm_format)
    _run_voice(chunks, cfg, as_json=as_json, store=_local_store(cfg) if store_dir else None)


def _speaker(say_file: Path | None, speak: bool) -> Any:
    """Where spoken answers go: a WAV file, the sound device, or nowhere."""
    from linecrew.agent.tts import speaker_for

    return speaker_for(str(say_file) if say_file is not None else "device" if speak else "none")


def _gated(chunks: Any, cfg: Any, mode: str, keys: str | None) -> Any:
    """Push-to-talk: injected key windows (files), the side key (evdev) or Enter on the terminal (microphone)."""
    from linecrew.agent import ptt

    if mode != "push_to_talk":
        return chunks
    if keys is not None:
        return ptt.gate_windows(chunks, ptt.parse_windows(keys))
    key = ptt.Key()
    if cfg.ptt_device:
        ptt.evdev_key(cfg.ptt_device, cfg.ptt_key, key)
    else:
        click.echo("push-to-talk: press Enter to talk, Enter again to stop", err=True)
        ptt.terminal_key(key)
    return ptt.gate_key(chunks, key)


@agent.command("ask")
@config_option
@device_dir_option
@click.option("--json", "as_json", is_flag=True, help="one JSON object with answer, intent, route, timings")
@click.option("--say", "say_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="also speak the answer into this WAV file")
@click.option("--speak", is_flag=True, help="also speak the answer on the sound device")
@click.argument("text")
@_friendly
def agent_ask(config_path: Path | None, data_dir: Path | None, as_json: bool, say_file: Path | None, speak: bool,
              text: str) -> None:
    """Ask the assistant: the procedure's own words with their citations, or an honest "no procedure"."""
    from linecrew.agent.daemon import build_assistant

    cfg = _agent_config(config_path, data_dir=data_dir)
    speaker = _speaker(say_file, speak)
    remote = _running(cfg)
    if remote is not None:  # the running agent's warm assistant and its conversation
        _show(remote.ask(text), as_json, speaker)
        return
    assistant = build_assistant(cfg, _local_store(cfg))
    streamed: list[str] = []

    def show(piece: str) -> None:
        if not as_json:
            streamed.append(piece)
            click.echo(piece, nl=False)

    reply = assistant.ask(text, on_token=show)
    assistant.llm.close()
    _show(reply, as_json, speaker, streamed=bool(streamed))


def _show(reply: Any, as_json: bool, speaker: Any, *, streamed: bool = False) -> None:
    if speaker is not None:
        speaker.say(reply.answer)
        speaker.sink.close()
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


@agent.command("confirm")
@config_option
@device_dir_option
@click.option("--no", "refuse", is_flag=True, help="cancel the pending action instead")
@json_option
@_friendly
def agent_confirm(config_path: Path | None, data_dir: Path | None, refuse: bool, as_json: bool) -> None:
    """Answer the read-back of the pending action (a note, a job status, a parts request): yes, or --no."""
    from linecrew.agent.daemon import build_assistant

    cfg = _agent_config(config_path, data_dir=data_dir)
    remote = _running(cfg)
    if remote is not None:
        from linecrew.agent.assistant import Reply

        reply = Reply(**remote.post("/api/confirm", {"yes": not refuse}))
        click.echo(json.dumps(reply.as_dict()) if as_json else reply.answer)
        return
    assistant = build_assistant(cfg, _local_store(cfg))
    try:
        reply = assistant.confirm(not refuse)
    finally:
        assistant.llm.close()
    click.echo(json.dumps(reply.as_dict()) if as_json else reply.answer)


@agent.command("talk")
@config_option
@device_dir_option
@click.option("--file", "audio_file", type=click.Path(path_type=Path), default=None,
              help="audio file instead of the microphone")
@click.option("--json", "as_json", is_flag=True, help="one JSON line per answered turn")
@click.option("--say", "say_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="speak the answers into this WAV file")
@click.option("--speak", is_flag=True, help="speak the answers on the sound device (talking over them stops them)")
@click.option("--keys", default=None, help="push-to-talk key held over these seconds of the file, e.g. 1-3.5,6-8")
@click.option("--listen", "listen", type=click.Choice(["push_to_talk", "always", "wake"]), default=None,
              help="default: the config's for the microphone; a file is heard whole unless --keys is given")
@_friendly
def agent_talk(config_path: Path | None, data_dir: Path | None, audio_file: Path | None, as_json: bool,
               say_file: Path | None, speak: bool, keys: str | None, listen: str | None) -> None:
    """Voice: listen -> one turn (a question may take several sentences) -> answer, spoken when asked.
    "stop", "repeat", "louder", "slower" work at any time."""
    from linecrew.agent.audio import file_chunks, mic_chunks
    from linecrew.agent.daemon import build_assistant
    from linecrew.agent.speech import StreamingRecognizer
    from linecrew.agent.voice import VoiceSession, speech_config
    from linecrew.agent.voice_loop import VoiceLoop

    cfg = _agent_config(config_path, data_dir=data_dir)
    store = _local_store(cfg)
    remote = _running(cfg)
    assistant = build_assistant(cfg, store)
    speaker = _speaker(say_file, speak)
    mode = listen or ("push_to_talk" if keys or not audio_file else "always")
    if mode == "push_to_talk" and not keys and not audio_file:
        mode = cfg.listen
    chunks = _gated(file_chunks(audio_file) if audio_file else mic_chunks(), cfg, mode, keys)
    session = VoiceSession(StreamingRecognizer(speech_config(cfg, kb=assistant.kb)), store=store)
    ask = remote.ask if remote is not None else assistant.ask
    loop = VoiceLoop(session, ask, speaker=speaker, gap_s=cfg.turn_gap_ms / 1000, background_speech=speak,
                     wake_phrase=cfg.wake_phrase if mode == "wake" else None)
    try:
        for heard in loop.run(chunks):
            if heard.command is not None:
                click.echo(json.dumps({"transcript": heard.text, "command": heard.command}) if as_json
                           else f"[{heard.command}]")
                continue
            reply = heard.reply
            if as_json:
                click.echo(json.dumps({"transcript": heard.text, "final_latency_ms": heard.turn.latency_ms,
                                       "sentences": len(heard.turn.finals), **reply.as_dict()}))
            else:
                click.echo(f"you: {heard.text}\nlinecrew [{reply.intent} -> {reply.route}]: {reply.answer}")
    except KeyboardInterrupt:
        pass
    finally:
        assistant.llm.close()
        if speaker is not None:
            speaker.sink.close()
    if session.error is not None:
        raise session.error


@agent.group("job")
def agent_job() -> None:
    """The technician's current job (set by the planner, or by hand)."""


@agent_job.command("set")
@config_option
@device_dir_option
@click.option("--title", default="", help="what the job is, e.g. \"Transformer check\"")
@click.option("--location", default="", help="where: address or pole number")
@click.option("--details", default="", help="anything else the crew should know")
@click.argument("job_id")
@_friendly
def agent_job_set(config_path: Path | None, data_dir: Path | None, title: str, location: str, details: str,
                  job_id: str) -> None:
    from dataclasses import asdict

    from linecrew.agent.assistant import JobContext

    store = _local_store(_agent_config(config_path, data_dir=data_dir))
    job = JobContext(job_id, title, location, details)
    store.put("current_job", asdict(job))
    click.echo(f"current job: {job.describe()}")


@agent.command("inbox")
@config_option
@device_dir_option
@json_option
@_friendly
def agent_inbox(config_path: Path | None, data_dir: Path | None, as_json: bool) -> None:
    """Answers from experts and results of deferred tasks that reached this device."""
    store = _local_store(_agent_config(config_path, data_dir=data_dir))
    rows = store.answers()
    for r in rows:
        click.echo(json.dumps(r) if as_json else
                   f"{local_time(r.get('received'))}  [{r['kind']} from {r['source']}] {r['text']}")
    store.mark_seen([str(r["id"]) for r in rows])


@agent.command("stats")
@config_option
@device_dir_option
@json_option
@_friendly
def agent_stats(config_path: Path | None, data_dir: Path | None, as_json: bool) -> None:
    """Request metrics: latency and TTFT p50/p95/p99, routes, manual-intervention rate."""
    from linecrew.agent.assistant import request_stats

    stats = request_stats(_local_store(_agent_config(config_path, data_dir=data_dir)))
    click.echo(json.dumps(stats) if as_json else "\n".join(f"{k}: {json.dumps(v)}" for k, v in stats.items()))



@agent.group("update")
def agent_update() -> None:
    """Fail-safe A/B model updates on this device."""


def _updater(cfg: Any) -> Any:
    from linecrew.agent.updates import Updater, llm_health_check
    from linecrew.shared.release import load_trusted_root

    root_file = cfg.data_dir / "root.json"
    if not root_file.exists():
        raise click.ClickException(f"no pinned trust root at {root_file} (provisioning puts it there)")
    root = load_trusted_root(root_file.read_bytes(), now=time.time())
    return Updater(cfg.data_dir / "models", root=root, device_class=cfg.device_class,
                   health=llm_health_check(cfg.update_health_budget_s))


@agent_update.command("status")
@config_option
@device_dir_option
@json_option
@_friendly
def agent_update_status(config_path: Path | None, data_dir: Path | None, as_json: bool) -> None:
    """The active slot and version, what each slot holds, the last update's state and health."""
    st = _updater(_agent_config(config_path, data_dir=data_dir)).status()
    click.echo(json.dumps(st) if as_json else "\n".join(f"{k}: {v}" for k, v in st.items()))


@agent_update.command("apply")
@config_option
@device_dir_option
@click.argument("manifest", type=click.Path(exists=True, path_type=Path))
@click.argument("payload", type=click.Path(exists=True, path_type=Path))
@_friendly
def agent_update_apply(config_path: Path | None, data_dir: Path | None, manifest: Path, payload: Path) -> None:
    """Verify and apply a release (full model or delta); commits after the health check or rolls back."""
    from linecrew.shared.protocol import UpdateState

    up = _updater(_agent_config(config_path, data_dir=data_dir))
    up.resume()
    rec = up.apply(read_manifest(manifest), payload)
    click.echo(f"{rec.state}: " + " -> ".join(rec.history) + (f" ({rec.error})" if rec.error else ""))
    if rec.state != UpdateState.COMMITTED:
        sys.exit(1)


@agent_update.command("rollback")
@config_option
@device_dir_option
@_friendly
def agent_update_rollback(config_path: Path | None, data_dir: Path | None) -> None:
    rec = _updater(_agent_config(config_path, data_dir=data_dir)).rollback()
    click.echo(f"{rec.state}: active slot is now {rec.previous}")


@agent.command("provision")
@click.argument("bundle", type=click.Path(exists=True, path_type=Path))
@click.option("--data-dir", "--dir", "data_dir", type=click.Path(path_type=Path), required=True,
              help="the fresh device's data folder (e.g. /var/lib/linecrew/agent)")
@click.option("--trust-root", "trust_root", type=click.Path(exists=True, path_type=Path), required=True,
              help="the organisation's root metadata, obtained out of band")
@_friendly
def agent_provision(bundle: Path, data_dir: Path, trust_root: Path) -> None:
    """Set up a fresh device from an image bundle; a tampered bundle is refused."""
    from linecrew.agent.provision import provision

    img = provision(bundle, data_dir, trust_root.read_bytes())
    click.echo(f"provisioned {data_dir} as {img['device_class']} with {img['release']} v{img['release_version']}")
