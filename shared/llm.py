"""Local LLM through llama-cpp-python: one warm model, one request queue, streamed tokens.

Rules:

* The model loads once, lazily, and stays loaded.
* Every request goes through one FIFO queue served by one thread, so no request cancels or corrupts
  another (llama.cpp contexts are not re-entrant); callers get a ``Future``.
* Prompts share a fixed prefix (the system prompt). llama.cpp keeps the evaluated tokens of the last
  request in its KV cache and re-evaluates only what differs, so the prefix is paid for once; each
  result reports how many prompt tokens were reused.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from linecrew.shared.errors import ModelError
from linecrew.shared.models import default_llm_path, resolve

log = logging.getLogger(__name__)


CHATML_STOP = ("<|im_end|>", "<|im_start|>")


def chat_prompt(user: str, system: str | None = None) -> str:
    """The ChatML prompt every bundled model (SmolLM2 and its fine-tunes) expects; the one place it is spelled."""
    head = f"<|im_start|>system\n{system}<|im_end|>\n" if system is not None else ""
    return f"{head}<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"


@dataclass(frozen=True)
class LlmConfig:
    model_path: Path | None = None
    threads: int = 2
    n_ctx: int = 2048
    max_tokens: int = 160
    temperature: float = 0.0
    repeat_penalty: float = 1.1  # small models loop without it (measured: identical numbered lines at 1.0)
    gpu_layers: int = 0  # layers offloaded to a GPU when llama.cpp was built with one (-1: all; Jetson: CUDA)


@dataclass
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    reused_prompt_tokens: int
    ttft_ms: float
    total_ms: float
    queued_ms: float
    model_version: str
    logprobs: list[dict[str, float]] = field(default_factory=list)
    cancelled: bool = False  # given up by its caller: generation stopped where it was

    @property
    def tokens_per_s(self) -> float:
        gen_s = (self.total_ms - self.ttft_ms) / 1000
        return (self.completion_tokens - 1) / gen_s if gen_s > 0 and self.completion_tokens > 1 else 0.0


@dataclass
class _Request:
    prompt: str
    max_tokens: int
    grammar: str | None
    on_token: Callable[[str], None] | None
    logprobs: int | None
    future: Future[Completion]
    submitted: float
    cancelled: threading.Event = field(default_factory=threading.Event)


def model_version(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read(1 << 20))  # header + metadata identify the file cheaply
    h.update(str(path.stat().st_size).encode())
    return f"{path.stem}@{h.hexdigest()[:12]}"


class LocalLLM:
    def __init__(self, config: LlmConfig | None = None) -> None:
        self.config = config or LlmConfig()
        self.path = resolve(self.config.model_path, default_llm_path())
        self.version = model_version(self.path)
        self._llm: Any = None
        self._queue: queue.Queue[_Request | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._requests: dict[int, _Request] = {}

    # ------------------------------------------------------------------ lifecycle
    def _load(self) -> Any:
        if self._llm is None:
            try:
                from llama_cpp import Llama

                self._llm = Llama(model_path=str(self.path), n_ctx=self.config.n_ctx,
                                  n_threads=self.config.threads, n_gpu_layers=self.config.gpu_layers,
                                  verbose=False, logits_all=False)
            except (ValueError, RuntimeError, OSError) as e:
                raise ModelError(f"cannot load model {self.path}: {e}") from e
        return self._llm

    def start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="llm", daemon=True)
                self._thread.start()

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=30)
            self._thread = None

    def tokenize(self, text: str) -> list[int]:
        return list(self._load().tokenize(text.encode(), add_bos=False, special=True))

    # ------------------------------------------------------------------ requests
    def submit(self, prompt: str, *, max_tokens: int | None = None, grammar: str | None = None,
               on_token: Callable[[str], None] | None = None, logprobs: int | None = None) -> Future[Completion]:
        self.start()
        fut: Future[Completion] = Future()
        req = _Request(prompt, max_tokens or self.config.max_tokens, grammar, on_token, logprobs, fut,
                       time.perf_counter())
        with self._lock:
            self._requests[id(fut)] = req
        fut.add_done_callback(lambda f: self._forget(f))
        self._queue.put(req)
        return fut

    def cancel(self, fut: Future[Completion]) -> None:
        """Give up a request: a queued one never runs, a running one stops at its next token (never left
        generating after its answer was given up)."""
        fut.cancel()
        with self._lock:
            req = self._requests.get(id(fut))
        if req is not None:
            req.cancelled.set()

    def _forget(self, fut: Future[Completion]) -> None:
        with self._lock:
            self._requests.pop(id(fut), None)

    def complete(self, prompt: str, **kw: Any) -> Completion:
        return self.submit(prompt, **kw).result()

    def _serve(self) -> None:
        while True:
            req = self._queue.get()
            if req is None:
                return
            if not req.future.set_running_or_notify_cancel():
                continue
            try:
                req.future.set_result(self._run(req))
            except Exception as e:
                req.future.set_exception(e if isinstance(e, ModelError) else ModelError(f"generation failed: {e}"))

    def _run(self, req: _Request) -> Completion:
        llm = self._load()
        started = time.perf_counter()
        tokens = llm.tokenize(req.prompt.encode(), add_bos=True, special=True)
        reused = _common_prefix(tokens, list(llm.input_ids[: llm.n_tokens]))
        kwargs: dict[str, Any] = {"max_tokens": req.max_tokens, "temperature": self.config.temperature,
                                  "repeat_penalty": self.config.repeat_penalty,
                                  "stream": True, "stop": list(CHATML_STOP)}
        if req.grammar:
            from llama_cpp import LlamaGrammar

            kwargs["grammar"] = LlamaGrammar.from_string(req.grammar, verbose=False)
        if req.logprobs:
            kwargs["logprobs"] = req.logprobs
        text, n, first, lps = [], 0, None, []
        for chunk in llm.create_completion(tokens, **kwargs):
            if req.cancelled.is_set():
                break  # the caller gave up: stop generating now (the stream closes with the loop)
            choice = chunk["choices"][0]
            piece = choice["text"]
            if first is None:
                first = time.perf_counter()
            n += 1
            text.append(piece)
            if choice.get("logprobs") and choice["logprobs"].get("top_logprobs"):
                lps.extend(choice["logprobs"]["top_logprobs"])
            if req.on_token:
                req.on_token(piece)
        end = time.perf_counter()
        return Completion(
            text="".join(text), prompt_tokens=len(tokens), completion_tokens=n, reused_prompt_tokens=reused,
            ttft_ms=((first or end) - started) * 1000, total_ms=(end - started) * 1000,
            queued_ms=(started - req.submitted) * 1000, model_version=self.version, logprobs=lps,
            cancelled=req.cancelled.is_set(),
        )


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
