"""server.toml and the SuperLink command line: secure by default, insecure only when asked."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from server.certificates import create_certificates
from server.deploy_config import (
    ServerDeployConfig,
    SuperLinkSettings,
    load_server_config,
    write_server_config,
)
from server.superlink_daemon import (
    SuperLinkConfigError,
    check_certificates,
    superexec_command,
    superlink_command,
    write_connection,
)
from shared.config import ConfigError


@pytest.fixture
def config(tmp_path: Path) -> ServerDeployConfig:
    create_certificates(tmp_path / "certs", ca_key_dir=tmp_path / "ca-offline")
    path = write_server_config(ServerDeployConfig(superlink=SuperLinkSettings(port=9999)),
                               tmp_path / "server.toml")
    return load_server_config(path)


def test_relative_paths_resolve_against_the_config_folder(config: ServerDeployConfig,
                                                          tmp_path: Path) -> None:
    assert config.tls.ca_cert == (tmp_path / "certs" / "ca.crt").resolve()
    assert config.paths.database == (tmp_path / "state" / "superlink.db").resolve()
    assert config.superlink.port == 9999


def test_superlink_is_secure_by_default_and_on_loopback_only(config: ServerDeployConfig) -> None:
    cmd = superlink_command(config)
    for flag in ("--ssl-ca-certfile", "--ssl-certfile", "--ssl-keyfile", "--enable-supernode-auth",
                 "--database", "--disable-runtime-dependency-installation", "--log-file"):
        assert flag in cmd
    assert "--insecure" not in cmd
    assert cmd[cmd.index("--database") + 1] == str(config.paths.database)
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1"
    assert cmd[cmd.index("--port") + 1] == str(config.superlink.internal_port)
    # No ServerApp runs inside it; only the SuperExec holding the secret may take its tasks.
    assert cmd[cmd.index("--isolation") + 1] == "process"
    secret = cmd[cmd.index("--superexec-auth-secret-file") + 1]
    assert secret == str(config.paths.superexec_secret)
    superexec = superexec_command(config)
    assert superexec[superexec.index("--superexec-auth-secret-file") + 1] == secret
    assert superexec[superexec.index("--runtime-api-address") + 1] == (
        f"127.0.0.1:{config.superlink.internal_port}")
    assert superexec[superexec.index("--root-certificates") + 1] == str(config.tls.ca_cert)


def test_missing_tls_refuses_to_start_unless_insecure_is_explicit(tmp_path: Path) -> None:
    path = write_server_config(ServerDeployConfig(), tmp_path / "server.toml")
    cfg = load_server_config(path)
    with pytest.raises(SuperLinkConfigError, match="fedmm server init"):
        check_certificates(cfg)
    cmd = superlink_command(cfg, insecure=True)
    assert "--insecure" in cmd and "--enable-supernode-auth" not in cmd
    assert "--disable-runtime-dependency-installation" in cmd
    assert "--insecure" in superexec_command(cfg, insecure=True)


def test_cli_connection_trusts_only_the_consortium_ca(config: ServerDeployConfig) -> None:
    conn = tomllib.loads(write_connection(config).read_text())["superlink"]
    assert conn["default"] == "fedmm"
    assert conn["fedmm"] == {"address": f"127.0.0.1:{config.superlink.internal_port}",
                             "root-certificates": str(config.tls.ca_cert)}
    insecure = tomllib.loads(write_connection(config, insecure=True).read_text())["superlink"]["fedmm"]
    assert insecure["insecure"] is True


@pytest.mark.parametrize(("text", "match"), [
    ('[superlink]\nport = 0\n', "superlink.port"),
    ('[superlink]\npublic_address = "fl.example.org"\n', "host:port"),
    ('[tls]\nca = "x"\n', "Known settings"),
    ("[superlink\n", "not valid TOML"),
    ('[superlink]\ncontrol_address = "127.0.0.1:9093"\n', "internal_port only"),
    ('[superlink]\nport = 9091\n', "must differ"),
], ids=["port", "address", "unknown-key", "toml", "old-control-address", "same-ports"])
def test_bad_server_config_names_the_setting(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "server.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_server_config(path)
    with pytest.raises(ConfigError, match="fedmm server init"):
        load_server_config(tmp_path / "missing.toml")


def test_an_expired_or_early_server_certificate_is_refused_and_a_near_expiry_warned(
        config: ServerDeployConfig) -> None:
    import datetime as dt

    from tests.shared.certs import make_ca, make_leaf, write_pem

    now = dt.datetime.now(dt.UTC)
    ca = make_ca()
    write_pem(config.tls.ca_cert, ca[1])
    for start, end, match in ((-400, -1, "expired on"), (2, 400, "not valid yet")):
        _, cert = make_leaf(ca, not_before=now + dt.timedelta(days=start),
                            not_after=now + dt.timedelta(days=end))
        write_pem(config.tls.server_cert, cert)
        with pytest.raises(SuperLinkConfigError, match=match) as err:
            check_certificates(config)
        assert "--renew" in str(err.value) and "not signed" not in str(err.value)
    _, cert = make_leaf(ca, not_before=now - dt.timedelta(days=1), not_after=now + dt.timedelta(days=12))
    write_pem(config.tls.server_cert, cert)
    assert any("expires in 11 days" in w for w in check_certificates(config))
