"""A real Mosquitto, started and supervised by the server with a generated configuration.

Defaults are safe: no anonymous access; the dynamic-security plugin (``server.dynsec``) gives each device a
client bound to its own client id and a role with exactly its own topics, deny for everything else
(``$share`` groups included); a TLS listener with a certificate from the project CA; persistence on. The plain
listener is for the server's own loopback connection. A supervisor thread restarts Mosquitto if it dies.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import logging
import os
import random
import secrets
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from linecrew.server import dynsec
from linecrew.server.errors import BrokerStartError
from linecrew.server.pki import ensure_server_cert
from linecrew.shared.fsutil import atomic_write_text
from linecrew.shared.loops import IterationGuard
from linecrew.shared.mqtt import BrokerAddress
from linecrew.shared.protocol import internal_id

log = logging.getLogger(__name__)

SERVER_USER = internal_id("linecrew-server")


@dataclass(frozen=True)
class BrokerConfig:
    folder: Path
    host: str = "127.0.0.1"
    port: int = 1883
    tls_host: str = "127.0.0.1"
    tls_port: int = 8883
    hostnames: tuple[str, ...] = ("localhost", "127.0.0.1")
    max_packet_bytes: int = 256 * 1024
    max_queued_messages: int = 100_000
    max_inflight_messages: int = 1000
    mosquitto_bin: str = "mosquitto"
    extra: tuple[str, ...] = field(default_factory=tuple)  # more mosquitto.conf lines


class ManagedBroker:
    def __init__(self, config: BrokerConfig) -> None:
        self.config = config
        self.folder = config.folder
        self._proc: subprocess.Popen[bytes] | None = None
        self._stop = threading.Event()
        self._supervisor: threading.Thread | None = None
        self._lock = threading.Lock()
        self.restarts = 0
        self._control: dynsec.Control | None = None
        self._failures = 0  # restarts in a row without a stable run (backoff)
        self._spawned_at = 0.0

    # ------------------------------------------------------------------ files
    @property
    def security_file(self) -> Path:
        return self.folder / "dynamic-security.json"

    @property
    def ca_file(self) -> Path:
        return self.folder / "pki" / "ca.crt"

    @property
    def ca_pem(self) -> str:
        return self.ca_file.read_text()

    def _server_password(self) -> str:
        path = self.folder / "server.secret"
        if not path.exists():
            atomic_write_text(path, secrets.token_urlsafe(24), mode=0o600)
        return path.read_text().strip()

    def prepare(self) -> None:
        """Write certificates, the security plugin's file and the config (idempotent; the broker is not running)."""
        c = self.config
        (self.folder / "data").mkdir(parents=True, exist_ok=True)
        crt, key = ensure_server_cert(self.folder / "pki", list(c.hostnames))
        existing = json.loads(self.security_file.read_text()) if self.security_file.exists() else None
        security = (dynsec.initial_config(SERVER_USER, self._server_password()) if existing is None
                    else dynsec.with_server(existing, SERVER_USER, self._server_password()))
        atomic_write_text(self.security_file, json.dumps(security, indent=1), mode=0o600)
        conf = [
            "per_listener_settings false",
            "allow_anonymous false",
            f"plugin {dynsec.plugin_path()}",
            f"plugin_opt_config_file {self.security_file}",
            "persistence true",
            f"persistence_location {self.folder / 'data'}/",
            "autosave_interval 5",
            f"max_packet_size {c.max_packet_bytes}",
            f"max_queued_messages {c.max_queued_messages}",
            f"max_inflight_messages {c.max_inflight_messages}",
            "persistent_client_expiration 30d",
            f"log_dest file {self.folder / 'mosquitto.log'}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "connection_messages false",
            f"user {getpass.getuser()}",
            f"listener {c.port} {c.host}",
            "protocol mqtt",
            f"listener {c.tls_port} {c.tls_host}",
            "protocol mqtt",
            f"cafile {self.ca_file}",
            f"certfile {crt}",
            f"keyfile {key}",
            "tls_version tlsv1.2",
            *c.extra,
            "",
        ]
        atomic_write_text(self.folder / "mosquitto.conf", "\n".join(conf), mode=0o600)

    # ------------------------------------------------------------------ credentials (through the running broker)
    def add_device(self, device_id: str) -> str:
        """Create or rotate a device's client (bound to its own client id and topics); returns its password."""
        password = secrets.token_urlsafe(24)
        self._run(dynsec.device_commands(device_id, password))
        return password

    def add_client(self, username: str, topics: list[tuple[str, str]]) -> str:
        """Another client with exactly ``topics`` (benchmarks, tools); returns its password."""
        password = secrets.token_urlsafe(24)
        self._run(dynsec.add_client_commands(username, password, topics))
        return password

    def remove_device(self, device_id: str) -> None:
        """Delete the device's client and role; a connected session of it is closed by the broker."""
        self._run(dynsec.remove_client_commands(device_id))

    def clients(self) -> list[str]:
        responses = self._run([{"command": "listClients", "verbose": False, "count": -1, "offset": 0}])
        return list(responses[0].get("data", {}).get("clients", []))

    def _run(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        with self._lock:
            if self._control is None:
                self._control = dynsec.Control(self.config.host, self.config.port, SERVER_USER,
                                               self._server_password(), internal_id(f"broker-control-{os.getpid()}"))
            return self._control.run(commands)

    def server_address(self) -> BrokerAddress:
        return BrokerAddress(
            f"mqtt://{self.config.host}:{self.config.port}", SERVER_USER, self._server_password()
        )

    def device_url(self, host: str | None = None) -> str:
        return f"mqtts://{host or self.config.hostnames[0]}:{self.config.tls_port}"

    # ------------------------------------------------------------------ process
    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc and self._proc.poll() is None else None

    def start(self, *, supervise: bool = True) -> None:
        self.prepare()
        self._reclaim_stale()
        for host, port in ((self.config.host, self.config.port), (self.config.tls_host, self.config.tls_port)):
            ensure_port_free(host, port, what="MQTT")
        self._spawn()
        if supervise:
            self._stop.clear()
            self._supervisor = threading.Thread(target=self._supervise, name="broker-supervisor", daemon=True)
            self._supervisor.start()

    @property
    def _pid_file(self) -> Path:
        return self.folder / "mosquitto.pid"

    def _reclaim_stale(self) -> None:
        """A broker of ours that outlived its server (SIGKILL, power cut) still holds the ports and an old password
        file: stop it, so the broker that starts now is the one that knows every device."""
        try:
            pid = int(self._pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return
        if str(self.folder / "mosquitto.conf").encode() not in cmdline:
            return  # the pid was reused by something else
        log.warning("stopping a stale broker of this server (pid %d) left by an earlier run", pid)
        os.kill(pid, signal.SIGTERM)
        end = time.monotonic() + 10
        while time.monotonic() < end and Path(f"/proc/{pid}").exists():
            time.sleep(0.05)
        if Path(f"/proc/{pid}").exists():
            os.kill(pid, signal.SIGKILL)
        self._pid_file.unlink(missing_ok=True)

    def _spawn(self) -> None:
        try:
            self._proc = subprocess.Popen(
                [self.config.mosquitto_bin, "-c", str(self.folder / "mosquitto.conf")],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=_die_with_parent,
            )
        except FileNotFoundError as e:
            raise BrokerStartError("mosquitto not found: install the mosquitto package") from e
        atomic_write_text(self._pid_file, f"{self._proc.pid}\n", mode=0o600)
        self._spawned_at = time.monotonic()
        if not _wait_port(self.config.host, self.config.port, 10.0, self._proc):
            err = b""
            if self._proc.poll() is not None and self._proc.stderr:
                err = self._proc.stderr.read()
            self._proc.kill()
            raise BrokerStartError(
                f"mosquitto did not listen on {self.config.host}:{self.config.port}: "
                f"{err.decode(errors='replace').strip() or 'see ' + str(self.folder / 'mosquitto.log')}"
            )

    def _supervise(self) -> None:
        guard = IterationGuard("broker supervisor", log, pause_s=1.0, stop=self._stop)
        while not self._stop.wait(0.2):
            guard.run(self._restart_if_exited)

    def _restart_if_exited(self) -> None:
        """Restart a broker that died, backing off while it keeps dying (a port taken, a broken config)."""
        proc = self._proc
        if proc is None or proc.poll() is None:
            if proc is not None and time.monotonic() - self._spawned_at > STABLE_AFTER_S:
                self._failures = 0
            return
        delay = min(RESTART_BACKOFF_CAP_S, 0.5 * 2 ** (self._failures - 1)) if self._failures else 0.0
        log.warning("mosquitto exited with %s; restarting in %.1f s", proc.returncode, delay)
        if delay and self._stop.wait(delay):
            return
        self._failures += 1
        self._spawn()
        self.restarts += 1

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            if self._control is not None:
                self._control.close()
                self._control = None
        if self._supervisor:
            self._supervisor.join(timeout=5)
        if self._proc and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()


STABLE_AFTER_S = 30.0
RESTART_BACKOFF_CAP_S = 30.0


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the server dies, even by SIGKILL (Linux), so no broker outlives it."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def ensure_port_free(host: str, port: int, *, what: str) -> None:
    """Stop start-up with a clear message when another process holds a port we need."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            raise BrokerStartError(f"{what} port {host}:{port} is already in use ({e.strerror}): stop what holds "
                                   "it or choose another port in the config") from e


def _wait_port(host: str, port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port nothing listens on, for a listener started soon after (tests, local runs). Taken below the kernel's
    ephemeral range: a port the kernel hands out itself can go, before the listener binds it, to any outgoing
    connection as its local port ("Address already in use" when mosquitto starts). Never the same port twice in
    one process."""
    low = 32768
    with contextlib.suppress(OSError, ValueError):
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    rnd = random.SystemRandom()
    for _ in range(200):
        port = rnd.randrange(10000, max(10001, low))
        if port in _HANDED_OUT:
            continue
        with socket.socket() as s:
            try:
                s.bind(("0.0.0.0", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    with socket.socket() as s:  # nothing free below the range: let the kernel choose
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
