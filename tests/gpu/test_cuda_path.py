"""The CUDA path, end to end (marker ``gpu``; skipped without CUDA; `make gpu-check` runs it).

Device choice, bf16 autocast with finite losses for every pretext task and the default
mixture, a site's training and evaluation round on CUDA (also with channels-last weights and
with a compiled encoder), `fedmm finetune` on CUDA, and a
4-site `simulate` whose sites share one GPU through fractional GPU resources.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from client.device import autocast_for, select_device
from client.evaluate import evaluate_round
from client.train import train_round
from shared.config import RunConfig, SiteConfig, TrainConfig
from shared.model import build_encoder
from shared.pretext import TaskContext, available_pretexts, build_pretext
from shared.pretext.mixture import PretextMixture
from simulations.scenario import SimulationConfig
from simulations.simulate import federation_config
from tests.client.site_data import SPACING, initial_arrays, round_config, six_study_site, write_site
from tests.shared.test_pretext_registry import MODS, make_batch, pool

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (run `make gpu-check` on a GPU)"),
]
CUDA = torch.device("cuda")


def test_auto_and_cuda_choose_the_gpu_cpu_stays_cpu() -> None:
    assert select_device(TrainConfig(device="auto")).type == "cuda"
    assert select_device(TrainConfig(device="cuda")).type == "cuda"
    assert select_device(TrainConfig(device="cpu")).type == "cpu"


def _task(name: str):
    cfg = RunConfig.model_validate({"pretext": {"name": name}}).pretext[0]
    return build_pretext(cfg, context=TaskContext(modalities=MODS, pool=pool(), server_round=99,
                                                  crop_size=32))


@pytest.mark.parametrize("name", available_pretexts())
def test_every_task_trains_under_bf16_autocast_on_cuda(name: str) -> None:
    task = _task(name)
    torch.manual_seed(0)
    encoder = build_encoder("gpu-base").to(CUDA)
    head = task.build_head(encoder).to(CUDA)
    views = task.make_views(make_batch(0), torch.Generator().manual_seed(0)).to(CUDA)
    with autocast_for(CUDA, enabled=True):
        loss = task.loss(views, encoder=encoder, head=head)
    assert torch.isfinite(loss), f"{name}: {loss}"
    loss.float().backward()
    grads = [p.grad for p in encoder.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_the_default_mixture_trains_under_bf16_autocast_on_cuda() -> None:
    cfg = RunConfig()
    torch.manual_seed(0)
    encoder = build_encoder("gpu-base").to(CUDA)
    mixture = PretextMixture.build(cfg.pretext, context=TaskContext(
        modalities=MODS, pool=pool(), server_round=1, crop_size=32), encoder=encoder, seed=0)
    mixture.heads.to(CUDA)
    step = mixture.step(make_batch(1), torch.Generator().manual_seed(0), encoder=encoder,
                        device=CUDA, autocast=lambda: autocast_for(CUDA, enabled=True))
    assert step.total is not None and torch.isfinite(step.total)
    assert set(step.per_task) == set(cfg.pretext_names)
    step.total.backward()


@pytest.fixture
def site(tmp_path: Path) -> SiteConfig:
    return six_study_site(tmp_path)


def test_a_site_round_trains_and_evaluates_on_cuda(site: SiteConfig) -> None:
    cfg = round_config("gpu-base", local_steps=3, device="cuda")
    arrays = initial_arrays("gpu-base")
    torch.cuda.reset_peak_memory_stats()
    result = train_round(cfg=cfg, site=site, global_arrays=arrays, pool=None, server_round=1)
    assert torch.cuda.max_memory_allocated() > 0, "nothing ran on the GPU"
    assert math.isfinite(result.metrics["train-loss"]) and result.metrics["steps"] == 3
    assert all(v.device.type == "cpu" for v in result.arrays.values())  # what leaves is on CPU
    held = evaluate_round(cfg=cfg, site=site, global_arrays=result.arrays, pool=None, server_round=1)
    assert math.isfinite(held.metrics["eval-loss"])


@pytest.mark.parametrize("option", ["channels_last", "compile"])
def test_a_site_round_trains_on_cuda_with_each_speed_option(site: SiteConfig, option: str) -> None:
    cfg = round_config("gpu-base", local_steps=3, device="cuda", **{option: True})
    arrays = initial_arrays("gpu-base")
    result = train_round(cfg=cfg, site=site, global_arrays=arrays, pool=None, server_round=1)
    assert math.isfinite(result.metrics["train-loss"]) and result.metrics["steps"] == 3
    assert result.arrays.keys() == arrays.keys()
    assert all(v.device.type == "cpu" and v.is_contiguous() for v in result.arrays.values())


def test_finetune_runs_on_cuda(tmp_path: Path) -> None:
    from client.finetune import FinetuneConfig, run_finetune
    from shared.config import DataConfig

    for name in ("a", "b"):
        write_site(tmp_path / "sites" / name, num_studies=3)
    cfg = FinetuneConfig(task="segmentation", steps=2, crop_size=16, class_size=16,
                         data=DataConfig(spacing_mm=SPACING, crop_size=16, hist_bins=8))
    torch.cuda.reset_peak_memory_stats()
    res = run_finetune(encoder=None, cfg=cfg, data_root=tmp_path / "sites", train_sites=["a"],
                       test_sites=["b"], cache_dir=tmp_path / "cache", out_dir=tmp_path / "out")
    assert torch.cuda.max_memory_allocated() > 0, "fine-tuning did not use the GPU"
    assert math.isfinite(res.metrics["dice_mean"])


def test_four_sites_share_one_gpu_in_simulate(tmp_path: Path) -> None:
    from tests.integration.test_simulate import leftover_processes, simulate, tiny_scenario

    assert "client-resources-num-gpus=0.25" in federation_config(4, SimulationConfig())
    scenario = tmp_path / "four.toml"
    scenario.write_text(tiny_scenario(sites=4))
    out = tmp_path / "run"
    proc = simulate("--config", str(scenario), "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (rnd,) = json.loads((out / "metrics.json").read_text())["rounds"]
    assert len(rnd["train"]["sites"]) == 4 and rnd["train"]["aggregated"]
    card = json.loads((out / "model_card.json").read_text())
    assert card["preset"] == "gpu-base"  # resolved on a CUDA server
    assert leftover_processes(out / ".flwr") == []
