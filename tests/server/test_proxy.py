"""The coordinator's proxy: only the Fleet API's routes reach the SuperLink, and nginx accepts the config."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import flwr.supernode.fleet_http_client as fleet_client
import pytest

from server.certificates import create_certificates
from server.deploy_config import (
    ServerDeployConfig,
    SuperLinkSettings,
    load_server_config,
    write_server_config,
)
from server.proxy import FLEET_PREFIX, FLEET_ROUTES, ProxyError, render_nginx_config, write_proxy_config


@pytest.fixture
def config(tmp_path: Path) -> ServerDeployConfig:
    create_certificates(tmp_path / "certs", ca_key_dir=tmp_path.parent / f"{tmp_path.name}-ca")
    path = write_server_config(ServerDeployConfig(superlink=SuperLinkSettings(
        host="127.0.0.1", port=18443, internal_port=18091)), tmp_path / "server.toml")
    return load_server_config(path)


def test_the_forwarded_routes_are_exactly_those_a_supernode_calls() -> None:
    source = Path(fleet_client.__file__).read_text()
    called = set(re.findall(r'path="/v1/fleet/([a-z-]+)"', source))
    assert called == set(FLEET_ROUTES)


def test_only_fleet_routes_are_forwarded_and_everything_else_is_refused(config: ServerDeployConfig) -> None:
    text = render_nginx_config(config)
    blocks = text.split("location ")[1:]
    proxied = [(b.split("{", 1)[0], re.search(r"proxy_pass ([^;]+);", b)) for b in blocks]
    proxied = [(where, found[1]) for where, found in proxied if found]
    assert len(proxied) == 1 and text.count("proxy_pass") == 1  # one forwarding location
    location, upstream = proxied[0]
    assert location.strip() == f"~ ^{FLEET_PREFIX}({'|'.join(FLEET_ROUTES)})$"
    assert upstream == "https://127.0.0.1:18091"  # the SuperLink on loopback, re-encrypted
    assert "limit_except POST { deny all; }" in text
    assert re.search(r"location / \{\s*return 403;\s*\}", text)
    assert "listen 127.0.0.1:18443 ssl;" in text and "proxy_ssl_verify on;" in text
    assert str(config.tls.ca_cert) in text and str(config.tls.server_key) in text
    for forbidden in ("/v1/control", "/v1/runtime", "openapi"):
        assert forbidden not in text
    insecure = render_nginx_config(config, insecure=True)
    assert "listen 127.0.0.1:18443;" in insecure and "http://127.0.0.1:18091" in insecure
    assert "ssl_certificate" not in insecure


def test_a_path_that_could_break_the_config_is_refused(config: ServerDeployConfig) -> None:
    bad = config.model_copy(update={"tls": config.tls.model_copy(
        update={"server_key": Path('/tmp/evil";\nuser root;#')})})
    with pytest.raises(ProxyError, match="without quotes"):
        render_nginx_config(bad)


@pytest.mark.skipif(shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists(),
                    reason="nginx is not installed (CI installs it: apt-get install nginx)")
def test_nginx_accepts_the_written_config(config: ServerDeployConfig) -> None:
    from server.proxy import check_proxy_config, proxy_command

    write_proxy_config(config)
    check_proxy_config(config)  # nginx -t
    proc = subprocess.run([*proxy_command(config), "-T", "-q"], capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0 and "/v1/fleet/" in proc.stdout
