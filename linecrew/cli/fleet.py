"""``linecrew fleet simulate``: simulated devices for load tests and rollout rehearsals."""

from __future__ import annotations

import json
import random
import signal
import threading
import time
from pathlib import Path

import click

from linecrew.cli._common import _friendly, token_option, url_option
from linecrew.tools.admin_client import AdminClient


@click.group()
def fleet() -> None:
    """Simulated devices (real MQTT clients) for load tests, demos and rollout rehearsals."""


@fleet.command("simulate")
@url_option
@token_option
@click.option("--devices", "count", type=int, default=100, show_default=True, help="how many simulated devices")
@click.option("--classes", default="x86-dev=1", show_default=True, help="class=weight,... of the fleet")
@click.option("--tag", "tags", multiple=True, help="tags every simulated device carries")
@click.option("--fail-rate", type=float, default=0.0, help="share of devices whose health check fails")
@click.option("--fail-class", default=None, help="only this class fails (all of it, or --fail-rate of it)")
@click.option("--silent-rate", type=float, default=0.0, help="share of devices that never answer offers")
@click.option("--offline-rate", type=float, default=0.0, help="share of devices that go offline for a while")
@click.option("--offline-for", "offline_s", type=float, default=60, show_default=True,
              help="seconds the --offline-rate share stays away")
@click.option("--installed", type=click.Path(exists=True, path_type=Path), default=None,
              help="signed manifest of the release the devices run now (so deltas apply)")
@click.option("--state", "state_file", type=click.Path(path_type=Path), default=Path(".linecrew/fleet.json"),
              show_default=True, help="credentials of the simulated fleet; reused when present")
@click.option("--duration", type=float, default=None, help="seconds to run (default: until Ctrl-C)")
@_friendly
def fleet_simulate(url: str, token: str | None, count: int, classes: str, tags: tuple[str, ...], fail_rate: float,
                   fail_class: str | None, silent_rate: float, offline_rate: float, offline_s: float,
                   installed: Path | None, state_file: Path, duration: float | None) -> None:
    """Enroll (once) and run N simulated devices against a running server and its broker."""
    from linecrew.tools.simulator import choose_behaviours, enroll_fleet, load_fleet, make_fleet, save_fleet

    if state_file.exists():
        ids, ca, root = load_fleet(state_file)
        ids = ids[:count]
    else:
        weights = {k: float(v) for k, v in (c.split("=") for c in classes.split(","))}
        version = sha = None
        if installed:
            signed = json.loads(installed.read_text())["signed"]
            version, sha = int(signed["version"]), str(signed["sha256"])
        client = AdminClient(url, token)
        tokens: dict[str, list[str]] = {}

        def make_token(cls: str, tag_list: list[str]) -> str:
            if not tokens.get(cls):
                tokens[cls] = client.enroll_tokens(min(count, 1000), cls, tag_list)
            return tokens[cls].pop()

        ids, ca, root = enroll_fleet(url, make_token, count=count, classes=weights, tags=list(tags),
                                     version=version, sha256=sha)
        state_file.parent.mkdir(parents=True, exist_ok=True)
        save_fleet(state_file, ids, ca, root)
        click.echo(f"enrolled {len(ids)} simulated devices ({state_file})", err=True)
    ca_file = state_file.with_suffix(".ca.crt")
    ca_file.write_text(ca)
    sim = make_fleet(ids, ca_file=str(ca_file), root=root, behaviours=choose_behaviours(
        ids, fail_rate=fail_rate, fail_class=fail_class, silent_rate=silent_rate))
    sim.start()
    away = random.Random(1).sample(sorted(i.device_id for i in ids), int(len(ids) * offline_rate))
    sim.go_offline(away)

    def come_back() -> None:
        time.sleep(offline_s)
        sim.start(only=away)

    threading.Thread(target=come_back, daemon=True).start()
    click.echo(f"{len(ids)} devices running ({len(away)} offline for {offline_s:g} s); Ctrl-C to stop", err=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        stop.wait(duration)
    finally:
        sim.stop()
        click.echo(json.dumps({"devices": len(ids), "versions": {str(k): v for k, v in sim.versions().items()},
                               **sim.counts()}))
