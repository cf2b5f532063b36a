"""`fedmm site init|check|stats|start` as hospital IT runs them (in process, nothing started)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from client.cli import site_app
from client.deploy_config import load_site_config
from tests.client.site_data import SPACING, write_site

RUN_TOML = f"""
[data]
crop_size = 8
spacing_mm = {SPACING}
batch_size = 2
hist_bins = 8
[privacy]
min_studies = 5
"""


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(site_app, list(args))
    return result.exit_code, result.stdout, result.output


@pytest.fixture
def site_folder(tmp_path: Path) -> Path:
    write_site(tmp_path / "data", num_studies=4)
    (tmp_path / "run.toml").write_text(RUN_TOML)
    (tmp_path / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    code, stdout, output = invoke("init", "--name", "hospital-a", "--data", str(tmp_path / "data"),
                                  "--out", str(tmp_path / "site"), "--server", "fl.example.org:9093",
                                  "--ca-cert", str(tmp_path / "ca.crt"),
                                  "--run-file", str(tmp_path / "run.toml"))
    assert code == 0, output
    assert stdout.strip().startswith("ecdsa-sha2-nistp384 ")  # the line to send, alone on stdout
    return tmp_path / "site"


def test_init_writes_a_config_a_private_key_and_the_ca(site_folder: Path) -> None:
    cfg = load_site_config(site_folder / "site.toml")
    assert cfg.name == "hospital-a" and cfg.server.address == "fl.example.org:9093"
    assert cfg.server.ca_cert == (site_folder / "ca.crt").resolve() and cfg.server.ca_cert.exists()
    assert cfg.keys.private_key.stat().st_mode & 0o777 == 0o600
    assert cfg.state_dir == (site_folder / "state").resolve()
    code, _, output = invoke("init", "--name", "hospital-a", "--data", "x", "--out", str(site_folder))
    assert code == 2 and "already exists" in output


def test_check_reports_a_ready_site(site_folder: Path) -> None:
    code, _, output = invoke("check", "--config", str(site_folder / "site.toml"))
    assert code == 0, output
    text = " ".join(output.split())
    assert "Usable studies: 4" in text and "4 patients" in text
    # four patients cannot clear k = 3 under the default epsilon's count noise
    assert "most likely withholds its statistics" in text and "t1 4 patients (" in text


def test_check_fails_when_training_cannot_use_the_folder(site_folder: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    config = site_folder / "site.toml"
    config.write_text(config.read_text().replace(str(tmp_path / "data"), str(empty)))
    code, _, output = invoke("check", "--config", str(config))
    assert code == 1 and "Training cannot use" in output


def test_stats_dry_run_from_the_site_config_keeps_the_release(site_folder: Path) -> None:
    code, stdout, output = invoke("stats", "--dry-run", "--config", str(site_folder / "site.toml"))
    assert code == 0, output
    payload = json.loads(stdout[: stdout.index("\n}\n") + 2])
    assert list(payload) == ["site-stats"]
    kept = json.loads((site_folder / "state" / "released_site_stats.json").read_text())
    assert json.loads(payload["site-stats"]["json"]) == kept["release"]
    code, _, output = invoke("stats", "--dry-run", "--config", str(site_folder / "site.toml"),
                             "--data", str(site_folder))
    assert code == 2 and "do not combine" in output


def test_privacy_shows_every_release_and_the_budget_spent_and_left(site_folder: Path) -> None:
    config = str(site_folder / "site.toml")
    code, stdout, output = invoke("privacy", "--config", config)
    assert code == 0, output
    assert "epsilon spent: 0\n" in stdout and "epsilon left: 6\n" in stdout
    code, _, output = invoke("stats", "--dry-run", "--config", config)
    assert code == 0, output
    text = " ".join(output.split())
    assert "epsilon 2-differentially private per patient, drawn now" in text
    assert "epsilon 2 spent in total; lifetime budget 6, left 4" in text
    code, _, output = invoke("stats", "--dry-run", "--config", config)
    assert "re-sent from the privacy ledger" in " ".join(output.split())
    code, stdout, output = invoke("privacy", "--config", config)
    assert code == 0, output
    assert "releases: 1\nepsilon spent: 2\nlifetime budget: 6" in stdout
    assert "epsilon left: 4" in stdout and "release 1: drawn " in stdout
    assert "covers: modalities flair,t1,t1ce,t2; 8 bins; percentiles 0.5-99.5; 2.0 mm" in stdout


def test_stats_dry_run_refuses_what_the_site_would_refuse(site_folder: Path) -> None:
    run = site_folder.parent / "run.toml"
    run.write_text(RUN_TOML + "epsilon = 3.0\n")
    code, _, output = invoke("stats", "--dry-run", "--config", str(site_folder / "site.toml"))
    assert code == 2 and "max_epsilon_per_release" in " ".join(output.split())
    assert not (site_folder / "state" / "privacy_ledger.jsonl").exists()


def test_start_refuses_a_config_that_cannot_work(site_folder: Path) -> None:
    config = site_folder / "site.toml"
    config.write_text(config.read_text().replace('address = "fl.example.org:9093"', 'address = ""'))
    code, _, output = invoke("start", "--config", str(config))
    assert code == 2 and "[server].address is empty" in output


def test_site_check_shows_the_ca_s_days_to_expiry_and_warns_under_30(tmp_path: Path) -> None:
    from tests.shared.certs import make_ca, write_pem

    write_site(tmp_path / "data", num_studies=2)
    ca = write_pem(tmp_path / "ca.crt", make_ca(days=12)[1])
    runner = CliRunner()
    result = runner.invoke(site_app, ["init", "--name", "h", "--data", str(tmp_path / "data"),
                                      "--out", str(tmp_path / "site"), "--ca-cert", str(ca)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(site_app, ["check", "--config", str(tmp_path / "site" / "site.toml")])
    text = " ".join(result.output.split())
    assert "The consortium CA certificate expires in 11 days" in text and "renew" in text
