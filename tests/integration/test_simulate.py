"""A real federation through Flower's simulation engine, driven by the `simulate` CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from shared.flower_cli import stop_processes_using_home
from shared.model import load_pretrained_encoder
from tests.fedmm_cli import run_fedmm

pytestmark = pytest.mark.integration

def tiny_scenario(*, local_steps: int = 2, num_rounds: int = 1, sites: int = 2, extra: str = "",
                  transfer_dtype: str = "float32") -> str:
    """A seconds-long scenario: 2 (or ``sites``) phantom sites x 4 subjects at 4 mm, 16^3 crops."""
    return f"""
seed = 1
[simulation]
sites = {sites}
[simulation.phantom]
subjects_per_site = 4
spacing_mm = 4.0
[data]
spacing_mm = 4.0
crop_size = 16
batch_size = 2
eval_fraction = 0.25
[train]
local_steps = {local_steps}
eval_batches = 1
[federation]
num_rounds = {num_rounds}
min_nodes = {sites}
round_timeout_s = 300
connect_timeout_s = 120
transfer_dtype = "{transfer_dtype}"
[privacy]
min_studies = 2
# A simulation has no site limits: an epsilon this large makes the noisy counts of four
# patients clear k = 2 (almost) surely, so the run exercises a non-empty pool.
epsilon = 1000.0
{extra}"""


# The other integration tests run float32 (the default); this one sends 16-bit updates, so
# the cast, the server's checks on it and fp32 aggregation run through Flower at no extra run.
TINY = tiny_scenario(transfer_dtype="bfloat16")


def simulate(*args: str, cwd: Path, timeout_s: float = 600) -> subprocess.CompletedProcess[str]:
    """Run the `simulate` command; past ``timeout_s`` it is killed with the SuperLink, SuperExec
    and Ray it started under ``cwd`` (they run in sessions of their own)."""
    exe = Path(sys.executable).parent / "simulate"
    try:
        return subprocess.run([str(exe), *args], cwd=cwd, capture_output=True, text=True,
                              timeout=timeout_s)
    except subprocess.TimeoutExpired:
        stop_processes_using_home(cwd.resolve(), nested=True, grace_s=5.0)
        raise


def leftover_processes(marker: Path) -> list[str]:
    out = subprocess.run(["pgrep", "-af", str(marker)], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if "pgrep" not in line]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, subprocess.CompletedProcess[str]]:
    work = tmp_path_factory.mktemp("sim")
    scenario = work / "tiny.toml"
    scenario.write_text(TINY)
    out = work / "run"
    proc = simulate("--config", str(scenario), "--out", str(out),
                    "--mlflow", (work / "mlruns").as_uri(), cwd=work)
    return work, out, proc


def test_two_sites_one_round_exports_a_loadable_encoder(tiny_run) -> None:
    _, out, proc = tiny_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    encoder = load_pretrained_encoder(out / "encoder.safetensors")
    assert encoder(torch.rand(1, 1, 16, 16, 16)).shape == (1, encoder.out_dim)
    card = json.loads((out / "model_card.json").read_text())
    assert card["rounds"] == 1 and card["sites"] == 2
    assert card["pool"]["contributors"] == 2 and "t1" in card["pool"]["modalities"]
    privacy = card["statistics_privacy"]
    assert privacy["unit"] == "patient" and privacy["release_epsilons"] == [1000.0, 1000.0]
    assert privacy["total_epsilon"] == 2000.0


def test_metrics_per_round_and_site(tiny_run) -> None:
    _, out, _ = tiny_run
    metrics = json.loads((out / "metrics.json").read_text())
    (rnd,) = metrics["rounds"]
    assert rnd["train"]["aggregated"] and len(rnd["train"]["sites"]) == 2
    for site in rnd["train"]["sites"].values():
        assert site["num-examples"] > 0 and site["train-loss"] > 0
        assert site["bytes-sent-by-site"] > 0 and site["bytes-received-by-site"] > 0
        assert site["seconds"] > 0
    assert all(s["eval-loss"] is not None for s in rnd["evaluate"]["sites"].values())


def test_metrics_also_reach_tensorboard_and_mlflow_and_the_user_is_told_where(tiny_run, monkeypatch) -> None:
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 reads file: stores only with it
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    work, out, proc = tiny_run
    said = " ".join(proc.stdout.split())
    assert f"tensorboard --logdir {out}" in said and "MLflow: experiment 'fedmm'" in said
    loss = json.loads((out / "metrics.json").read_text())["rounds"][0]["train"]["loss"]
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("train/loss")] == [(1, pytest.approx(loss))]
    client = MlflowClient(tracking_uri=(work / "mlruns").as_uri())
    (run,) = client.search_runs([client.get_experiment_by_name("fedmm").experiment_id])
    assert run.info.status == "FINISHED"
    assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "train/loss")] == [
        (1, pytest.approx(loss))]


def test_bfloat16_replies_are_about_half_the_float32_encoder(tiny_run) -> None:
    _, out, _ = tiny_run
    (rnd,) = json.loads((out / "metrics.json").read_text())["rounds"]
    transfer = rnd["train"]["transfer"]
    assert transfer["dtype"] == "bfloat16" and 0.49 < transfer["ratio_to_float32"] < 0.55
    for site in rnd["train"]["sites"].values():  # received: the float32 broadcast
        assert 0.49 < site["bytes-sent-by-site"] / site["bytes-received-by-site"] < 0.55
    assert transfer["encoder_float32_bytes"] == site["bytes-received-by-site"]


def test_the_encoder_changed_and_only_global_entries_were_checkpointed(tiny_run) -> None:
    _, out, _ = tiny_run
    r0 = load_file(out / "checkpoints" / "round_0000.safetensors")
    r1 = load_file(out / "checkpoints" / "round_0001.safetensors")
    assert r0.keys() == r1.keys() and all(k.startswith("encoder.") for k in r0)
    assert any(not torch.equal(r0[k], r1[k]) for k in r0)
    assert not any(".adn.N." in k for k in r0), "site-local norm parameters reached the server"


def test_site_state_is_kept_on_the_sites_disk(tiny_run) -> None:
    _, out, _ = tiny_run
    states = sorted((out / "sites").glob("site-*/site_state.pt"))
    assert len(states) == 2
    # their preprocessed studies are in this machine's cache, shared by runs; the run's
    # folder keeps each site's study index only
    assert (out / "sites" / "site-0" / "cache" / "study_index.json").is_file()
    assert not list((out / "sites").glob("site-*/cache/samples"))
    assert len(list((Path(os.environ["FEDMM_CACHE"]) / "preprocessed").glob("*.pt"))) >= 8


def test_no_background_process_is_left(tiny_run) -> None:
    _, out, _ = tiny_run
    assert leftover_processes(out / ".flwr") == []


@pytest.mark.slow
def test_resume_continues_from_the_last_checkpoint(tiny_run) -> None:
    work, out, first = tiny_run
    assert first.returncode == 0
    proc = simulate("--resume", str(out), "--rounds", "2", cwd=work)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert [r["round"] for r in metrics["rounds"]] == [1, 2]
    assert (out / "checkpoints" / "round_0002.safetensors").exists()
    assert leftover_processes(out / ".flwr") == []


def test_bad_options_fail_before_anything_starts(tmp_path: Path) -> None:
    result = run_fedmm("simulate", "--rounds", "0", "--out", str(tmp_path / "x"))
    assert result.exit_code == 2
    assert "federation.num_rounds" in result.output
    assert not (tmp_path / "x").exists()
    result = run_fedmm("simulate", "--pretext", "jigsaw")
    assert result.exit_code == 2 and "available" in result.output
