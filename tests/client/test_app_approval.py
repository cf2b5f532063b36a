"""A site runs only app bundles it approved: the hashes, `fedmm site approve`, and the runner's check."""

from __future__ import annotations

import hashlib
import sys
import tomllib
from pathlib import Path

import pytest
from flwr.cli.build import build_fab_from_disk
from typer.testing import CliRunner

from client.app_approval import approval_for, approve, installed_app, revoke
from client.cli import site_app
from client.deploy_config import load_site_config
from client.task_runner import forget_fedmm_modules, verify_bundle
from shared.app_bundle import app_dir, app_sha256, bundle_sha256, bundle_sources, stage_sources


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(site_app, list(args))
    return result.exit_code, result.output


@pytest.fixture
def site_toml(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir()
    code, output = invoke("init", "--name", "hospital-a", "--data", str(tmp_path / "data"),
                          "--out", str(tmp_path / "site"))
    assert code == 0, output
    return tmp_path / "site" / "site.toml"


def test_the_hash_is_of_the_bundle_flwr_run_submits(tmp_path: Path) -> None:
    # Flower's builder walking the whole checkout (.venv included) is the reference.
    flower = hashlib.sha256(build_fab_from_disk(app_dir())).hexdigest()
    assert app_sha256() == flower
    assert app_sha256() == app_sha256()  # deterministic: coordinator and site compare it
    # `flwr run` submits the staged copy of the bundle's sources: the same bundle
    staged = stage_sources(app_dir(), tmp_path / "sources")
    assert staged.name == flower and hashlib.sha256(build_fab_from_disk(staged)).hexdigest() == flower
    assert not {p.name for p in staged.iterdir()} - {"client", "server", "shared", "pyproject.toml",
                                                     ".gitignore"}
    assert stage_sources(app_dir(), tmp_path / "sources") == staged  # reused
    modes = {p.stat().st_mode & 0o777 for p in staged.rglob("*")}
    assert modes == {0o700, 0o600} and staged.stat().st_mode & 0o777 == 0o700


def test_sources_outside_the_included_folders_never_change_the_bundle(tmp_path: Path) -> None:
    for package in ("client", "server", "shared"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "app.py").write_text("X = 1\n")
    pyproject = (app_dir() / "pyproject.toml").read_text()
    (tmp_path / "pyproject.toml").write_text(pyproject)
    before = app_sha256(tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "conf.py").write_text("Y = 2\n")
    assert set(bundle_sources(tmp_path)) == {"pyproject.toml", "client/app.py", "server/app.py",
                                             "shared/app.py"}
    assert app_sha256(tmp_path) == before
    # a pattern that could match anywhere: Flower's own walk, which sees docs/conf.py
    (tmp_path / "pyproject.toml").write_text(pyproject.replace('"/client/**/*.py"', '"**/*.py"'))
    assert "docs/conf.py" in bundle_sources(tmp_path)
    assert app_sha256(tmp_path) == hashlib.sha256(build_fab_from_disk(tmp_path)).hexdigest()


def test_a_one_line_change_changes_the_hash(tmp_path: Path) -> None:
    import shutil
    for name in ("client", "server", "shared"):
        shutil.copytree(app_dir() / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(app_dir() / "pyproject.toml", tmp_path)
    assert app_sha256(tmp_path) == app_sha256()  # same code, elsewhere: same hash
    (tmp_path / "client" / "app.py").write_text((tmp_path / "client" / "app.py").read_text() + "\nX = 1\n")
    assert app_sha256(tmp_path) != app_sha256()


def test_init_approves_the_installed_fedmm_and_prints_its_hash(site_toml: Path) -> None:
    cfg = load_site_config(site_toml)
    assert cfg.approved_hashes == {app_sha256()}
    assert "installed at" in cfg.approved_apps[0].note


def test_approve_adds_a_hash_or_a_bundle_and_keeps_relative_paths(site_toml: Path, tmp_path: Path) -> None:
    announced = "ab" * 32
    code, output = invoke("approve", "--config", str(site_toml), "--hash", announced.upper())
    assert code == 0 and announced in output
    fab = tmp_path / "run.fab"
    fab.write_bytes(b"a bundle")
    code, _ = invoke("approve", "--config", str(site_toml), "--fab", str(fab), "--note", "from the PI")
    assert code == 0
    cfg = load_site_config(site_toml)
    assert cfg.approved_hashes == {app_sha256(), announced, bundle_sha256(b"a bundle")}
    raw = tomllib.loads(site_toml.read_text())
    assert raw["state_dir"] == "state" and raw["keys"]["private_key"] == "keys/site.key"
    assert not approve(site_toml, approval_for(sha256=announced))  # already there
    code, output = invoke("approve", "--config", str(site_toml), "--revoke", announced)
    assert code == 0 and announced not in load_site_config(site_toml).approved_hashes
    assert not revoke(site_toml, announced)


@pytest.mark.parametrize(("args", "match"), [
    (("--hash", "1234"), "64 hex digits"),
    (("--hash", "ab" * 32, "--fab", "x.fab"), "got both"),
    (("--fab", "/nowhere/run.fab"), "Cannot read"),
], ids=["short-hash", "both", "missing-fab"])
def test_a_bad_approval_is_refused_with_the_fix(site_toml: Path, args: tuple[str, ...], match: str) -> None:
    code, output = invoke("approve", "--config", str(site_toml), *args)
    assert code == 2 and match in output.replace("\n", " ")


def test_the_runner_runs_a_bundle_only_when_its_bytes_are_approved() -> None:
    content = b"the approved bundle"
    good = bundle_sha256(content)
    assert verify_bundle(content, claimed=good, approved=frozenset({good})).approved
    # one byte different: refused, and the log line names both hashes
    altered = verify_bundle(content + b"!", claimed=good, approved=frozenset({good}))
    assert not altered.approved and good in altered.refusal(frozenset({good}))
    assert altered.sha256 in altered.refusal(frozenset({good}))
    assert "does not match its bytes" in altered.refusal(frozenset({good}))
    # an unapproved bundle announced honestly is refused too
    other = b"another bundle"
    assert not verify_bundle(other, claimed=bundle_sha256(other), approved=frozenset({good})).approved
    assert not verify_bundle(content, claimed=good, approved=frozenset()).approved


def test_the_runner_forgets_fedmm_modules_so_the_bundle_code_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    modules = dict(sys.modules)
    monkeypatch.setattr(sys, "modules", modules)
    assert "client.app_approval" in modules and "shared.app_bundle" in modules
    forget_fedmm_modules()
    assert not [m for m in modules if m.split(".")[0] in ("client", "server", "shared")]
    assert "flwr" in modules and "torch" in modules


def test_installed_app_names_this_checkout() -> None:
    app = installed_app()
    assert app.sha256 == app_sha256() and str(app_dir()) in app.note
