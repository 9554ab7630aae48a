"""``make demo``: the main job end to end on one machine with embedded defaults.

Server with its managed Mosquitto (TLS for devices) → enrollment token → one agent enrolls →
notes and telemetry go through the durable outbox → the server shows them applied → a command goes
back through the server outbox and is applied once on the device → the planner dispatches jobs and the
route reaches the device → the technician asks a spoken question (espeak-ng stands in for the
microphone) → streaming transcript → intent → local answer with citations → a safety emergency is
escalated, an expert answers, and the answer arrives on the device.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from agent.config import AgentConfig
from agent.enroll import enroll
from agent.store import SERVER_PEER, AgentStore
from agent.sync import DeviceSync, open_device
from server.app import Server
from server.broker import free_port
from server.config import ServerConfig
from server.planner.dispatch import Job, Technician
from server.planner.live import LivePlanner
from shared.errors import LinecrewError
from shared.mqtt import wait_for


def run_demo(folder: Path, *, notes: int, echo: Callable[[str], None]) -> None:
    if folder.exists():
        shutil.rmtree(folder)
    cfg = ServerConfig(data_dir=folder / "server", http_port=free_port(), mqtt_port=free_port(),
                       mqtts_port=free_port())
    srv = Server(cfg)
    echo(f"[1/8] starting server: HTTP :{cfg.http_port}, Mosquitto :{cfg.mqtt_port} (loopback), "
         f"TLS :{cfg.mqtts_port} for devices")
    srv.start()
    sync: DeviceSync | None = None
    try:
        token = srv.store.create_enroll_token(ttl_s=600, device_class="x86-dev")
        device_dir = folder / "device-1"
        creds = enroll(folder=device_dir, server_url=f"http://127.0.0.1:{cfg.http_port}", token=token,
                       device_id="truck-17", device_class="x86-dev")
        echo(f"[2/8] enrolled device {creds.device_id}: Ed25519 identity, own broker password, "
             f"broker {creds.broker_url}")
        store, address = open_device(device_dir)
        for i in range(notes):
            store.add_note(f"Feeder 12 pole {i + 1}: crossarm cracked, replaced insulator", job_id="JOB-4711")
        store.outbox.put("telemetry", {"metrics": {"battery_pct": 87.0, "cpu_temp_c": 51.5}},
                         peer=SERVER_PEER, stream="telemetry")
        echo(f"[3/8] device offline so far: {store.outbox.depth()} messages committed to its outbox")
        sync = DeviceSync(store, address)
        sync.start()
        if not wait_for(lambda: srv.store.message_count("truck-17") >= notes + 1 and store.outbox.depth() == 0,
                        30):
            raise LinecrewError("demo messages were not applied on the server within 30 s")
        echo(f"[4/8] server applied {srv.store.message_count('truck-17')} messages; device outbox now "
             f"{store.outbox.depth()}:")
        for m in reversed(srv.store.messages("truck-17", limit=notes + 1)):
            echo(f"      {m['type']:<9} {m['stream']}#{m['seq']}  {m['payload']}")
        assert srv.ingest is not None
        srv.ingest.send("truck-17", "command", {"name": "refresh_job", "args": {"job_id": "JOB-4711"}})
        if not wait_for(lambda: len(store.commands()) == 1 and srv.store.outbox.depth("truck-17") == 0, 30):
            raise LinecrewError("the server's command did not reach the device within 30 s")
        cmd = store.commands()[0]
        echo(f"[5/8] device applied server command {cmd['name']} {cmd['args']} exactly once; "
             f"server outbox empty")
        _plan(srv, store, echo)
        _voice_and_assistant(srv, store, folder, echo)
    finally:
        if sync:
            sync.stop()
        srv.stop()
        time.sleep(0.1)


def _plan(srv: Server, store: AgentStore, echo: Callable[[str], None]) -> None:
    planner = LivePlanner(srv.store)
    planner.add_technician(Technician("ana", frozenset({"lv", "hv"}), (10, 10), (420, 930), "truck-17"))
    planner.add_technician(Technician("ben", frozenset({"lv"}), (40, 10), (420, 930)))
    jobs = [Job("JOB-4711", (14, 22), 60, (480, 720), frozenset({"hv"}), 3, "Transformer T12 oil check"),
            Job("JOB-4712", (35, 18), 45, (480, 900), frozenset(), 4, "Meter swap, 5 Elm St"),
            Job("OUT-7", (20, 30), 90, (540, 660), frozenset(), 1, "Feeder 7 outage")]
    for j in jobs:
        planner.add_job(j)
    version, plan = planner.replan(time_limit_s=2)
    routes = "; ".join(f"{t}: " + ", ".join(a.job_id for a in r) for t, r in plan.by_technician().items())
    def arrived() -> bool:
        a = store.get("assignment")
        return isinstance(a, dict) and a.get("plan_version") == version

    if not wait_for(arrived, 30):
        raise LinecrewError("the plan did not reach the device within 30 s")
    job = store.get("current_job")
    echo(f"[6/8] plan v{version} ({routes}) pushed; truck-17's current job is now {job['job_id']}: "  # type: ignore[index]
         f"{job['title']}")  # type: ignore[index]


def _voice_and_assistant(srv: Server, store: AgentStore, folder: Path, echo: Callable[[str], None]) -> None:
    from agent.audio import file_chunks
    from agent.daemon import build_assistant
    from agent.speech import Final, StreamingRecognizer
    from agent.voice import VoiceSession

    cfg = AgentConfig(data_dir=store.folder)
    assistant = build_assistant(cfg, store)
    wav = folder / "question.wav"
    question = "How do I check the oil level on a pole mounted transformer?"
    if shutil.which("espeak-ng"):
        subprocess.run(["espeak-ng", "-s", "150", "-w", str(wav), question], check=True, capture_output=True)
        session = VoiceSession(StreamingRecognizer(), store=store)
        finals = [e for e in session.events(file_chunks(wav, realtime=True)) if isinstance(e, Final)]
        question = " ".join(f.text for f in finals) or question
        echo(f"[7/8] heard (streaming, {session.summary()['final_latency_ms']} ms after speech ended): {question!r}")
    else:
        echo("[7/8] espeak-ng missing: asking the question as text")
    reply = assistant.ask(question)
    echo(f"      intent {reply.intent} ({reply.confidence:.2f}) -> {reply.route}; {reply.completion_tokens} tokens, "
         f"first after {reply.ttft_ms} ms, {reply.tokens_per_s} tok/s")
    echo(f"      answer: {reply.answer}")
    echo(f"      sources: {', '.join(reply.citations)}")
    emergency = assistant.ask("A live wire is down next to the transformer and my partner got a shock")
    echo(f"      emergency -> {emergency.route}: {emergency.answer[:110]}...")
    esc = next(iter(srv.store.escalations()), None) if wait_for(lambda: bool(srv.store.escalations()), 30) else None
    if esc is None:
        raise LinecrewError("the escalation did not reach the server within 30 s")
    srv.store.answer_escalation(str(esc["id"]), "Ambulance and line crew dispatched; feeder 7 is being opened.",
                                expert="Dana (control center)")
    if not wait_for(lambda: bool(store.answers()), 30):
        raise LinecrewError("the expert's answer did not reach the device within 30 s")
    ans = store.answers()[0]
    echo(f"[8/8] expert {ans['source']} answered on the device: {ans['text']}")
    assistant.llm.close()
