"""site.toml and the flower-supernode command line (without starting anything)."""

from __future__ import annotations

from pathlib import Path

import pytest
from flwr.common.config import parse_config_args

from client.deploy_config import (
    ApprovedApp,
    SiteDeployConfig,
    SiteServerSettings,
    load_site_config,
    write_site_config,
)
from client.site_config import resolve_site
from client.site_daemon import (
    SiteDaemonConfigError,
    check_ready,
    executor_command,
    explain_exit,
    make_private,
    supernode_command,
)
from client.site_keypair import create_site_keys
from shared.config import ConfigError, RunConfig, SiteLimits


def node_config_of(cmd: list[str]) -> dict:
    """What Flower's SuperNode makes of the --node-config value (its own parser)."""
    return parse_config_args([cmd[cmd.index("--node-config") + 1]])


@pytest.fixture
def site(tmp_path: Path) -> SiteDeployConfig:
    (tmp_path / "data with space").mkdir()
    (tmp_path / "ca.crt").write_text("not checked here")
    create_site_keys(tmp_path / "keys" / "site.key", comment="a")
    cfg = SiteDeployConfig(name="hospital-a", data_dir=Path("data with space"),
                           server=SiteServerSettings(address="fl.example.org:9093"),
                           approved_apps=(ApprovedApp(sha256="ab" * 32),))
    return load_site_config(write_site_config(cfg, tmp_path / "site.toml"))


def test_paths_resolve_against_the_config_folder(site: SiteDeployConfig, tmp_path: Path) -> None:
    assert site.data_dir == (tmp_path / "data with space").resolve()
    assert site.state_dir == (tmp_path / "state").resolve()
    assert site.keys.private_key == (tmp_path / "keys" / "site.key").resolve()


def test_supernode_uses_tls_the_key_and_a_local_runtime_port(site: SiteDeployConfig) -> None:
    cmd = supernode_command(site)
    assert cmd[cmd.index("--superlink") + 1] == "fl.example.org:9093"
    assert cmd[cmd.index("--root-certificates") + 1] == str(site.server.ca_cert)
    assert cmd[cmd.index("--auth-supernode-private-key") + 1] == str(site.keys.private_key)
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1"
    assert "--insecure" not in cmd
    insecure = supernode_command(site, insecure=True)
    assert "--insecure" in insecure and "--auth-supernode-private-key" not in insecure


def test_the_supernode_executes_nothing_and_only_the_executor_gets_its_tasks(
        site: SiteDeployConfig, tmp_path: Path) -> None:
    cmd = supernode_command(site)
    assert cmd[cmd.index("--isolation") + 1] == "process"
    secret = cmd[cmd.index("--superexec-auth-secret-file") + 1]
    executor = executor_command(site, site_config=tmp_path / "site.toml")
    assert executor[executor.index("--secret-file") + 1] == secret
    assert executor[executor.index("--runtime-api-address") + 1] == f"127.0.0.1:{site.daemon.runtime_port}"
    assert executor[executor.index("--site-config") + 1] == str(tmp_path / "site.toml")


def test_node_config_reaches_the_clientapp_as_the_site_folders_and_limits(site: SiteDeployConfig) -> None:
    resolved = resolve_site(node_config_of(supernode_command(site)), RunConfig())
    assert resolved.data_dir == site.data_dir and resolved.state_dir == site.state_dir
    assert resolved.share_templates is False  # no consent unless site.toml gives it
    assert resolved.limits == SiteLimits()
    own = SiteLimits(max_epsilon_per_release=0.5, max_epsilon_total=2.5, min_k=11,
                     max_batch_size=3, max_voxels=100_000)
    consenting = supernode_command(site.model_copy(update={"share_templates": True, "limits": own}))
    resolved = resolve_site(node_config_of(consenting), RunConfig())
    assert resolved.share_templates is True and resolved.limits == own


def test_a_deployed_site_without_limit_entries_gets_the_default_limits(tmp_path: Path) -> None:
    node_config = {"data-dir": str(tmp_path), "state-dir": str(tmp_path)}
    assert resolve_site(node_config, RunConfig()).limits == SiteLimits()


def test_a_bad_limit_is_named_without_echoing_the_node_config(tmp_path: Path) -> None:
    node_config = {"data-dir": "/secret/BraTS2021_00042", "state-dir": str(tmp_path),
                   "limit-min-k": "many"}
    with pytest.raises(ValueError, match="limit-min-k") as err:
        resolve_site(node_config, RunConfig())
    assert "BraTS2021_00042" not in str(err.value)


def test_a_non_boolean_consent_is_refused_with_the_fix(tmp_path: Path) -> None:
    node_config = {"data-dir": str(tmp_path), "state-dir": str(tmp_path), "share-templates": "maybe"}
    with pytest.raises(ValueError, match="share-templates=true or share-templates=false"):
        resolve_site(node_config, RunConfig())


def test_check_ready_lists_every_problem_with_its_fix(tmp_path: Path) -> None:
    cfg = SiteDeployConfig(name="b", data_dir=tmp_path / "nowhere").resolved(tmp_path)
    with pytest.raises(SiteDaemonConfigError) as err:
        check_ready(cfg)
    text = str(err.value)
    assert "[server].address is empty" in text and "ca_cert" in text
    assert "fedmm site init" in text and "is not a folder" in text
    assert "approves no app bundle" in text and "fedmm site approve" in text


def test_make_private_tightens_existing_folders_and_files(tmp_path: Path) -> None:
    state = tmp_path / "state"
    (state / "cache").mkdir(parents=True)
    (state / "cache" / "study.pt").write_bytes(b"x")
    (state / "cache").chmod(0o755)
    (state / "cache" / "study.pt").chmod(0o644)
    make_private(state, tmp_path / "logs")
    assert (state / "cache").stat().st_mode & 0o777 == 0o700
    assert (state / "cache" / "study.pt").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "logs").stat().st_mode & 0o777 == 0o700


def test_exit_reasons_are_explained(site: SiteDeployConfig) -> None:
    assert "not registered" in explain_exit(1, ["[code: 2004] Failed to activate SuperNode."], site)
    assert "not signed by" in explain_exit(1, ["[SSL: CERTIFICATE_VERIFY_FAILED] ..."], site)
    expired = ["[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: certificate has expired"]
    assert "has expired" in explain_exit(1, expired, site)
    assert "not signed by" not in explain_exit(1, expired, site)
    early = ["[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: certificate is not yet valid"]
    assert "not valid yet" in explain_exit(1, early, site)
    assert "requires TLS" in explain_exit(1, ["[Errno 104] Connection reset by peer"], site,
                                          insecure=True)


@pytest.mark.parametrize(("text", "match"), [
    ('name = "a b"\ndata_dir = "d"\n', "name"),
    ('name = "a"\ndata_dir = "d"\n[server]\naddress = "nohostport"\n', "host:port"),
    ('name = "a"\n', "data_dir"),
    ('name = "a"\ndata_dir = "d"\nsecret = 1\n', "Known settings"),
], ids=["name", "address", "missing-data", "unknown"])
def test_bad_site_config_names_the_setting(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "site.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_site_config(path)


def test_the_daemon_says_once_at_start_what_the_data_holds(site: SiteDeployConfig, tmp_path: Path) -> None:
    from client.site_daemon import data_line
    from tests.client.site_data import write_site

    empty = data_line(site)  # the folder exists but holds nothing
    assert empty.startswith("WARNING: site 'hospital-a' has no usable data") and "empty folder" in empty
    (site.data_dir / "BraTS2021_00099").mkdir()
    (site.data_dir / "BraTS2021_00099" / "BraTS2021_00099_t1.nii.gz").write_bytes(b"not a volume")
    broken = data_line(site)
    assert broken.startswith("WARNING: Site 'hospital-a' has no usable study") and "1 problem" in broken
    assert str(site.state_dir / "data_problems.txt") in broken
    write_site(site.data_dir, num_studies=3)
    line = data_line(site)
    assert "3 usable studies" in line and str(site.state_dir / "data_problems.txt") in line
