"""``make demo``: the whole tour on one machine with embedded defaults.

Server with its managed Mosquitto (TLS for devices) → a release authority signs model v2 and its delta →
a few simulated devices enroll and run v1 → one real agent enrolls → notes and telemetry go through the
durable outbox → a command comes back exactly once → the planner dispatches jobs and the routes reach
the devices → the technician asks a spoken question (espeak-ng stands in for the microphone) →
streaming transcript → intent → local answer with citations → a safety emergency is escalated and an
expert's answer arrives on the device → a staged delta rollout of v2 runs wave by wave over the admin
API → the fleet's metrics → the dashboard URL with a login token.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from linecrew.agent.config import AgentConfig
from linecrew.agent.daemon import telemetry_payload
from linecrew.agent.enroll import enroll
from linecrew.agent.store import SERVER_PEER, AgentStore
from linecrew.agent.sync import DeviceSync, open_device
from linecrew.server.app import Server
from linecrew.server.broker import free_port
from linecrew.server.config import ServerConfig
from linecrew.server.metrics import fleet_summary
from linecrew.server.planner.dispatch import Job, Technician
from linecrew.server.planner.live import LivePlanner
from linecrew.shared.errors import LinecrewError
from linecrew.shared.mqtt import wait_for
from linecrew.shared.protocol import Stream
from linecrew.tools.admin_client import AdminClient
from linecrew.tools.rehearsal import RELEASE_NAME, Authority, start_pilot_fleet
from linecrew.tools.simulator import Fleet

STEPS = 12
SIM_DEVICES = 5


class Tour:
    def __init__(self, echo: Callable[[str], None]) -> None:
        self.echo = echo
        self.n = 0

    def step(self, text: str) -> None:
        self.n += 1
        self.echo(f"[{self.n}/{STEPS}] {text}")

    def more(self, text: str) -> None:
        self.echo(f"      {text}")


def run_demo(folder: Path, *, notes: int, echo: Callable[[str], None], http_port: int = 0,
             wait: Callable[[], None] | None = None) -> None:
    """The tour; with ``wait``, everything keeps running (dashboard included) until it returns."""
    if folder.exists():
        shutil.rmtree(folder)
    tour = Tour(echo)
    authority_dir = folder / "authority"
    cfg = ServerConfig(data_dir=folder / "server", http_port=http_port or free_port(), mqtt_port=free_port(),
                       mqtts_port=free_port(), release_root=authority_dir / "root.json")
    url = f"http://127.0.0.1:{cfg.http_port}"
    tour.step("signing model v2 (a block-3 fine-tune of the default model) with 2 of 2 release keys")
    authority = Authority(authority_dir)
    srv = Server(cfg)
    tour.step(f"starting server: HTTP {url}, Mosquitto :{cfg.mqtt_port} (loopback), TLS :{cfg.mqtts_port} "
              f"for devices")
    srv.start()
    sync: DeviceSync | None = None
    fleet: Fleet | None = None
    try:
        fleet, ids = start_pilot_fleet(srv.store, url, folder, authority, count=SIM_DEVICES)
        delta = authority.deltas[("A", "B")]
        tour.more(f"release {RELEASE_NAME} v2 registered: full model {authority.models['B'].stat().st_size / 1e6:.1f}"
                  f" MB, delta from v1 {delta.stat().st_size / 1e3:.1f} KB")
        if not fleet.wait_connected(30):
            raise LinecrewError("the simulated devices did not connect within 30 s")
        tour.step(f"{SIM_DEVICES} simulated devices enrolled (own key, token and broker password each) and "
                  f"online over TLS, running v1: {', '.join(i.device_id for i in ids)}")
        token = srv.store.registry.create_enroll_token(ttl_s=600, device_class="jetson-orin-nano")
        device_dir = folder / "device-1"
        creds = enroll(folder=device_dir, server_url=url, token=token, device_id="truck-17",
                       device_class="jetson-orin-nano")
        tour.step(f"enrolled the real agent {creds.device_id}: Ed25519 identity, own broker password, "
                  f"broker {creds.broker_url}")
        store, address = open_device(device_dir)
        for i in range(notes):
            store.add_note(f"Feeder 12 pole {i + 1}: crossarm cracked, replaced insulator", job_id="JOB-4711")
        store.outbox.put("telemetry", {"metrics": {"battery_pct": 87.0, "cpu_temp_c": 51.5}},
                         peer=SERVER_PEER, stream=Stream.TELEMETRY)
        tour.step(f"truck-17 offline so far: {store.outbox.depth()} messages committed to its outbox")
        sync = DeviceSync(store, address)
        sync.start()
        if not wait_for(lambda: srv.store.log.count("truck-17") >= notes + 1 and store.outbox.depth() == 0,
                        30):
            raise LinecrewError("demo messages were not applied on the server within 30 s")
        tour.more(f"online: the server applied {srv.store.log.count('truck-17')} messages; device outbox now "
                  f"{store.outbox.depth()}:")
        for m in reversed(srv.store.log.messages("truck-17", limit=notes + 1)):
            tour.more(f"  {m['type']:<9} {m['stream']}#{m['seq']}  {m['payload']}")
        assert srv.ingest is not None
        srv.ingest.send("truck-17", "command", {"name": "refresh_job", "args": {"job_id": "JOB-4711"}})
        if not wait_for(lambda: len(store.commands()) == 1 and srv.store.outbox.depth("truck-17") == 0, 30):
            raise LinecrewError("the server's command did not reach the device within 30 s")
        cmd = store.commands()[0]
        tour.step(f"truck-17 applied server command {cmd['name']} {cmd['args']} exactly once; server outbox empty")
        _plan(srv, store, ids[0].device_id, tour)
        _voice_and_assistant(srv, store, folder, tour)
        store.outbox.put("telemetry", telemetry_payload(store), peer=SERVER_PEER, stream=Stream.TELEMETRY)
        sync.notify()
        people = srv.store.tokens
        manager = people.create("rita (release manager)", ["release-manager"])
        reviewer = people.create("sam (release manager)", ["release-manager"])
        _rollout(url, manager, reviewer, srv, authority, tour)
        _metrics(srv, tour)
        login = people.create("demo operator", ["admin", "release-manager", "planner", "expert"])
        tour.step(f"dashboard: {url}/dashboard/#token={login}")
        tour.more(f"Prometheus: {url}/metrics · OpenAPI: {url}/openapi.json")
        if wait is not None:
            echo("      the server, broker and devices keep running: press Ctrl-C to stop")
            wait()
    finally:
        if fleet:
            fleet.stop()
        if sync:
            sync.stop()
        srv.stop()
        time.sleep(0.1)


def _plan(srv: Server, store: AgentStore, sim_device: str, tour: Tour) -> None:
    planner = LivePlanner(srv.store)
    planner.add_technician(Technician("ana", frozenset({"lv", "hv"}), (10, 10), (420, 930), "truck-17"))
    planner.add_technician(Technician("ben", frozenset({"lv"}), (40, 10), (420, 930), sim_device))
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

    if not wait_for(lambda: arrived() and srv.store.outbox.depth(sim_device) == 0, 30):
        raise LinecrewError("the plan did not reach the devices within 30 s")
    job = store.get("current_job")
    tour.step(f"plan v{version} ({routes}) pushed and acknowledged by truck-17 and {sim_device}; truck-17's "
              f"current job is now {job['job_id']}: {job['title']}")  # type: ignore[index]


def _voice_and_assistant(srv: Server, store: AgentStore, folder: Path, tour: Tour) -> None:
    from linecrew.agent.audio import file_chunks
    from linecrew.agent.daemon import build_assistant
    from linecrew.agent.speech import Final, StreamingRecognizer
    from linecrew.agent.voice import VoiceSession, speech_config

    cfg = AgentConfig(data_dir=store.folder)
    assistant = build_assistant(cfg, store)
    assistant.warm_up()  # as the resident agent does at start: the first answer does not pay for loading
    wav = folder / "question.wav"
    question = "How do I check the oil level on a pole mounted transformer?"
    if shutil.which("espeak-ng"):
        subprocess.run(["espeak-ng", "-s", "150", "-w", str(wav), question], check=True, capture_output=True)
        session = VoiceSession(StreamingRecognizer(speech_config(cfg, kb=assistant.kb)), store=store)
        finals = [e for e in session.events(file_chunks(wav, realtime=True)) if isinstance(e, Final)]
        question = " ".join(f.text for f in finals) or question
        latency: list[float] = session.summary()["final_latency_ms"]  # type: ignore[assignment]
        tour.step(f"heard (streaming, final text {latency[-1] if latency else '?'} ms after speech ended): "
                  f"{question!r}")
    else:
        tour.step("espeak-ng missing: asking the question as text")
    reply = assistant.ask(question)
    tour.more(f"intent {reply.intent} ({reply.confidence:.2f}) -> {reply.route}; {reply.completion_tokens} tokens, "
         f"first after {reply.ttft_ms} ms, {reply.tokens_per_s} tok/s")
    tour.more(f"answer: {reply.answer}")
    tour.more(f"sources: {', '.join(reply.citations)}")
    emergency = assistant.ask("A live wire is down next to the transformer and my partner got a shock")
    tour.more(f"emergency -> {emergency.route}: {emergency.answer[:110]}...")
    arrived = wait_for(lambda: bool(srv.store.escalations.list()), 30)
    esc = next(iter(srv.store.escalations.list()), None) if arrived else None
    if esc is None:
        raise LinecrewError("the escalation did not reach the server within 30 s")
    srv.store.escalations.answer(str(esc["id"]), "Ambulance and line crew dispatched; feeder 7 is being opened.",
                                expert="Dana (control center)")
    if not wait_for(lambda: bool(store.answers()), 30):
        raise LinecrewError("the expert's answer did not reach the device within 30 s")
    ans = store.answers()[0]
    tour.step(f"expert {ans['source']} answered on the device: {ans['text']}")
    assistant.llm.close()


def _rollout(url: str, token: str, reviewer: str, srv: Server, authority: Authority, tour: Tour) -> None:
    """A release manager's staged rollout over the admin API, approved by a second one, watched wave by wave."""
    api = AdminClient(url, token)
    try:
        spec = {"release": RELEASE_NAME, "version": 2, "tags": ["pilot"], "on_failure": "rollback",
                "waves": [{"percent": 20, "soak_s": 2}, {"percent": 100, "soak_s": 2}]}
        r = api.create_rollout(spec, "pilot group first")
        second = AdminClient(url, reviewer)
        try:
            second.act(r["id"], "approve", "checked the eval report")
        finally:
            second.close()
        api.act(r["id"], "start", "")
        tour.step(f"staged rollout {r['id'][:13]}… of v2 to the pilot group: waves 20 % then 100 %, 2 s soak, "
                  f"roll back on failure")
        seen: set[tuple[int, str]] = set()
        deadline = time.monotonic() + 120
        while True:
            st = api.rollout(r["id"])
            for w in st["waves"]:
                key = (int(w["idx"]), str(w["state"]))
                if key not in seen and w["state"] != "pending":
                    seen.add(key)
                    tour.more(f"wave {w['idx'] + 1}: {w['state']:<9} {w['counts'].get('healthy', 0)}/{w['size']} "
                              f"healthy")
            if st["state"] in ("finished", "rolled_back", "aborted") or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        if st["state"] != "finished":
            raise LinecrewError(f"the rollout ended {st['state']}: {st.get('reason')}")
        full = authority.models["B"].stat().st_size * st["devices"]
        tour.more(f"finished: {st['counts'].get('healthy', 0)} devices healthy on v2; {st['bytes_sent'] / 1e3:.1f} KB "
                  f"sent instead of {full / 1e6:.0f} MB for full models")
    finally:
        api.close()


def _metrics(srv: Server, tour: Tour) -> None:
    if not wait_for(lambda: fleet_summary(srv.store, srv.config.cost)["total"]["requests"] > 0, 30):
        raise LinecrewError("truck-17's request stats did not reach the server within 30 s")
    m: dict[str, Any] = fleet_summary(srv.store, srv.config.cost)
    t = m["total"]
    tour.step(f"fleet metrics: {t['requests']} assistant requests, p50/p95/p99 {t['p50_s']:.2f}/{t['p95_s']:.2f}/"
              f"{t['p99_s']:.2f} s, manual-intervention rate {t['manual_intervention_rate']:.0%}, "
              f"deferred backlog {m['backlog']['tasks']}, {m['devices']['online']}/{m['devices']['total']} online")
    for model, d in m["models"].items():
        if model != "none":
            tour.more(f"{model}: p50 {d['p50_s']:.2f} s, {d['tokens_per_request']} tokens/request, "
                      f"{d['tokens_per_s']} tokens/s end to end, error rate {d['error_rate']:.0%}, cost per resolved "
                      f"task {d['cost_per_resolved_task']}")


def interactive() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()
