"""The resident agent's local door: the device screen and the CLI talk to it over loopback HTTP.

``DeviceService`` is what the technician's device does for them, behind one lock (ask, confirm, note, what the
screen shows); ``LocalServer`` (the standard library's threading HTTP server, loopback only) serves the screen
page (no external assets: it works with no network), its state as JSON, and the actions. Actions need the
token the agent writes to its data folder (mode 0600) and puts into the page it serves, so another local
user cannot drive the device blind; bodies over 64 KB are refused.
"""

from __future__ import annotations

import importlib.resources
import json
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from linecrew.agent import walkthrough
from linecrew.agent.speech import Partial
from linecrew.agent.tts import Speaker
from linecrew.agent.voice import Turn
from linecrew.shared.fsutil import atomic_write

log = logging.getLogger(__name__)

SCREEN = Path(str(importlib.resources.files("linecrew.agent").joinpath("screen")))
# the page's own files, with their types (the icon: browsers ask for one, and a 404 is an error on the page)
_ASSETS = {"/screen.js": "text/javascript; charset=utf-8", "/screen.css": "text/css; charset=utf-8",
           "/icon.svg": "image/svg+xml"}
URL_FILE, TOKEN_FILE = "agent.url", "agent.token"
MAX_BODY = 64 * 1024


def battery() -> int | None:
    """Battery percent from the kernel (the first BAT* supply), or None on mains-only hardware."""
    for cap in sorted(Path("/sys/class/power_supply").glob("BAT*/capacity")):
        try:
            return int(cap.read_text().strip())
        except (OSError, ValueError):
            continue
    return None


class DeviceService:
    def __init__(self, assistant: Any, *, speaker: Speaker | None = None) -> None:
        self.assistant = assistant
        self.store = assistant.store
        self.speaker = speaker
        self._lock = threading.Lock()
        self.replies: deque[dict[str, Any]] = deque(maxlen=8)
        self.transcript: deque[str] = deque(maxlen=12)
        self.partial = ""

    # ------------------------------------------------------------------ actions
    def ask(self, text: str, alternatives: Sequence[str] = ()) -> dict[str, Any]:
        with self._lock:
            reply = self.assistant.ask(text, alternatives=alternatives)
        self.remember(text, reply)
        if self.speaker is not None:
            self.speaker.stop()
            threading.Thread(target=self.speaker.say, args=(reply.answer,), name="speak", daemon=True).start()
        return dict(reply.as_dict())

    def confirm(self, yes: bool) -> dict[str, Any]:
        with self._lock:
            reply = self.assistant.confirm(yes)
        self.remember("yes" if yes else "no", reply)
        return dict(reply.as_dict())

    def note(self, text: str, job_id: str | None) -> dict[str, Any]:
        return {"note_id": self.store.add_note(text, job_id=job_id)}

    def heard(self, ev: Partial | Turn) -> None:
        """The live transcript: the words being said, then each turn."""
        if isinstance(ev, Partial):
            self.partial = ev.text
        else:
            self.transcript.appendleft(ev.text)
            self.partial = ""

    def remember(self, text: str, reply: Any) -> None:
        """An answer for the screen (asked here, or by voice in the agent's voice loop)."""
        self.replies.appendleft({"at": time.time(), "question": text, "answer": reply.answer, "intent": reply.intent,
                                 "citations": list(reply.citations), "abstained": reply.abstained,
                                 "grounded": reply.grounded})

    # ------------------------------------------------------------------ what the screen shows
    def state(self) -> dict[str, Any]:
        pending = self.assistant.pending()
        walk = self.assistant.walk_state()
        steps: list[dict[str, Any]] = []
        if walk is not None:
            for i, stop in enumerate(walkthrough.plan(self.assistant.kb.section_units(walk.doc, walk.section))):
                steps.append({"n": i + 1, "text": stop[-1].text, "warnings": [u.text for u in stop[:-1]],
                              "current": i == walk.index, "done": i < walk.index})
        link = self.store.get("link")
        return {
            "device_id": self.store.device_id,
            "job": self.store.get("current_job"),
            "walkthrough": None if walk is None else {**asdict(walk), "steps": steps},
            "transcript": list(self.transcript), "partial": self.partial,
            "answers": list(self.replies),
            "pending": None if pending is None else {"readback": pending.readback, "intent": pending.intent},
            "outbox": {"depth": self.store.outbox.depth(), "by_type": self.store.outbox.depth_by_type()},
            "expert_answers": [{"text": a["text"], "source": a["source"], "kind": a["kind"], "seen": bool(a["seen"])}
                               for a in self.store.answers()[-5:]][::-1],
            "link": link if isinstance(link, dict) else {"online": False},
            "battery": battery(),
        }



class LocalServer:
    """Loopback HTTP: ``/`` the screen, ``/api/state``, ``POST /api/ask|confirm|note`` (token), ``/healthz``."""

    def __init__(self, service: DeviceService, *, port: int = 0, folder: Path | None = None) -> None:
        self.service = service
        self.token = secrets.token_urlsafe(24)
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), _handler(self))
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.folder = folder
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="local-api", daemon=True)
        self._thread.start()
        if self.folder is not None:  # where the CLI finds the running agent
            atomic_write(self.folder / TOKEN_FILE, self.token.encode(), mode=0o600)
            atomic_write(self.folder / URL_FILE, self.url.encode())

    def stop(self) -> None:
        if self.folder is not None:
            (self.folder / URL_FILE).unlink(missing_ok=True)
        self.httpd.shutdown()
        self.httpd.server_close()


def _page(token: str) -> bytes:
    html = (SCREEN / "index.html").read_text(encoding="utf-8")
    return html.replace("{{TOKEN}}", token).encode()


def _handler(server: LocalServer) -> type[BaseHTTPRequestHandler]:
    service = server.service

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # requests carry the technician's words
            log.debug("local api %s", self.command)

        def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Security-Policy", "default-src 'self'; style-src 'self'; script-src 'self'")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, obj: Any) -> None:
            self._send(status, json.dumps(obj).encode())

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/":
                self._send(200, _page(server.token), "text/html; charset=utf-8")
            elif path in _ASSETS:
                self._send(200, (SCREEN / path[1:]).read_bytes(), _ASSETS[path])
            elif path == "/api/state":
                self._json(200, service.state())
            elif path == "/healthz":
                self._json(200, {"ok": True})
            else:
                self._json(404, {"error": "not found"})

        def do_POST(self) -> None:
            if self.headers.get("X-Linecrew-Token") != server.token:
                self._json(HTTPStatus.FORBIDDEN, {"error": "missing or wrong token"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self._json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": f"body over {MAX_BODY} bytes"})
                return
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
                if not isinstance(body, dict):
                    raise ValueError("an object is expected")
            except ValueError as e:
                self._json(400, {"error": f"not JSON: {e}"})
                return
            path = self.path.split("?", 1)[0]
            alternatives = body.get("alternatives", [])
            if path == "/api/ask" and not (isinstance(alternatives, list) and all(isinstance(a, str) for a in
                                                                                 alternatives)):
                self._json(400, {"error": "alternatives must be a list of strings"})
            elif path == "/api/ask" and isinstance(body.get("text"), str) and body["text"].strip():
                self._json(200, service.ask(body["text"], alternatives))
            elif path == "/api/confirm":
                self._json(200, service.confirm(bool(body.get("yes"))))
            elif path == "/api/note" and isinstance(body.get("text"), str) and body["text"].strip():
                self._json(200, service.note(body["text"], body.get("job_id")))
            else:
                self._json(400, {"error": "unknown action or missing text"})

    return Handler
