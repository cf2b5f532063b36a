"""`fedmm server init|start|run` edges that need no SuperLink (in process)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from server.cli import server_app
from server.deploy_config import load_server_config


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(server_app, list(args), env={"COLUMNS": "400"})
    return result.exit_code, result.output


def test_init_creates_a_coordinator_folder_and_puts_the_ca_key_apart(tmp_path: Path) -> None:
    out = tmp_path / "coord"
    code, output = invoke("init", "--out", str(out), "--dns", "fl.example.org", "--ip", "10.0.0.5",
                          "--port", "9443")
    assert code == 0, output
    cfg = load_server_config(out / "server.toml")
    assert cfg.superlink.public_address == "fl.example.org:9443" and cfg.superlink.port == 9443
    assert cfg.superlink.control_address == f"127.0.0.1:{cfg.superlink.internal_port}"
    for path in (cfg.tls.ca_cert, cfg.tls.server_cert, cfg.tls.server_key, cfg.paths.proxy_config,
                 cfg.paths.superexec_secret):
        assert path.exists()
    assert cfg.tls.server_key.stat().st_mode & 0o777 == 0o600
    assert cfg.paths.superexec_secret.stat().st_mode & 0o777 == 0o600
    offline = tmp_path / "coord-ca-offline"
    assert (offline / "ca.key").exists() and not list(out.rglob("ca.key"))
    assert "OFFLINE" in output and str(offline) in output.replace("\n", "")
    # The proxy forwards the Fleet API of this SuperLink, and nothing else.
    proxy = cfg.paths.proxy_config.read_text()
    assert f"127.0.0.1:{cfg.superlink.internal_port}" in proxy and "9443 ssl" in proxy
    assert "fl.example.org" in output and "10.0.0.5" in output
    code, output = invoke("init", "--out", str(out))
    assert code == 2 and "--renew" in output
    before = (out / "server.toml").read_text()
    code, output = invoke("init", "--out", str(out), "--renew", "--dns", "fl2.example.org",
                          "--ca-key-dir", str(tmp_path / "elsewhere"))
    assert code == 2 and "offline copy" in output.replace("\n", " ")
    code, output = invoke("init", "--out", str(out), "--renew", "--dns", "fl2.example.org")
    assert code == 0 and "fl2.example.org" in output
    assert (out / "server.toml").read_text() == before


def test_init_refuses_a_ca_key_folder_inside_the_coordinator_folder(tmp_path: Path) -> None:
    code, output = invoke("init", "--out", str(tmp_path / "c"), "--ca-key-dir", str(tmp_path / "c" / "k"))
    assert code == 2 and "inside --out" in output


def test_app_hash_is_the_bundle_flower_submits(tmp_path: Path) -> None:
    # app_sha256 is the hash of Flower's own build (tests/client/test_app_approval.py)
    from shared.app_bundle import app_sha256
    code, output = invoke("app-hash")
    assert code == 0
    assert output.strip().splitlines()[-1] == app_sha256()


def test_start_refuses_without_tls_files(tmp_path: Path) -> None:
    invoke("init", "--out", str(tmp_path))
    (tmp_path / "certs" / "server.key").unlink()
    code, output = invoke("start", "--config", str(tmp_path / "server.toml"))
    assert code == 2 and "--insecure" in output and "server.key" in output


def test_run_rejects_a_bad_run_file_before_submitting(tmp_path: Path) -> None:
    invoke("init", "--out", str(tmp_path))
    run = tmp_path / "run.toml"
    run.write_text("[federation]\nnum_rounds = 0\n")
    code, output = invoke("run", "--config", str(run), "--server-config", str(tmp_path / "server.toml"))
    assert code == 2 and "federation.num_rounds" in output
    assert not (tmp_path / "runs").exists()
