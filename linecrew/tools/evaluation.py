"""Scratch copies for evaluation: the device's procedures and configuration, none of its state.

An evaluation asks hundreds of questions, some of them emergencies; on a scratch store nothing it does is
queued to the server, and the device's conversation and pending read-backs are untouched.
"""

from __future__ import annotations

from pathlib import Path

from linecrew.agent.answering import Answerer
from linecrew.agent.assistant import Assistant, AssistantConfig
from linecrew.agent.config import AgentConfig
from linecrew.agent.knowledge import SAMPLE_KB, USER, KnowledgeBase
from linecrew.agent.lexicon import Lexicon
from linecrew.agent.router import RoutingPolicy
from linecrew.agent.store import AgentStore
from linecrew.shared.db import Database
from linecrew.shared.llm import LlmConfig, LocalLLM


def _copy_user_documents(cfg: AgentConfig, kb: KnowledgeBase) -> None:
    device_db = cfg.data_dir / "agent.db"
    if not device_db.exists():
        return
    device_kb = KnowledgeBase(Database(device_db), kb.lexicon)
    for d in device_kb.documents():
        if d["origin"] == USER:
            kb.add(device_kb.document(str(d["name"])), origin=USER, source=str(d["source"]))


def scratch_knowledge(cfg: AgentConfig, folder: Path) -> KnowledgeBase:
    kb = KnowledgeBase(Database(folder / "kb.db"), Lexicon.for_device(cfg.data_dir))
    kb.ensure_indexed(cfg.knowledge_dir or SAMPLE_KB)
    _copy_user_documents(cfg, kb)
    return kb


def scratch_assistant(cfg: AgentConfig, folder: Path) -> Assistant:
    store = AgentStore(folder / "device", device_id="eval")
    kb = KnowledgeBase(store.db, Lexicon.for_device(cfg.data_dir))
    kb.ensure_indexed(cfg.knowledge_dir or SAMPLE_KB)
    _copy_user_documents(cfg, kb)
    llm = LocalLLM(LlmConfig(model_path=cfg.llm_model, threads=cfg.threads, n_ctx=cfg.llm_ctx,
                             gpu_layers=cfg.llm_gpu_layers))
    return Assistant(store, llm, kb, policy=RoutingPolicy(escalate_below=cfg.escalate_below),
                     config=AssistantConfig(intent_mode=cfg.intent_mode, answer_mode=cfg.answer_mode,
                                            answer_budget_ms=cfg.answer_budget_ms),
                     answerer=Answerer(kb, encoder_dir=cfg.embedding_model))
