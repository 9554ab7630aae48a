"""Admin commands on the server's data: tokens listed with local times, never printing the secret; no database is
created by mistake; init makes one."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from linecrew.cli import main


def _run(*args: str, code: int = 0) -> str:
    out = CliRunner().invoke(main, list(args))
    assert out.exit_code == code, out.output
    return out.output


def test_admin_commands_refuse_a_folder_without_a_server_and_init_makes_one(tmp_path: Path) -> None:
    d = str(tmp_path / "srv")
    assert "no server database" in _run("server", "token", "list", "--data-dir", d, code=1)
    assert not (tmp_path / "srv" / "server.db").exists()
    assert "server data ready" in _run("server", "init", "--data-dir", d)
    assert (tmp_path / "srv" / "server.db").exists()


def test_token_list_shows_roles_state_and_local_times_but_never_the_token(tmp_path: Path) -> None:
    d = str(tmp_path)
    _run("server", "init", "--data-dir", d)
    token = _run("server", "token", "create", "--data-dir", d, "--name", "rita", "--role", "release-manager").strip()
    _run("server", "token", "create", "--data-dir", d, "--name", "bot", "--role", "admin", "--ttl-days", "0")
    _run("server", "token", "revoke", "--data-dir", d, "rita")
    text = _run("server", "token", "list", "--data-dir", d)
    assert token not in text
    rita, bot = sorted(text.splitlines(), key=lambda line: not line.startswith("rita"))
    assert "release-manager" in rita and "revoked" in rita and "T" in rita.split("created ")[1][:20]
    assert "active" in bot and "expires never" in bot
    rows = json.loads(_run("server", "token", "list", "--data-dir", d, "--json"))
    assert {r["name"] for r in rows} == {"rita", "bot"} and all("token" not in k for k in rows[0])


def test_dead_letters_are_shown_with_their_reason(tmp_path: Path) -> None:
    from linecrew.server.store import ServerStore

    store = ServerStore(tmp_path)
    store.inbox.dead_letter(None, "dev-bad", "m-00000001", "telemetry", "non_finite: non-finite number NaN",
                            b'{"id":"m-00000001","payload":{"metrics":{"t":NaN}}}')
    store.close()
    assert not any(b'"t":NaN' in f.read_bytes() for f in tmp_path.glob("server.db*")), "sealed at rest"
    text = _run("server", "dead-letters", "--data-dir", str(tmp_path))
    assert "dev-bad" in text and "non_finite" in text
    [row] = json.loads("[" + _run("server", "dead-letters", "--data-dir", str(tmp_path), "--json").strip() + "]")
    assert "NaN" in row["body"], "the body is opened for the operator (sealed at rest)"
