"""Configuration loading: a TOML file per role, then environment variables, then explicit flags.

Precedence, lowest first: documented defaults in the settings class, the TOML file, environment
variables (``LINECREW_AGENT_*`` / ``LINECREW_SERVER_*``), and keyword overrides from the CLI.

Which file: ``--config PATH`` if given, else ``$LINECREW_CONFIG``, else the first of ``./ROLE.toml``,
``~/.config/linecrew/ROLE.toml`` and ``/etc/linecrew/ROLE.toml`` that exists (``ROLE`` is ``agent`` or
``server``). So an admin command run beside a running server reads that server's file, not defaults.
A typo or a wrong type is one ``ConfigError`` line naming the key and the file.
"""

from __future__ import annotations

import os
import threading
import tomllib
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from pydantic import PrivateAttr, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, TomlConfigSettingsSource

from linecrew.shared.errors import ConfigError

_lock = threading.Lock()
_toml_path: Path | None = None

S = TypeVar("S", bound="TomlSettings")
ENV_CONFIG = "LINECREW_CONFIG"


def search_path(role: str) -> list[Path]:
    """Where a ``ROLE.toml`` is looked for when neither ``--config`` nor ``$LINECREW_CONFIG`` names one."""
    return [Path(f"{role}.toml"), Path.home() / ".config" / "linecrew" / f"{role}.toml",
            Path("/etc/linecrew") / f"{role}.toml"]


def find_config(role: str, explicit: Path | None = None) -> Path | None:
    """The config file in force for ``role``; a path that was asked for but does not exist is an error."""
    asked = explicit or (Path(os.environ[ENV_CONFIG]) if os.environ.get(ENV_CONFIG) else None)
    if asked is not None:
        if not asked.is_file():
            raise ConfigError(f"config file {asked} not found")
        return asked
    return next((p for p in search_path(role) if p.is_file()), None)


def _describe(e: ValidationError, source: Path | None) -> str:
    where = str(source) if source else "the environment or flags"
    first = e.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "(top level)"
    if first["type"] == "extra_forbidden":
        return f"{where}: unknown key '{key}'"
    more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
    return f"{where}: key '{key}': {first['msg']}{more}"


class TomlSettings(BaseSettings):
    role: ClassVar[str] = "linecrew"
    _source: Path | None = PrivateAttr(None)

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

    @property
    def source(self) -> Path | None:
        """The file these settings were read from (``None``: defaults, environment and flags only)."""
        return self._source

    @classmethod
    def load(cls: type[S], path: Path | None = None, **overrides: Any) -> S:
        """Build the settings; ``None`` overrides are ignored so unset CLI flags do not mask the file."""
        global _toml_path
        source = find_config(cls.role, Path(path) if path else None)
        given = {k: v for k, v in overrides.items() if v is not None}
        with _lock:
            _toml_path = source
            try:
                settings = cls(**given)
            except ValidationError as e:
                raise ConfigError(_describe(e, source)) from e
            except tomllib.TOMLDecodeError as e:
                raise ConfigError(f"{source}: not valid TOML: {e}") from e
            finally:
                _toml_path = None
        settings._source = source
        return settings
