"""The assistant on the sample base with a model that fails if it is ever asked: a grounded answer needs none."""

from __future__ import annotations

from concurrent.futures import Future
from pathlib import Path

from linecrew.agent.assistant import Assistant
from linecrew.agent.knowledge import SAMPLE_KB, KnowledgeBase
from linecrew.agent.store import AgentStore


class NoModel:
    version = "none@0"

    def submit(self, *a: object, **kw: object) -> Future[object]:
        raise AssertionError("a grounded answer must not need the model")

    def close(self) -> None:
        pass


def sample_assistant(folder: Path, device_id: str = "truck-7") -> Assistant:
    store = AgentStore(folder, device_id=device_id)
    kb = KnowledgeBase(store.db)
    kb.ensure_indexed(SAMPLE_KB)
    return Assistant(store, NoModel(), kb)  # type: ignore[arg-type]
