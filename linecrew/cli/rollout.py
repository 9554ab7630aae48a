"""``linecrew rollout ...``: staged rollouts over the admin API, with a live progress view."""

from __future__ import annotations

import json
import time
from typing import Any

import click

from linecrew.cli._common import _friendly, json_option, token_option, url_option
from linecrew.tools.admin_client import AdminClient

TERMINAL = ("finished", "aborted", "rolled_back")


@click.group()
def rollout() -> None:
    """Staged rollouts of a release: waves, health gates, pause/resume, automatic rollback."""


@rollout.command("create")
@url_option
@token_option
@click.argument("release")
@click.argument("version", type=int)
@click.option("--class", "classes", multiple=True, help="device classes (default: all the release supports)")
@click.option("--tag", "tags", multiple=True, help="devices must carry every tag given")
@click.option("--waves", default="1,10,50,100", show_default=True, help="cumulative percent per wave")
@click.option("--canary-count", type=int, default=None, help="make the first wave this many devices")
@click.option("--soak", "soak_s", type=float, default=300, show_default=True, help="seconds a wave stays healthy")
@click.option("--success", type=float, default=0.95, show_default=True, help="healthy share to advance")
@click.option("--error", type=float, default=0.05, show_default=True, help="failed share (per class) that stops")
@click.option("--timeout", "timeout_s", type=float, default=1800, show_default=True,
              help="seconds an online device may stay silent")
@click.option("--rate", "rate_per_s", type=float, default=20, show_default=True, help="new offers per second")
@click.option("--bandwidth", "bandwidth", type=float, default=50e6, show_default=True, help="bytes/s for chunks")
@click.option("--on-failure", type=click.Choice(["rollback", "pause"]), default="rollback", show_default=True,
              help="what a failed health gate does")
@click.option("--no-approval", is_flag=True, help="start without a separate approval step")
@click.option("--reason", default="", help="why (kept in the audit log)")
@json_option
@_friendly
def rollout_create(url: str, token: str | None, release: str, version: int, classes: tuple[str, ...],
                   tags: tuple[str, ...], waves: str, canary_count: int | None, soak_s: float, success: float,
                   error: float, timeout_s: float, rate_per_s: float, bandwidth: float, on_failure: str,
                   no_approval: bool, reason: str, as_json: bool) -> None:
    """Create a rollout of RELEASE VERSION (waiting for approval unless --no-approval)."""
    gate = {"soak_s": soak_s, "success_threshold": success, "error_threshold": error, "device_timeout_s": timeout_s}
    try:
        percents = [float(p) for p in waves.split(",") if p.strip()]
    except ValueError as e:
        raise click.BadParameter(f"{waves!r}: give percents like 1,10,50,100") from e
    wave_list: list[dict[str, Any]] = [{"percent": p, **gate} for p in percents]
    if canary_count:
        wave_list[0] = {"count": canary_count, **gate}
    spec = {"release": release, "version": version, "device_classes": list(classes), "tags": list(tags),
            "waves": wave_list, "on_failure": on_failure, "rate_per_s": rate_per_s, "bandwidth_bytes_s": bandwidth,
            "require_approval": not no_approval}
    st = AdminClient(url, token).create_rollout(spec, reason)
    click.echo(json.dumps(st) if as_json else f"rollout {st['id']} {st['state']}")


def _action(name: str, doc: str) -> None:
    @rollout.command(name, help=doc)
    @url_option
    @token_option
    @click.argument("rollout_id")
    @click.option("--reason", default="", help="why (kept in the audit log)")
    @click.option("--json", "as_json", is_flag=True, help="print one JSON document instead of text")
    @_friendly
    def cmd(url: str, token: str | None, rollout_id: str, reason: str, as_json: bool) -> None:
        st = AdminClient(url, token).act(rollout_id, name, reason)
        click.echo(json.dumps(st) if as_json else f"rollout {st['id']} {st['state']}")


for _name, _doc in [("approve", "Approve a rollout (release-manager)."),
                    ("start", "Start an approved rollout (release-manager)."),
                    ("pause", "Stop offering and advancing; devices already updating carry on."),
                    ("resume", "Resume a paused rollout."),
                    ("abort", "Stop for good; devices not offered yet are cancelled."),
                    ("rollback", "Send every device that took the release back to its previous one.")]:
    _action(_name, _doc)


@rollout.command("status")
@url_option
@token_option
@click.argument("rollout_id", required=False)
@click.option("--watch", is_flag=True, help="live view until the rollout ends")
@json_option
@_friendly
def rollout_status(url: str, token: str | None, rollout_id: str | None, watch: bool, as_json: bool) -> None:
    """One rollout (waves, counts per state, bytes sent), or every rollout without ROLLOUT_ID."""
    client = AdminClient(url, token)
    if rollout_id is None:
        for r in client.rollouts():
            click.echo(json.dumps(r) if as_json else
                       f"{r['id']}  {r['release']} v{r['version']}  {r['state']}  {r['counts']}")
        return
    if not watch:
        st = client.rollout(rollout_id)
        if as_json:
            click.echo(json.dumps(st))
        else:
            from rich.console import Console

            Console().print(_table(st))
        return
    from rich.live import Live

    with Live(_table(client.rollout(rollout_id)), refresh_per_second=2) as live:
        while True:
            st = client.rollout(rollout_id)
            live.update(_table(st))
            if st["state"] in TERMINAL:
                break
            time.sleep(1.0)


def _table(st: dict[str, Any]) -> Any:
    from rich.table import Table

    t = Table(title=f"rollout {st['id']}  {st['release']} v{st['version']}  [bold]{st['state']}[/bold]  "
                    f"{st['bytes_sent'] / 1e6:.2f} MB sent", caption=st.get("reason") or None)
    for col in ("wave", "size", "state", "healthy", "working", "waiting", "failed", "rolled back"):
        t.add_column(col, justify="right" if col not in ("state",) else "left")
    for w in st["waves"]:
        c = w["counts"]
        working = sum(c.get(k, 0) for k in ("scheduled", "offered", "installing"))
        failed = c.get("failed", 0) + c.get("timed_out", 0)
        t.add_row(str(w["idx"] + 1), str(w["size"]), w["state"], str(c.get("healthy", 0)), str(working),
                  str(c.get("waiting", 0)), str(failed), str(c.get("rolled_back", 0) + c.get("rolling_back", 0)))
    return t
