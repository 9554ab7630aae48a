from __future__ import annotations

import os
from pathlib import Path

import pytest

from linecrew.shared.config import TomlSettings
from linecrew.shared.crypto import FieldCipher, load_or_create_secret
from linecrew.shared.db import Database, Migration
from linecrew.shared.errors import ConfigError, CryptoError, MigrationError


def test_a_migration_another_process_applied_while_this_one_waited_is_not_applied_again(tmp_path: Path) -> None:
    """Two processes open one database at once (the agent and a CLI command beside it): both read version 0, the
    other applies migration 1 first; this one must skip it, not fail with "table t already exists"."""
    migrations = [Migration(1, "t", lambda c: c.execute("CREATE TABLE t (x)")),
                  Migration(2, "u", lambda c: c.execute("CREATE TABLE u (x)"))]
    this, other = Database(tmp_path / "x.db"), Database(tmp_path / "x.db")
    stale = Database.version

    def read_then_lose_the_race(db: Database) -> int:
        seen = stale(db)
        if seen == 0 and other.version() == 0:
            other.migrate(migrations[:1])  # the other process wins the race for migration 1
        return seen

    this.version = read_then_lose_the_race.__get__(this)  # type: ignore[method-assign]
    assert this.migrate(migrations) == 2
    assert other.version() == 2
    assert [r["version"] for r in other.query("SELECT version FROM schema_version ORDER BY version")] == [1, 2]


def test_migrations_apply_once_each_in_its_own_transaction(tmp_path: Path) -> None:
    db = Database(tmp_path / "x.db")
    m1 = Migration(1, "t", lambda c: c.execute("CREATE TABLE t (x)"))
    m2 = Migration(2, "bad", lambda c: (c.execute("CREATE TABLE u (x)"), c.execute("NOT SQL")))
    assert db.migrate([m1]) == 1
    with pytest.raises(MigrationError):
        db.migrate([m1, m2])
    assert db.version() == 1
    assert db.scalar("SELECT COUNT(*) FROM sqlite_master WHERE name='u'") == 0, "failed migration rolled back"
    assert db.scalar("PRAGMA journal_mode") == "wal"


def test_field_cipher_detects_tampering_and_wrong_key(tmp_path: Path) -> None:
    c = FieldCipher.from_key_file(tmp_path / "k")
    blob = c.encrypt_text("breaker 4 code", b"row-1")
    assert c.decrypt_text(blob, b"row-1") == "breaker 4 code"
    with pytest.raises(CryptoError):
        c.decrypt(blob, b"row-2")
    with pytest.raises(CryptoError):
        c.decrypt(blob[:-1] + bytes([blob[-1] ^ 1]), b"row-1")
    with pytest.raises(CryptoError):
        FieldCipher(os.urandom(32)).decrypt(blob, b"row-1")


def test_key_file_is_private_and_loose_permissions_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "k"
    load_or_create_secret(path, 32)
    assert path.stat().st_mode & 0o777 == 0o600
    path.chmod(0o644)
    with pytest.raises(CryptoError, match="readable by others"):
        load_or_create_secret(path, 32)


def test_two_processes_creating_the_key_together_end_with_one_key(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """``agent run &`` and ``agent note`` started together both found no key file: the second must read the
    first one's key, not keep its own in memory (rows sealed with it could never be opened again)."""
    path = tmp_path / "field.key"
    first = load_or_create_secret(path, 32)
    real_exists = Path.exists
    # the other process looked before the first one's file appeared
    monkeypatch.setattr(Path, "exists", lambda self: False if self == path else real_exists(self))
    assert load_or_create_secret(path, 32) == first
    monkeypatch.undo()
    assert path.read_bytes() == first


def test_the_seal_key_is_created_once_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from linecrew.shared.e2e import load_or_create_seal_key, public_b64

    path = tmp_path / "seal.key"
    first = public_b64(load_or_create_seal_key(path))
    real_exists = Path.exists
    monkeypatch.setattr(Path, "exists", lambda self: False if self == path else real_exists(self))
    assert public_b64(load_or_create_seal_key(path)) == first


def test_config_precedence_defaults_file_env_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from linecrew.agent.config import AgentConfig

    toml = tmp_path / "agent.toml"
    toml.write_text('device_class = "rpi5"\nwindow = 10\nack_timeout_s = 2.5\n')
    assert AgentConfig.load(None).device_class == "x86-dev"
    assert AgentConfig.load(toml).device_class == "rpi5"
    monkeypatch.setenv("LINECREW_AGENT_WINDOW", "20")
    cfg = AgentConfig.load(toml, ack_timeout_s=9.0, device_class=None)
    assert (cfg.device_class, cfg.window, cfg.ack_timeout_s) == ("rpi5", 20, 9.0)
    assert issubclass(AgentConfig, TomlSettings)


def test_unknown_config_keys_are_errors(tmp_path: Path) -> None:
    from linecrew.server.config import ServerConfig

    toml = tmp_path / "server.toml"
    toml.write_text("htp_port = 1\n")
    with pytest.raises(ConfigError, match=r"server.toml: unknown key 'htp_port'"):
        ServerConfig.load(toml)
    toml.write_text('http_port = "eighty"\n')
    with pytest.raises(ConfigError, match=r"server.toml: key 'http_port': .*integer"):
        ServerConfig.load(toml)


def test_default_models_resolve_offline_from_packages() -> None:
    from linecrew.shared.models import default_asr_path, default_llm_path

    assert default_llm_path().suffix == ".gguf" and default_llm_path().stat().st_size > 50e6
    assert (default_asr_path() / "model.bin").exists()
    assert os.environ["HF_HUB_OFFLINE"] == "1"


def test_example_config_files_load() -> None:
    from linecrew.agent.config import AgentConfig
    from linecrew.server.config import ServerConfig

    root = Path(__file__).resolve().parents[2] / "config"
    assert AgentConfig.load(root / "agent.example.toml").model_dump() == AgentConfig.load(None).model_dump()
    assert ServerConfig.load(root / "server.example.toml").model_dump() == ServerConfig.load(None).model_dump()


def test_the_config_in_force_is_found_on_the_search_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from linecrew.server.config import ServerConfig

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LINECREW_CONFIG", raising=False)
    assert ServerConfig.load(None).source is None
    (tmp_path / "server.toml").write_text('data_dir = "here"\n')
    assert ServerConfig.load(None).data_dir == Path("here"), "./server.toml beside the server is found"
    other = tmp_path / "elsewhere.toml"
    other.write_text('data_dir = "there"\n')
    monkeypatch.setenv("LINECREW_CONFIG", str(other))
    assert ServerConfig.load(None).source == other and ServerConfig.load(None).data_dir == Path("there")
    monkeypatch.setenv("LINECREW_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match=r"missing\.toml not found"):
        ServerConfig.load(None)


def test_disk_full_is_a_clear_error_and_keeps_committed_data(tmp_path: Path) -> None:
    from linecrew.shared.errors import StorageError
    from linecrew.shared.sync import Outbox, sync_migration

    db = Database(tmp_path / "full.db")
    db.migrate([sync_migration(1)])
    ob = Outbox(db, sender_id="dev-1")
    ob.put("event", {"name": "kept"}, peer="server")
    pages = int(db.scalar("PRAGMA page_count") or 0)
    db.conn.execute(f"PRAGMA max_page_count={pages}")  # the disk is now full
    with pytest.raises(StorageError, match="disk full"):
        ob.put_many([("event", {"name": "x" * 100, "data": {"pad": "y" * 4000}})] * 20, peer="server")
    assert ob.depth() == 1 and ob.last_seq("server", "default") == 1


def test_databases_and_their_folders_are_private(tmp_path: Path) -> None:
    from linecrew.agent.store import AgentStore
    from linecrew.server.store import ServerStore

    (tmp_path / "old").mkdir(mode=0o755)
    (tmp_path / "old" / "server.db").touch(mode=0o644)  # as an earlier version left it
    server = ServerStore(tmp_path / "old")
    agent = AgentStore(tmp_path / "dev", device_id="truck-1")
    agent.add_note("private")
    for folder, name in ((tmp_path / "old", "server.db"), (tmp_path / "dev", "agent.db")):
        assert folder.stat().st_mode & 0o777 == 0o700
        for f in folder.glob(f"{name}*"):
            assert f.stat().st_mode & 0o777 == 0o600, f
    server.close()
    agent.close()


def test_a_malformed_manifest_is_one_error_line(tmp_path: Path) -> None:
    import json
    import time

    from click.testing import CliRunner
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from linecrew.cli import main
    from linecrew.shared.release import make_root, public_b64

    key = Ed25519PrivateKey.generate()
    root = tmp_path / "root.json"
    root.write_text(json.dumps(make_root(version=1, expires=time.time() + 3600, root_keys=[key], root_threshold=1,
                                         release_public=[public_b64(key)], release_threshold=1, signers=[key])))
    bad = tmp_path / "v2.json"
    for text in ("{not json", '{"signed": {"name": "x"}, "signatures": []}', "[]"):
        bad.write_text(text)
        out = CliRunner().invoke(main, ["release", "verify", str(bad), "--trust-root", str(root)])
        assert out.exit_code == 1 and "Traceback" not in out.output, out.output
        assert out.output.startswith("Error: ") and out.output.count("\n") == 1, out.output
