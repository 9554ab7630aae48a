"""The managed broker's authentication and authorisation: Mosquitto's dynamic-security plugin.

Why not a password file and an ACL file: the ACL file grants every SUBSCRIBE (it checks only at delivery), so
a device could join the server's ``$share`` group and silently take — and lose — a share of other devices'
messages; and it cannot tie a session to its owner. With dynamic security every device is a client whose
client id must equal its username, with a role of its own listing its literal topics (publish, subscribe,
receive); the default for anything unlisted is deny, ``$share`` included. The server's role covers the topic
tree, shared subscriptions of it, and the plugin's control topic, through which devices are added and removed
while the broker runs (the plugin persists its own file).

The builders here are pure (they return JSON-ready dicts); ``Control`` is the one I/O piece: a request/response
client on the control topic.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from linecrew.server.errors import BrokerStartError
from linecrew.shared.errors import BrokerError
from linecrew.shared.protocol import TOPIC_ROOT, device_acl

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
SERVER_ROLE = "linecrew-server"
PLUGIN_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib/arm-linux-gnueabihf",
               "/usr/lib", "/usr/local/lib", "/usr/lib64")
_ACCESS = {"write": ("publishClientSend",), "read": ("subscribeLiteral", "publishClientReceive"),
           "readwrite": ("publishClientSend", "subscribeLiteral", "publishClientReceive")}


def plugin_path() -> Path:
    for d in PLUGIN_DIRS:
        p = Path(d) / "mosquitto_dynamic_security.so"
        if p.exists():
            return p
    raise BrokerStartError("mosquitto_dynamic_security.so not found: install the mosquitto package (2.0 or newer)")


def _hashed(password: str) -> dict[str, Any]:
    """The plugin's stored form: PBKDF2-SHA512, base64 (what ``mosquitto_ctrl dynsec`` writes)."""
    salt = os.urandom(12)
    iterations = 101
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, 64)
    return {"password": base64.b64encode(digest).decode(), "salt": base64.b64encode(salt).decode(),
            "iterations": iterations}


def role_name(username: str) -> str:
    return f"client-{username}"


def acls(topics: Iterable[tuple[str, str]]) -> list[dict[str, Any]]:
    return [{"acltype": t, "topic": topic, "priority": 0, "allow": True}
            for topic, access in topics for t in _ACCESS[access]]


def server_role() -> dict[str, Any]:
    patterns = [f"{TOPIC_ROOT}/#", f"$share/+/{TOPIC_ROOT}/#"]
    entries = [{"acltype": t, "topic": p, "priority": 0, "allow": True}
               for p in patterns for t in ("subscribePattern", "publishClientReceive", "publishClientSend")]
    entries += [{"acltype": t, "topic": f"{CONTROL_TOPIC}/#" if t != "publishClientSend" else CONTROL_TOPIC,
                 "priority": 0, "allow": True}
                for t in ("publishClientSend", "subscribePattern", "publishClientReceive")]
    return {"rolename": SERVER_ROLE, "acls": entries}


def initial_config(server_user: str, server_password: str) -> dict[str, Any]:
    """A fresh plugin file: deny by default; the server's own client and role."""
    return {
        "defaultACLAccess": {"publishClientSend": False, "publishClientReceive": False, "subscribe": False,
                             "unsubscribe": True},
        "clients": [{"username": server_user, "textname": "Linecrew server and workers", **_hashed(server_password),
                     "roles": [{"rolename": SERVER_ROLE}]}],
        "groups": [],
        "roles": [server_role()],
    }


def with_server(config: dict[str, Any], server_user: str, server_password: str) -> dict[str, Any]:
    """An existing plugin file with the server's client and role as they must be (password from server.secret)."""
    clients = [c for c in config.get("clients", []) if c.get("username") != server_user]
    roles = [r for r in config.get("roles", []) if r.get("rolename") != SERVER_ROLE]
    fresh = initial_config(server_user, server_password)
    return {**config, "defaultACLAccess": fresh["defaultACLAccess"], "clients": [*fresh["clients"], *clients],
            "roles": [*fresh["roles"], *roles]}


def add_client_commands(username: str, password: str, topics: Iterable[tuple[str, str]], *,
                        bind_client_id: bool = True) -> list[dict[str, Any]]:
    """Replace any earlier client of that name: a role with exactly its topics, the client bound to it."""
    role = role_name(username)
    client: dict[str, Any] = {"command": "createClient", "username": username, "password": password,
                              "roles": [{"rolename": role}]}
    if bind_client_id:
        client["clientid"] = username
    return [*remove_client_commands(username),
            {"command": "createRole", "rolename": role, "acls": acls(topics)}, client]


def remove_client_commands(username: str) -> list[dict[str, Any]]:
    return [{"command": "deleteClient", "username": username},
            {"command": "deleteRole", "rolename": role_name(username)}]


def device_commands(device_id: str, password: str) -> list[dict[str, Any]]:
    return add_client_commands(device_id, password, device_acl(device_id))


_MISSING = ("Client not found", "Role not found")  # deleting what is not there is fine


class Control:
    """Sends command lists on the plugin's control topic and waits for each answer (one request at a time)."""

    def __init__(self, host: str, port: int, username: str, password: str, client_id: str) -> None:
        self._ready = threading.Event()
        self._answer = threading.Event()
        self._responses: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id,
                                   protocol=paho.MQTTv5)
        self._client.username_pw_set(username, password)
        self._client.on_message = self._on_message
        self._client.on_connect = lambda c, u, f, rc, p: c.subscribe(f"{CONTROL_TOPIC}/response", qos=1)
        self._client.on_subscribe = lambda c, u, mid, rc, p: self._ready.set()
        self._client.connect(host, port)
        self._client.loop_start()
        if not self._ready.wait(15):
            self.close()
            raise BrokerError("no answer from the broker's dynamic-security control topic")

    def _on_message(self, client: paho.Client, userdata: object, message: paho.MQTTMessage) -> None:
        try:
            self._responses = list(json.loads(message.payload).get("responses", []))
        except ValueError:
            self._responses = [{"error": "unreadable response"}]
        self._answer.set()

    def run(self, commands: list[dict[str, Any]], timeout_s: float = 15.0) -> list[dict[str, Any]]:
        with self._lock:
            self._answer.clear()
            self._client.publish(CONTROL_TOPIC, json.dumps({"commands": commands}), qos=1)
            if not self._answer.wait(timeout_s):
                raise BrokerError(f"the broker did not answer {commands[0]['command']} within {timeout_s:g} s")
            responses = self._responses
        failed = [r for r in responses if r.get("error") and r["error"] not in _MISSING]
        if failed:
            raise BrokerError(f"broker refused {failed[0].get('command')}: {failed[0]['error']}")
        return responses

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
