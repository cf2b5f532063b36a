"""`fedmm phantom` command and the preview PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import typer
from matplotlib import image as mpimg
from typer.testing import CliRunner

from simulations.phantom import PhantomConfig, generate_phantom, write_preview
from simulations.phantom.cli import phantom_command
from simulations.phantom.manifest import read_manifest

TINY = ["--sites", "2", "--subjects-per-site", "1", "--spacing-mm", "6", "--workers", "1"]


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    # The integrator registers the command on fedmm's root app; a bare one stands in here.
    app = typer.Typer()
    app.command("phantom")(phantom_command)
    return app


def test_help_documents_every_option(runner: CliRunner, app: typer.Typer) -> None:
    result = runner.invoke(app, ["--help"], env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert result.exit_code == 0
    for option in (
        "--sites",
        "--subjects-per-site",
        "--out",
        "--seed",
        "--spacing-mm",
        "--profiles",
        "--workers",
        "--preview",
        "--no-preview",
    ):
        assert option in result.output


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--sites", "0"], "--sites"),
        (["--spacing-mm", "0.5"], "--spacing-mm"),
        (["--workers", "0"], "--workers"),
        (["--tumour-fraction", "2"], "--tumour-fraction"),
        (["--sites", "many"], "--sites"),
    ],
    ids=["sites", "spacing", "workers", "fraction", "not-a-number"],
)
def test_bad_options_exit_2_before_any_work(
    runner: CliRunner, app: typer.Typer, tmp_path: Path, args: list[str], needle: str
) -> None:
    out = tmp_path / "out"
    result = runner.invoke(app, [*args, "--out", str(out)], env={"COLUMNS": "200"})
    assert result.exit_code == 2
    assert needle in result.output
    assert not out.exists()


def test_bad_profiles_file_exits_2_naming_the_file(
    runner: CliRunner, app: typer.Typer, tmp_path: Path
) -> None:
    bad = tmp_path / "hospital.toml"
    bad.write_text("[[profile]]\nname = 'x'\n")
    out = tmp_path / "out"
    result = runner.invoke(app, [*TINY, "--profiles", str(bad), "--out", str(out)], env={"COLUMNS": "400"})
    assert result.exit_code == 2
    assert "hospital.toml" in result.output.replace("\n", "").replace(" ", "")
    assert not out.exists()


def test_refuses_foreign_output_folder(runner: CliRunner, app: typer.Typer, tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("a,b\n")
    result = runner.invoke(app, [*TINY, "--out", str(tmp_path)], env={"COLUMNS": "400"})
    assert result.exit_code == 2
    assert not (tmp_path / "site-0").exists()


def test_generates_phantom_and_preview(runner: CliRunner, app: typer.Typer, tmp_path: Path) -> None:
    out = tmp_path / "phantom"
    result = runner.invoke(app, [*TINY, "--out", str(out)])
    assert result.exit_code == 0, result.output
    manifest = read_manifest(out)
    assert manifest is not None and len(manifest.sites) == 2
    png = out / "preview.png"
    assert png.is_file()
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    result = runner.invoke(app, [*TINY, "--out", str(out)], env={"COLUMNS": "400"})
    assert result.exit_code == 0 and "up to date" in result.output
    # A cached run rewrites nothing, the preview included.
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before


def test_preview_is_a_modest_non_trivial_png(tmp_path: Path) -> None:
    cfg = PhantomConfig(sites=2, subjects_per_site=1, spacing_mm=6.0, tumour_fraction=1.0)
    generate_phantom(cfg, tmp_path, workers=1, progress=False)
    png = write_preview(tmp_path, tmp_path / "look.png")
    assert png == tmp_path / "look.png"
    assert 10_000 < png.stat().st_size < 300_000
    pixels = mpimg.imread(png)
    assert pixels.ndim == 3 and pixels.shape[0] > 200 and pixels.shape[1] > 400
    assert float(np.std(pixels[..., :3])) > 0.1  # real images, not a blank canvas


def test_preview_without_phantom_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fedmm phantom"):
        write_preview(tmp_path, tmp_path / "x.png")
