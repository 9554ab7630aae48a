"""The agent daemon: open the store, keep the link, report telemetry; nothing else lives here."""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from linecrew.agent.announce import Announcer
from linecrew.agent.answering import Answerer
from linecrew.agent.assistant import Assistant, AssistantConfig
from linecrew.agent.config import AgentConfig
from linecrew.agent.errors import AudioError, NotEnrolledError
from linecrew.agent.knowledge import SAMPLE_KB, KnowledgeBase
from linecrew.agent.lexicon import Lexicon
from linecrew.agent.local_api import DeviceService, LocalServer
from linecrew.agent.metrics import request_summary, serve_metrics
from linecrew.agent.router import RoutingPolicy
from linecrew.agent.store import SERVER_PEER, AgentStore
from linecrew.agent.sync import DeviceSync, open_configured
from linecrew.agent.transfer import UpdateAgent
from linecrew.agent.tts import speaker_for
from linecrew.agent.updates import Slots, Updater, llm_health_check
from linecrew.shared.engine import SenderLimits
from linecrew.shared.llm import LlmConfig, LocalLLM
from linecrew.shared.logs import bind_log_context
from linecrew.shared.loops import IterationGuard
from linecrew.shared.protocol import Stream, Topics
from linecrew.shared.release import load_trusted_root
from linecrew.shared.sync import OutboxLimits

log = logging.getLogger(__name__)


def open_store(cfg: AgentConfig) -> AgentStore:
    """The device store whether enrolled or not (voice and the assistant work before enrollment;
    what they queue is sent once the device is enrolled)."""
    try:
        return open_configured(cfg)[0]
    except NotEnrolledError:
        limits = OutboxLimits(quota_bytes=cfg.outbox_quota_mb * 1024 * 1024, on_full=cfg.outbox_on_full)
        return AgentStore(cfg.data_dir, device_id="unenrolled", limits=limits, synchronous=cfg.sqlite_synchronous)


def model_in_force(cfg: AgentConfig) -> Path | None:
    """The configured model; else, on a provisioned device, the A/B slot the updater activated (so an update
    reaches the assistant); else ``None``, the packaged default."""
    if cfg.llm_model is not None:
        return cfg.llm_model
    slots = cfg.data_dir / "models"
    if (slots / "active").is_symlink() or (slots / "slot-a" / "model.gguf").exists():
        model = Slots(slots).active_model()
        return model if model.exists() else None
    return None


def knowledge_base(cfg: AgentConfig, store: AgentStore) -> KnowledgeBase:
    """The device's procedures: the bundled (or configured) folder kept indexed, plus imported manuals."""
    kb = KnowledgeBase(store.db, Lexicon.for_device(cfg.data_dir))
    kb.ensure_indexed(cfg.knowledge_dir or SAMPLE_KB)
    return kb


def build_assistant(cfg: AgentConfig, store: AgentStore) -> Assistant:
    """The assistant with a warm local model, the knowledge base indexed and the configured policy."""
    kb = knowledge_base(cfg, store)
    llm = LocalLLM(LlmConfig(model_path=model_in_force(cfg), threads=cfg.threads, n_ctx=cfg.llm_ctx,
                               gpu_layers=cfg.llm_gpu_layers))
    return Assistant(store, llm, kb, policy=RoutingPolicy(escalate_below=cfg.escalate_below),
                     config=AssistantConfig(intent_mode=cfg.intent_mode, answer_mode=cfg.answer_mode,
                                            answer_budget_ms=cfg.answer_budget_ms),
                     answerer=Answerer(kb, encoder_dir=cfg.embedding_model, cache_dir=cfg.data_dir))


def _update_agent(cfg: AgentConfig, store: AgentStore, sync: DeviceSync) -> UpdateAgent | None:
    """Model updates run only on a provisioned device (pinned trust root and an A/B model folder)."""
    root_file = cfg.data_dir / "root.json"
    if not root_file.exists() or not (cfg.data_dir / "models" / "active").is_symlink():
        log.info("no pinned trust root or model slots: model updates are off on this device")
        return None
    root = load_trusted_root(root_file.read_bytes(), now=time.time())
    updater = Updater(cfg.data_dir / "models", root=root, device_class=cfg.device_class,
                      health=llm_health_check(cfg.update_health_budget_s))
    agent = UpdateAgent(store, updater, sync.link)
    sync.binary[Topics.xfer_data(store.device_id)] = agent.on_chunk
    return agent


def telemetry(store: AgentStore) -> dict[str, float]:
    disk = shutil.disk_usage(store.folder)
    return {
        "outbox_depth": float(store.outbox.depth()),
        "outbox_bytes": float(store.outbox.used_bytes()),
        "disk_free_mb": disk.free / 1e6,
    }


def telemetry_payload(store: AgentStore) -> dict[str, Any]:
    """Health numbers plus cumulative per-model request stats (the 16 busiest models)."""
    stats = sorted(request_summary(store).items(), key=lambda kv: -kv[1].count)[:16]
    return {"metrics": telemetry(store), "requests": {m: s.model_dump() for m, s in stats}}


def start_metrics(cfg: AgentConfig, store: AgentStore) -> Any:
    """The device's Prometheus endpoint; a port already taken is logged, not fatal (the agent's job
    is the technician, not the scrape)."""
    if not cfg.metrics_port:
        return None
    try:
        server = serve_metrics(store, host=cfg.metrics_host, port=cfg.metrics_port, cost=cfg.cost)
    except OSError as e:
        log.warning("metrics endpoint %s:%d not started: %s", cfg.metrics_host, cfg.metrics_port, e)
        return None
    log.info("metrics on http://%s:%d/metrics", cfg.metrics_host, cfg.metrics_port)
    return server


def _local_service(cfg: AgentConfig, store: AgentStore) -> tuple[DeviceService, LocalServer | None]:
    """The assistant loaded once and kept warm (classifier, procedures, the model when configured to write),
    behind the local API that the screen and the CLI use."""
    started = time.perf_counter()
    assistant = build_assistant(cfg, store)
    assistant.warm_up()
    service = DeviceService(assistant, speaker=speaker_for(cfg.speech_output))
    log.info("assistant ready in %.1f s", time.perf_counter() - started)
    try:
        local = LocalServer(service, port=cfg.screen_port, folder=cfg.data_dir)
    except OSError as e:
        log.warning("device screen and local API not started on port %d: %s", cfg.screen_port, e)
        return service, None
    local.start()
    log.info("device screen on %s", local.url)
    return service, local


def _voice_thread(cfg: AgentConfig, service: DeviceService, stop: threading.Event) -> threading.Thread | None:
    """Listen on the microphone for the life of the agent (push-to-talk needs the side key, ``ptt_device``)."""
    from linecrew.agent import ptt
    from linecrew.agent.audio import mic_chunks
    from linecrew.agent.speech import StreamingRecognizer
    from linecrew.agent.voice import VoiceSession, speech_config
    from linecrew.agent.voice_loop import VoiceLoop

    if cfg.listen == "push_to_talk" and not cfg.ptt_device:
        log.info("voice off: push-to-talk needs the side key's input device (ptt_device), or listen = wake")
        return None

    def run() -> None:
        try:
            chunks: Any = mic_chunks()
            if cfg.listen == "push_to_talk":
                key = ptt.Key()
                ptt.evdev_key(str(cfg.ptt_device), cfg.ptt_key, key)
                chunks = ptt.gate_key(chunks, key)
            session = VoiceSession(StreamingRecognizer(speech_config(cfg, kb=service.assistant.kb)),
                                   store=service.store)
            loop = VoiceLoop(session, service.assistant.ask, speaker=service.speaker, background_speech=True,
                             wake_phrase=cfg.wake_phrase if cfg.listen == "wake" else None,
                             gap_s=cfg.turn_gap_ms / 1000, on_event=service.heard)
            for heard in loop.run(chunks):
                if stop.is_set():
                    return
                if heard.reply is not None:
                    service.remember(heard.text, heard.reply)
        except AudioError as e:
            log.warning("voice off: %s", e)

    t = threading.Thread(target=run, name="voice", daemon=True)
    t.start()
    return t


def run_agent(cfg: AgentConfig, wait: Callable[[], None], *, telemetry_every_s: float = 60.0) -> None:
    store, address = open_configured(cfg)
    bind_log_context(device_id=store.device_id)
    sync = DeviceSync(store, address, limits=SenderLimits(window=cfg.window, ack_timeout_s=cfg.ack_timeout_s))
    stop = threading.Event()
    metrics = start_metrics(cfg, store)

    def report_once() -> None:
        store.inbox.prune(time.time() - 7 * 86400)  # sequences still stop duplicates after a week
        store.outbox.put("telemetry", telemetry_payload(store), peer=SERVER_PEER, stream=Stream.TELEMETRY, ttl_s=3600)
        sync.notify()

    def report() -> None:
        guard = IterationGuard("telemetry", log, stop=stop)
        while not stop.wait(telemetry_every_s):
            guard.run(report_once)

    updates = _update_agent(cfg, store, sync)
    service, local = _local_service(cfg, store)
    voice = _voice_thread(cfg, service, stop) if cfg.voice else None
    announcer = Announcer(store, service.speaker) if service.speaker is not None else None
    if announcer is not None:
        sync.on_applied = announcer.notify
        announcer.start()
    sync.start()
    if updates is not None:
        updates.start()
    threading.Thread(target=report, name="telemetry", daemon=True).start()
    log.info("agent %s running; broker %s", store.device_id, address.url)
    try:
        wait()
    finally:
        stop.set()
        if updates is not None:
            updates.stop()
        sync.stop()
        if announcer is not None:
            announcer.stop()
        if service.speaker is not None:
            service.speaker.sink.close()
        if local is not None:
            local.stop()
        service.assistant.llm.close()
        if voice is not None:
            voice.join(timeout=5)
        if metrics is not None:
            metrics[0].shutdown()
        store.close()
