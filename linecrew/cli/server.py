"""``linecrew server ...``: the central server and its data."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from linecrew.cli._common import (
    _friendly,
    _open_store,
    _server_config,
    _wait_for_signal,
    config_option,
    json_option,
    local_time,
    read_manifest,
    server_dir_option,
    token_option,
    url_option,
)


@click.group()
def server() -> None:
    """The central sync server."""


@server.command("run")
@config_option
@server_dir_option
@click.option("--broker", "broker_url", default=None, help="external broker mqtt[s]://HOST:PORT")
@click.option("--http-port", type=int, default=None, help="admin API and dashboard port (default: the config's, 8700)")
@click.option("--mqtt-port", type=int, default=None,
              help="managed broker's loopback port (default: the config's, 1883)")
@click.option("--mqtts-port", type=int, default=None,
              help="managed broker's TLS port for devices (default: the config's, 8883)")
@_friendly
def server_run(config_path: Path | None, data_dir: Path | None, broker_url: str | None,
               http_port: int | None, mqtt_port: int | None, mqtts_port: int | None) -> None:
    """Run the server with its managed Mosquitto (or an external broker)."""
    from linecrew.server.app import Server

    cfg = _server_config(config_path, data_dir=data_dir, broker_url=broker_url, http_port=http_port,
                         mqtt_port=mqtt_port, mqtts_port=mqtts_port)
    srv = Server(cfg)
    try:
        srv.start()
    except BaseException:
        srv.stop()  # nothing half-started outlives a refused start
        raise
    click.echo(f"server up: http://{cfg.http_host}:{cfg.http_port}  broker {srv.broker.device_url()}", err=True)
    try:
        _wait_for_signal()
    finally:
        srv.stop()


@server.command("init")
@config_option
@server_dir_option
@_friendly
def server_init(config_path: Path | None, data_dir: Path | None) -> None:
    """Create the server's database and keys (``server run`` does it too), so releases and tokens can be set up
    before the first start; admin commands never create one."""
    from linecrew.server.store import ServerStore

    cfg = _server_config(config_path, data_dir=data_dir)
    ServerStore(cfg.data_dir, database_url=cfg.database_url).close()
    click.echo(f"server data ready in {cfg.data_dir}" + (" (database at its URL)" if cfg.database_url else ""))


@server.command("enroll-token")
@config_option
@server_dir_option
@click.option("--ttl", "ttl_s", type=int, default=None, help="seconds the token stays valid")
@click.option("--device-class", default=None, help="restrict the token to one device class")
@click.option("--tag", "tags", multiple=True, help="tag the enrolled device carries (rollouts select by tags)")
@_friendly
def server_enroll_token(config_path: Path | None, data_dir: Path | None, ttl_s: int | None,
                        device_class: str | None, tags: tuple[str, ...]) -> None:
    """Issue a one-time, expiring enrollment token (printed once, stored hashed). It carries the hash of this
    server's CA, so the device it enrolls checks it is talking to this server (see docs/security.md)."""
    from linecrew.server.app import server_ca_pem
    from linecrew.shared.identity import pinned_token

    cfg = _server_config(config_path, data_dir=data_dir)
    store = _open_store(cfg)
    secret = store.registry.create_enroll_token(ttl_s=ttl_s or cfg.enroll_token_ttl_s, device_class=device_class,
                                                tags=list(tags))
    click.echo(pinned_token(secret, server_ca_pem(cfg)))


@server.command("tag")
@config_option
@server_dir_option
@click.argument("device_id")
@click.argument("tags", nargs=-1)
@_friendly
def server_tag(config_path: Path | None, data_dir: Path | None, device_id: str, tags: tuple[str, ...]) -> None:
    """Set a device's tags (replacing the old ones)."""
    _open_store(_server_config(config_path, data_dir=data_dir)).set_tags(device_id, list(tags))


@server.group("token")
def server_token() -> None:
    """Admin API tokens with roles: admin, release-manager, planner, expert."""


@server_token.command("create")
@config_option
@server_dir_option
@click.option("--name", required=True, help="who holds it (shown in the audit log)")
@click.option("--role", "roles", multiple=True, required=True,
              type=click.Choice(["admin", "release-manager", "planner", "expert"]), help="role (repeat for more)")
@click.option("--ttl-days", type=click.FloatRange(min=0), default=90, show_default=True,
              help="days until the token stops working (0: never)")
@_friendly
def server_token_create(config_path: Path | None, data_dir: Path | None, name: str, roles: tuple[str, ...],
                        ttl_days: float) -> None:
    """Create a token; it is printed once and stored only as a hash."""
    store = _open_store(_server_config(config_path, data_dir=data_dir))
    click.echo(store.tokens.create(name, roles, ttl_s=ttl_days * 86400))


@server_token.command("list")
@config_option
@server_dir_option
@json_option
@_friendly
def server_token_list(config_path: Path | None, data_dir: Path | None, as_json: bool) -> None:
    """Every token's holder, roles, creation, expiry and revocation (never the token itself)."""
    rows = _open_store(_server_config(config_path, data_dir=data_dir)).tokens.list()
    if as_json:
        click.echo(json.dumps(rows))
        return
    now = time.time()
    for r in rows:
        state = ("revoked" if r["revoked"] is not None else
                 "expired" if r["expires"] is not None and float(r["expires"]) <= now else "active")
        click.echo(f"{r['name']:<20} {','.join(r['roles']):<28} {state:<8} created {local_time(r['created'])}"
                   f"  expires {local_time(r['expires']) if r['expires'] is not None else 'never'}")


@server_token.command("revoke")
@config_option
@server_dir_option
@click.argument("name")
@_friendly
def server_token_revoke(config_path: Path | None, data_dir: Path | None, name: str) -> None:
    """Revoke every token of NAME."""
    n = _open_store(_server_config(config_path, data_dir=data_dir)).tokens.revoke(name)
    click.echo(f"{n} token(s) revoked")


@server.command("devices")
@config_option
@server_dir_option
@json_option
@_friendly
def server_devices(config_path: Path | None, data_dir: Path | None, as_json: bool) -> None:
    """List enrolled devices."""
    store = _open_store(_server_config(config_path, data_dir=data_dir))
    for d in store.registry.all():
        row = {"id": d.id, "class": d.device_class, "online": d.online, "last_seen": d.last_seen,
               "messages": store.log.count(d.id)}
        click.echo(json.dumps(row) if as_json else "  ".join(f"{k}={local_time(v) if k == 'last_seen' else v}"
                                                             for k, v in row.items()))


@server.command("messages")
@config_option
@server_dir_option
@click.option("--device", "device_id", default=None, help="only this device's messages")
@click.option("--limit", type=int, default=20, show_default=True, help="newest messages shown")
@json_option
@_friendly
def server_messages(config_path: Path | None, data_dir: Path | None, device_id: str | None, limit: int,
                    as_json: bool) -> None:
    """Show the latest applied device messages (decrypted for the operator)."""
    store = _open_store(_server_config(config_path, data_dir=data_dir))
    for m in store.log.messages(device_id, limit):
        click.echo(json.dumps(m) if as_json else f"{local_time(m['received'])}  {m['device_id']}  {m['type']}"
                   f"  {m['stream']}#{m['seq']}  {json.dumps(m['payload'])}")


@server.command("dead-letters")
@config_option
@server_dir_option
@click.option("--device", "device_id", default=None, help="only this device's")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, help="newest shown")
@json_option
@_friendly
def server_dead_letters(config_path: Path | None, data_dir: Path | None, device_id: str | None, limit: int,
                        as_json: bool) -> None:
    """Device messages the server refused, with the reason (bodies opened for the operator)."""
    store = _open_store(_server_config(config_path, data_dir=data_dir))
    for d in store.inbox.dead_letters(device_id, limit):
        click.echo(json.dumps(d) if as_json else f"{local_time(d['at'])}  {d['peer']}  {d['id'] or '-'}  {d['reason']}")


@server.command("send")
@config_option
@server_dir_option
@click.option("--device", "device_id", required=True, help="the device to send it to")
@click.option("--ttl", "ttl_s", type=float, default=None, help="seconds after which it must not act")
@click.argument("name")
@click.argument("args_json", default="{}")
@_friendly
def server_send(config_path: Path | None, data_dir: Path | None, device_id: str, ttl_s: float | None,
                name: str, args_json: str) -> None:
    """Queue a command to a device through the server outbox (a running server delivers it)."""
    try:
        args = json.loads(args_json)
    except json.JSONDecodeError as e:
        raise click.BadParameter(f"ARGS_JSON is not JSON: {e}") from e
    store = _open_store(_server_config(config_path, data_dir=data_dir))
    message_id = store.send_command(device_id, name, args, ttl_s=ttl_s, actor="cli")
    click.echo(f"queued {message_id} for {device_id}")


@server.group("escalations")
def server_escalations() -> None:
    """Questions waiting for a human expert."""


@server_escalations.command("list")
@config_option
@server_dir_option
@click.option("--all", "show_all", is_flag=True, help="answered ones too")
@json_option
@_friendly
def server_escalations_list(config_path: Path | None, data_dir: Path | None, show_all: bool, as_json: bool) -> None:
    store = _open_store(_server_config(config_path, data_dir=data_dir))
    for e in store.escalations.list(status=None if show_all else "open"):
        if as_json:
            click.echo(json.dumps(e))
        else:
            click.echo(f"{e['id']}  {local_time(e['created'])}  {e['device_id']}  {e['intent']}  [{e['status']}]"
                       f"  {e['question']}")


@server_escalations.command("answer")
@config_option
@server_dir_option
@click.option("--expert", default="expert", help="who answers")
@click.argument("escalation_id")
@click.argument("answer")
@_friendly
def server_escalations_answer(config_path: Path | None, data_dir: Path | None, expert: str, escalation_id: str,
                              answer: str) -> None:
    """Answer an escalation; the answer travels to the device through the durable outbox."""
    store = _open_store(_server_config(config_path, data_dir=data_dir))
    device = store.escalations.answer(escalation_id, answer, expert=expert)
    click.echo(f"answer queued for {device}")


@server.command("worker")
@config_option
@server_dir_option
@click.option("--id", "worker_id", required=True, help="unique worker id")
@_friendly
def server_worker(config_path: Path | None, data_dir: Path | None, worker_id: str) -> None:
    """Run a deferred-task worker (scale out: start more, on more machines)."""
    from linecrew.server.app import make_broker
    from linecrew.server.broker import ManagedBroker
    from linecrew.server.workers import TaskWorker, default_handlers
    from linecrew.shared.llm import LlmConfig

    cfg = _server_config(config_path, data_dir=data_dir)
    broker = make_broker(cfg)
    address = broker.server_address() if isinstance(broker, ManagedBroker) else broker.address
    worker = TaskWorker(address, worker_id=worker_id,
                        handlers=default_handlers(LlmConfig(model_path=cfg.worker_llm_model,
                                                            threads=cfg.worker_threads)))
    worker.start()
    try:
        _wait_for_signal()
    finally:
        worker.stop()


@server.group("release")
def server_release() -> None:
    """Releases this server delivers to devices (delta or full, whichever is smaller for each)."""


@server_release.command("add")
@config_option
@server_dir_option
@click.argument("manifest", type=click.Path(exists=True, path_type=Path))
@click.argument("model", type=click.Path(exists=True, path_type=Path))
@click.option("--delta", "deltas", type=click.Path(exists=True, path_type=Path), multiple=True,
              help="a delta listed in the release (repeat for several)")
@_friendly
def server_release_add(config_path: Path | None, data_dir: Path | None, manifest: Path, model: Path,
                       deltas: tuple[Path, ...]) -> None:
    """Register a signed release with its deltas; ship it to devices with 'linecrew rollout create'."""
    store = _open_store(_server_config(config_path, data_dir=data_dir))
    doc = read_manifest(manifest)
    store.releases.add(doc, model, list(deltas))
    click.echo(f"{doc['signed']['name']} v{doc['signed']['version']} registered with {len(deltas)} delta(s);"
               " ship it with 'linecrew rollout create'")


@server_release.command("offers")
@config_option
@server_dir_option
@json_option
@_friendly
def server_release_offers(config_path: Path | None, data_dir: Path | None, as_json: bool) -> None:
    """Offers made to devices and their state."""
    for o in _open_store(_server_config(config_path, data_dir=data_dir)).releases.offers():
        click.echo(json.dumps(o) if as_json else f"{o['id']}  {local_time(o['created'])}  {o['device_id']}"
                   f"  {o['state']}  {o.get('progress') or 0:.0%}" + (f"  {o['error']}" if o.get("error") else ""))


@server.command("decommission")
@url_option
@token_option
@click.argument("device_id")
@click.option("--reason", required=True, help="why (kept in the audit log): lost, replaced, scrapped, ...")
@_friendly
def server_decommission(url: str, token: str | None, device_id: str, reason: str) -> None:
    """Retire a device through the running server (admin): its registration, queued messages and broker
    credentials go; the same id can enroll again with a new token."""
    from linecrew.tools.admin_client import AdminClient

    out = AdminClient(url, token).decommission(device_id, reason)
    click.echo(f"decommissioned {device_id}; {out['dropped_messages']} queued message(s) dropped")
