"""Configuration loading: a TOML file per role, then environment variables, then explicit flags.

Precedence, lowest first: documented defaults in the settings class, the TOML file, environment
variables (``LINECREW_AGENT_*`` / ``LINECREW_SERVER_*``), and keyword overrides from the CLI.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, TypeVar

from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, TomlConfigSettingsSource

_lock = threading.Lock()
_toml_path: Path | None = None

S = TypeVar("S", bound="TomlSettings")


class TomlSettings(BaseSettings):
    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if _toml_path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=_toml_path))
        return tuple(sources)

    @classmethod
    def load(cls: type[S], path: Path | None = None, **overrides: Any) -> S:
        """Build the settings; ``None`` overrides are ignored so unset CLI flags do not mask the file."""
        global _toml_path
        if path is not None and not Path(path).exists():
            raise FileNotFoundError(f"config file {path} not found")
        given = {k: v for k, v in overrides.items() if v is not None}
        with _lock:
            _toml_path = Path(path) if path else None
            try:
                return cls(**given)
            finally:
                _toml_path = None
