"""The run report: pure parts (losses, PCA, site dominance, tables), notes for missing inputs,
and a real headless Chromium rendering a report built from a fabricated tiny run."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.image import imread
from rich.console import Console

from server.checkpoints import CheckpointStore, export_encoder
from server.metrics_log import METRICS_FILE
from shared.config import DataConfig, PrivacyConfig, RunConfig, SimulatedSitesConfig
from shared.model import build_encoder, global_state
from shared.stats_schema import ModalityStats, StatsPool
from simulations.phantom import PhantomConfig, generate_phantom
from simulations.report import REPORT_DIR, REPORT_FILE, read_timings, write_run_report, write_timings
from simulations.report.adadn_examples import choose_target
from simulations.report.data_preview import write_data_preview
from simulations.report.downstream import downstream_table
from simulations.report.losses import loss_series, plot_losses, site_labels
from simulations.report.projection import (
    effective_dimensions,
    pca_2d,
    silhouette_by_group,
    site_variance_fraction,
)
from simulations.report.run_folder import RunFolder
from simulations.report.site_data import open_sites

MODALITIES = ("t1", "t1ce", "t2", "flair")
NODES = ("10", "9")  # numerically 9 < 10: "site 1" is node 9
FIGURES = ("losses.png", "data_preview.png", "adadn_examples.png", "embeddings.png")
DOWNSTREAM = {
    "0.1": {"scratch": {"dice_mean": 0.61, "dice_std": 0.03, "acc_mean": 0.70, "acc_std": 0.05},
            "federated": {"dice_mean": 0.66, "dice_std": 0.02, "acc_mean": 0.74, "acc_std": 0.04}},
    "1.0": {"scratch": {"dice_mean": 0.78, "dice_std": 0.01, "acc_mean": 0.85, "acc_std": 0.02}},
}


def _stats(mean: float, std: float) -> ModalityStats:
    return ModalityStats(mean=mean, std=std, histogram=(0.25, 0.25, 0.25, 0.25))


def _metrics(config: dict[str, object]) -> dict[str, object]:
    def phase(key: str, losses: tuple[float, float]) -> dict[str, object]:
        sites = {n: {"num-examples": 4, key: v} for n, v in zip(NODES, losses, strict=True)}
        return {"loss": sum(losses) / 2, "sites": sites, "failures": []}

    rounds = [{"round": r, "seconds": 1.5, "train": {"aggregated": True, **phase("train-loss", tl)},
               "evaluate": phase("eval-loss", el)}
              for r, tl, el in ((1, (1.4, 1.2), (1.0, 0.8)), (2, (1.0, 0.9), (0.7, 0.6)))]
    return {"meta": {"config": config, "preset": "cpu-small"}, "rounds": rounds}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A fabricated finished run (no Flower): 2 phantom sites, 2 rounds, pool, checkpoints."""
    root = tmp_path_factory.mktemp("report")
    data_root = root / "phantom"
    manifest = generate_phantom(PhantomConfig(sites=2, subjects_per_site=4, spacing_mm=4.0), data_root,
                                workers=1, progress=False)
    site_dirs = tuple(s.name for s in manifest.sites)
    run = root / "run"
    cfg = RunConfig(
        seed=1, out_dir=run,
        data=DataConfig(spacing_mm=4.0, crop_size=16, batch_size=2),
        privacy=PrivacyConfig(min_studies=2),
        sites=SimulatedSitesConfig(data_root=data_root, site_dirs=site_dirs, state_root=run / "sites"),
    )
    config = json.loads(cfg.model_dump_json())
    config["model"]["preset"] = "cpu-small"
    run.mkdir()
    (run / METRICS_FILE).write_text(json.dumps(_metrics(config)))
    releases = [{m: _stats(0.30 + 0.01 * i, 0.15) for i, m in enumerate(MODALITIES)},
                {m: _stats(0.60 + 0.01 * i, 0.10) for i, m in enumerate(MODALITIES)}]
    pool = StatsPool(modalities={m: (releases[1][m], releases[0][m]) for m in MODALITIES}, contributors=2)
    for k, release in enumerate(releases):
        (run / "sites" / f"site-{k}").mkdir(parents=True)
        doc = {"release": {"withheld": False, "modalities": {m: s.model_dump() for m, s in release.items()}}}
        (run / "sites" / f"site-{k}" / "released_site_stats.json").write_text(json.dumps(doc))
    torch.manual_seed(0)
    encoder = build_encoder("cpu-small")
    CheckpointStore(run).save_round(0, global_state(encoder, site_local_norm=True), pool,
                                    config_json=json.dumps(config))
    with torch.no_grad():  # "pretraining": any change of the weights will do for the figures
        for p in encoder.parameters():
            p.add_(0.05 * torch.randn_like(p))
    export_encoder(run, encoder.state_dict(), preset="cpu-small",
                   card={"preset": "cpu-small", "parameters": 582436, "rounds": 2, "sites": 2,
                         "pretext": "cross_modal_contrastive", "config": config,
                         "final_metrics": {"train_loss": 0.95, "eval_loss": 0.65}})
    (run / "scenario.json").write_text(json.dumps({"simulation": {"sites": 2}, "run": config}))
    write_timings(run, {"data_preparation": 4.2, "federation": 61.0})
    write_run_report(run, data_root=data_root, site_dirs=site_dirs, downstream=DOWNSTREAM, title="tiny run")
    return run, data_root


# ---------------------------------------------------------------------------- the built report
def test_report_writes_every_figure_small_and_embedded(tiny_run: tuple[Path, Path]) -> None:
    run, _ = tiny_run
    html = (run / REPORT_FILE).read_text()
    notes = re.findall(r'class="note">([^<]*)', html)
    for name in FIGURES:
        png = run / REPORT_DIR / name
        assert png.is_file(), f"{name} missing; notes in the page: {notes}"
        assert png.stat().st_size < 250_000
    assert len((run / REPORT_FILE).read_bytes()) < 3_000_000
    sources = re.findall(r'<img src="([^"]{0,40})', html)
    assert len(sources) == len(FIGURES)
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert "http://" not in html and "https://" not in html  # self-contained: nothing to fetch
    assert 'class="note"' not in html.split('id="config"')[0].split('id="losses"')[1]


def test_report_shows_labels_downstream_config_and_timings(tiny_run: tuple[Path, Path]) -> None:
    run, _ = tiny_run
    html = (run / REPORT_FILE).read_text()
    assert "<title>tiny run</title>" in html
    assert "<td>site 1</td><td class=\"num\">9</td>" in html  # node ids sorted as numbers
    assert "ascending node-id order" in html
    assert "<strong>0.660 ± 0.020</strong>" in html and "0.610 ± 0.030" in html
    assert "10 %" in html and "100 %" in html
    assert "data preparation" in html and "61.0 s" in html
    assert "data.crop_size" in html and "scenario.json" in html
    assert "silhouette by site" in html


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync")


@pytest.mark.skipif(_chromium() is None, reason="chromium is not installed (CI installs it in .ci/run; "
                    "locally: apt-get install -y chromium)")
def test_report_renders_with_images_in_headless_chromium(tiny_run: tuple[Path, Path],
                                                         tmp_path: Path) -> None:
    run, _ = tiny_run
    url = (run / REPORT_FILE).resolve().as_uri()
    exe = _chromium()
    assert exe is not None
    base = [exe, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*base, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    body = re.search(r"<body[^>]*>", dom.stdout)
    assert body is not None, dom.stdout[:500]
    ok = re.search(r'data-images-ok="(\d+)"', body.group(0))
    total = re.search(r'data-images-total="(\d+)"', body.group(0))
    assert ok and total, f"the page's image check did not run: {body.group(0)}"
    assert int(total.group(1)) == len(FIGURES)
    assert int(ok.group(1)) == len(FIGURES), "some images did not decode"

    shot = tmp_path / "shot.png"
    proc = subprocess.run([*base, "--window-size=1100,2400", f"--screenshot={shot}", url],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    pixels = imread(shot)[..., :3]
    assert pixels.shape[:2] == (2400, 1100)
    not_white = (pixels < 0.9).any(axis=-1).mean()
    assert not_white > 0.05, f"the screenshot is nearly blank ({not_white:.1%} non-white pixels)"
    assert pixels.std() > 0.1


def test_generic_preview_without_a_phantom_manifest(tiny_run: tuple[Path, Path], tmp_path: Path) -> None:
    run, data_root = tiny_run
    cfg = RunFolder.read(run).config
    assert cfg is not None
    opened = open_sites(RunFolder.read(run), data_root=data_root, site_dirs=["site-0", "site-1"],
                        data=DataConfig.model_validate(cfg["data"]), seed=1, scratch=tmp_path / "cache")
    assert [s.name for s in opened.sites] == ["site-0", "site-1"] and not opened.notes
    caption = write_data_preview(tmp_path / "p.png", data_root=tmp_path, sites=opened.sites,
                                 modalities=MODALITIES)
    assert "first study" in caption
    image = imread(tmp_path / "p.png")
    assert image.std() > 0.05 and (tmp_path / "p.png").stat().st_size < 250_000


def test_simulate_writes_timings_and_never_fails_on_the_report(tmp_path: Path) -> None:
    from simulations.simulate import write_report

    console = Console(file=io.StringIO())
    path = write_report(tmp_path, data_root=tmp_path / "nowhere", sites=["site-0"], console=console,
                        phases={"data_preparation": 1.0, "federation": 2.0})
    assert path == tmp_path / REPORT_FILE and path.is_file()
    assert set(read_timings(tmp_path) or {}) == {"data_preparation", "federation", "report"}
    # An output folder that cannot be written: the report is skipped with a message, not raised.
    assert write_report(tmp_path / "missing" / "run", data_root=tmp_path, sites=["site-0"],
                        console=console, phases={"federation": 1.0}) is None
    assert "could not be written" in console.file.getvalue()  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------- missing inputs
def test_empty_folder_gives_a_report_of_notes(tmp_path: Path) -> None:
    path = write_run_report(tmp_path, data_root=None, site_dirs=None)
    html = path.read_text()
    assert path == tmp_path / REPORT_FILE
    assert html.count('class="note"') >= 6
    assert "metrics.json is missing" in html
    assert "no fine-tuning results were given" in html
    assert not list((tmp_path / REPORT_DIR).glob("*.png"))


def test_broken_inputs_become_notes_and_stale_figures_go(tmp_path: Path) -> None:
    (tmp_path / REPORT_DIR).mkdir()
    (tmp_path / REPORT_DIR / "embeddings.png").write_bytes(b"old")
    (tmp_path / METRICS_FILE).write_text("{not json")
    html = write_run_report(tmp_path, data_root=tmp_path / "nowhere", site_dirs=["site-0"],
                            downstream={"0.1": 3}).read_text()
    assert "Not shown: metrics.json is missing or unreadable" in html
    assert "could not be opened" in html or "Not shown" in html.split('id="data"')[1]
    assert "Could not be drawn (ValueError" in html.split('id="downstream"')[1]
    assert not (tmp_path / REPORT_DIR / "embeddings.png").exists()


# ---------------------------------------------------------------------------- losses
def test_site_labels_follow_numeric_node_order() -> None:
    assert site_labels(["10", "9", "100", "9"]) == {"9": "site 1", "10": "site 2", "100": "site 3"}


def test_loss_series_per_site_with_gaps(tmp_path: Path) -> None:
    metrics = {"rounds": [
        {"round": 2, "train": {"loss": 0.8, "sites": {"7": {"train-loss": 0.7}}},
         "evaluate": {"loss": None, "sites": {}}},
        {"round": 1, "train": {"loss": 1.0, "sites": {"7": {"train-loss": 1.1}, "12": {"train-loss": 0.9}}},
         "evaluate": {"loss": 0.5, "sites": {"12": {"eval-loss": 0.5}}}},
    ]}
    s = loss_series(metrics)
    assert s.rounds == (1, 2)
    assert s.labels == {"7": "site 1", "12": "site 2"}
    assert s.train == {"site 1": (1.1, 0.7), "site 2": (0.9, None)}
    assert s.held_out == {"site 1": (None, None), "site 2": (0.5, None)}
    assert s.train_mean == (1.0, 0.8) and s.held_out_mean == (0.5, None)
    png = plot_losses(s, tmp_path / "l.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="at least one finished round"):
        loss_series({"rounds": []})


# ---------------------------------------------------------------------------- projection
def _clusters(*, spread: float, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, 16)) * 10
    x = np.concatenate([c + spread * rng.normal(size=(20, 16)) for c in centres])
    return x, [f"site-{i}" for i in range(3) for _ in range(20)]


def test_pca_is_deterministic_and_matches_the_svd() -> None:
    x, _ = _clusters(spread=3.0)
    a, b = pca_2d(x), pca_2d(x.copy())
    np.testing.assert_array_equal(a.points, b.points)
    centred = x - x.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    np.testing.assert_allclose(np.abs(a.points), np.abs(centred @ vt[:2].T), atol=1e-9)
    np.testing.assert_allclose(a.explained, (s[:2] ** 2) / (s**2).sum())
    # The sign convention holds for a sign-flipped copy of the data too.
    np.testing.assert_allclose(pca_2d(-x).points, -a.points, atol=1e-9)
    assert pca_2d(np.ones((5, 3))).points.tolist() == [[0.0, 0.0]] * 5


def test_silhouette_matches_the_reference_formula() -> None:
    x = np.array([[0.0], [1.0], [5.0], [7.0]])
    labels = ["a", "a", "b", "b"]
    # a0: a=1, b=(5+7)/2=6 -> 5/6; a1: a=1, b=(4+6)/2=5 -> 4/5;
    # b0: a=2, b=(5+4)/2=4.5 -> 2.5/4.5; b1: a=2, b=(7+6)/2=6.5 -> 4.5/6.5
    expected = np.mean([5 / 6, 4 / 5, 2.5 / 4.5, 4.5 / 6.5])
    assert silhouette_by_group(x, labels) == pytest.approx(expected)
    # Between-site SS: 2*(0.5-3.25)^2 + 2*(6-3.25)^2; total: sum of squared deviations.
    total = float(((x - x.mean()) ** 2).sum())
    assert site_variance_fraction(x, labels) == pytest.approx(4 * 2.75**2 / total)


@pytest.mark.parametrize(("spread", "dominated"), [(0.3, True), (1e4, False)], ids=["clustered", "mixed"])
def test_site_scores_separate_clustered_from_mixed(spread: float, dominated: bool) -> None:
    x, sites = _clusters(spread=spread)
    sil, frac = silhouette_by_group(x, sites), site_variance_fraction(x, sites)
    if dominated:
        assert sil > 0.8 and frac > 0.9
    else:
        assert abs(sil) < 0.1 and frac < 0.1


def test_site_scores_need_two_sites() -> None:
    with pytest.raises(ValueError, match="at least two sites"):
        silhouette_by_group(np.zeros((3, 2)), ["a", "a", "a"])
    with pytest.raises(ValueError, match="one label per embedding"):
        site_variance_fraction(np.zeros((3, 2)), ["a", "b"])


def test_effective_dimensions_counts_the_directions_used() -> None:
    rng = np.random.default_rng(0)
    iso = rng.standard_normal((4000, 5)) @ np.eye(5, 16)      # 5 equal directions in 16 dims
    assert effective_dimensions(iso) == pytest.approx(5, rel=0.05)
    line = rng.standard_normal((50, 1)) @ rng.standard_normal((1, 16))
    assert effective_dimensions(line) == pytest.approx(1, rel=1e-6)
    skewed = iso * np.array([10.0, 1, 1, 1, 1, *[0] * 11])     # one direction dominates
    assert 1 < effective_dimensions(skewed) < 1.2
    assert effective_dimensions(np.ones((4, 3))) == 0.0


# ---------------------------------------------------------------------------- tables, AdaDN, timings
def test_downstream_table_shapes() -> None:
    table = downstream_table({"config": {}, "machine": "2-core CPU", "results": DOWNSTREAM})
    assert table.headers == ("labels", "variant", "Dice (mean ± sd)", "accuracy (mean ± sd)")
    assert table.rows[1] == ("10 %", "federated", "0.660 ± 0.020", "0.740 ± 0.040")
    assert (1, 2) in table.bold and (0, 2) not in table.bold
    assert table.notes == ("machine: 2-core CPU",)
    rows = downstream_table([{"variant": "scratch", "dice": 0.5}, {"variant": "fed", "auc": 0.9}])
    assert rows.headers == ("variant", "dice", "auc")
    assert rows.rows == (("scratch", "0.5", "—"), ("fed", "—", "0.9"))
    with pytest.raises(ValueError, match="label_fraction"):
        downstream_table({"0.1": 0.5})


def test_adadn_target_is_never_the_sites_own_release() -> None:
    own, near, far = _stats(0.5, 0.1), _stats(0.55, 0.1), _stats(0.9, 0.05)
    target = choose_target([own, far, near], own=own, src_mean=0.5, released={"site-3": far})
    assert target is not None and target.stats == far and target.label == "site-3's pooled statistics"
    anonymous = choose_target([own, near], own=own, src_mean=0.5, released={})
    assert anonymous is not None and anonymous.label == "pool entry 2 of 2"
    assert choose_target([own], own=own, src_mean=0.5, released={}) is None


def test_timings_round_trip(tmp_path: Path) -> None:
    write_timings(tmp_path, {"data_preparation": 1.25, "federation": 30, "report": 4.5})
    assert read_timings(tmp_path) == {"data_preparation": 1.25, "federation": 30.0, "report": 4.5}
    assert json.loads((tmp_path / "timings.json").read_text())["total"] == 35.75
    with pytest.raises(ValueError, match="non-negative seconds"):
        write_timings(tmp_path, {"federation": -1.0})
    assert read_timings(tmp_path / "nowhere") is None
