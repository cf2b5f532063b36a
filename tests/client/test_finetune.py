"""Fine-tuning on tiny labelled sites: fair splits, label fractions, both tasks, CLI errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from client.finetune import FinetuneConfig, run_finetune
from client.finetune.data import has_enhancing_tumour, label_subset
from client.finetune.run import encoder_warmup, parameter_groups, resolve_encoder, scratch_preset
from client.finetune.segmentation import _crop_transform, _prepare, region_scores, to_regions
from client.finetune.step import optimizer_step
from server.checkpoints import export_encoder
from shared.config import DataConfig
from shared.model import build_encoder, build_segmenter
from shared.model.downstream import encoder_parameters
from tests.client.site_data import SPACING, write_site
from tests.fedmm_cli import run_fedmm

DATA = DataConfig(spacing_mm=SPACING, crop_size=16, hist_bins=8)


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ft")
    for name in ("a", "b", "c"):
        write_site(root / name, num_studies=3)
    return root


def cfg(task: str, **kw) -> FinetuneConfig:
    return FinetuneConfig(task=task, steps=2, crop_size=16, class_size=16, data=DATA, **kw)


@pytest.mark.parametrize("task", ["segmentation", "classification"])
def test_finetune_runs_and_reports_metrics(sites: Path, tmp_path: Path, task: str) -> None:
    res = run_finetune(encoder=None, cfg=cfg(task), data_root=sites, train_sites=["a", "b"],
                       test_sites=["c"], cache_dir=tmp_path / "cache", out_dir=tmp_path / "out")
    keys = {"dice_tc", "dice_wt", "dice_et", "dice_mean"} if task == "segmentation" else {
        "acc", "balanced_acc", "auc"}
    assert keys <= set(res.metrics) and res.test_studies == 3 and res.train_studies == 6
    assert json.loads((tmp_path / "out" / "finetune.json").read_text())["task"] == task


def test_pretrained_and_scratch_share_everything_but_the_encoder(sites: Path, tmp_path: Path) -> None:
    torch.manual_seed(5)
    path, _ = export_encoder(tmp_path / "enc", build_encoder("cpu-small").state_dict(),
                             preset="cpu-small", card={})
    common = {"cfg": cfg("segmentation", linear_probe=True), "data_root": sites,
              "train_sites": ["a"], "test_sites": ["b"], "cache_dir": tmp_path / "cache"}
    scratch, pre = run_finetune(encoder="none", **common), run_finetune(encoder=path, **common)
    assert scratch.train_studies == pre.train_studies and scratch.encoder == "none"
    assert pre.encoder == str(path)


def test_label_fraction_is_a_fixed_seeded_subset() -> None:
    samples = [{"i": i} for i in range(20)]
    a = label_subset(samples, fraction=0.1, seed=3)
    assert a == label_subset(samples, fraction=0.1, seed=3) and len(a) == 2
    assert a != label_subset(samples, fraction=0.1, seed=4)
    assert len(label_subset(samples, fraction=0.5, seed=0)) == 10


def test_overlapping_sites_are_refused(sites: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="overlap"):
        run_finetune(encoder=None, cfg=cfg("segmentation"), data_root=sites, train_sites=["a"],
                     test_sites=["a"], cache_dir=tmp_path)


def test_targets_follow_brats_numbering() -> None:
    label = torch.zeros(1, 4, 4, 4, dtype=torch.uint8)
    label[0, 0, 0, 0], label[0, 1, 1, 1], label[0, 2, 2, 2] = 1, 2, 4
    tc, wt, et = to_regions(label)
    assert tc.sum() == 2 and wt.sum() == 3 and et.sum() == 1
    assert has_enhancing_tumour(np.array([0, 4])) == 1 and has_enhancing_tumour(np.array([1, 2])) == 0


def test_scratch_is_the_network_pretraining_builds_on_the_same_hardware() -> None:
    auto = FinetuneConfig()
    assert scratch_preset(auto, torch.device("cpu")) == "cpu-small"
    assert scratch_preset(auto, torch.device("cuda")) == "gpu-base"
    pinned = FinetuneConfig(preset="cpu-small")
    assert scratch_preset(pinned, torch.device("cuda")) == "cpu-small"


def test_brats_dice_is_split_into_overlap_and_false_positives() -> None:
    # Three cases x (TC, WT, ET). Case 2 has no ET: it scored 0 there (something predicted).
    # Case 1 has no tumour at all: 1 everywhere (nothing predicted).
    dice = np.array([[0.6, 0.8, 0.4], [1.0, 1.0, 1.0], [0.5, 0.7, 0.0]])
    present = np.array([[1, 1, 1], [0, 0, 0], [1, 1, 0]])
    s = region_scores(dice, present)
    assert s["dice_et"] == pytest.approx(1.4 / 3) and s["dice_mean"] == pytest.approx(
        np.mean([2.1 / 3, 2.5 / 3, 1.4 / 3]))
    assert s["dice_tc_present"] == pytest.approx(0.55) and s["dice_et_present"] == pytest.approx(0.4)
    assert s["false_positive_tc"] == 0.0 and s["false_positive_et"] == 0.5
    assert s["dice_present_mean"] == pytest.approx(np.mean([0.55, 0.75, 0.4]))
    every_case_has_tumour = region_scores(dice[:1], present[:1])
    assert not any(k.startswith("false_positive") for k in every_case_has_tumour)


def test_missing_encoder_file_says_what_was_expected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"encoder\.safetensors"):
        resolve_encoder(tmp_path)


def test_cli_reports_bad_options(sites: Path) -> None:
    result = run_fedmm("finetune", "--encoder", "none", "--data-root", str(sites), "--label-fraction", "0")
    assert result.exit_code == 2 and "label_fraction" in result.output


def test_cli_context_fusion_trains_with_the_block(sites: Path, tmp_path: Path) -> None:
    result = run_fedmm("finetune", "--encoder", "none", "--data-root", str(sites), "--task",
                       "segmentation", "--context-fusion", "--steps", "1", "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output[-3000:] + repr(result.exception)
    doc = json.loads((tmp_path / "out" / "finetune.json").read_text())
    assert doc["config"]["context_fusion"] is True and "dice_mean" in doc["metrics"]


def test_cli_frozen_warmup_is_recorded_and_checked(sites: Path, tmp_path: Path) -> None:
    result = run_fedmm("finetune", "--encoder", "none", "--data-root", str(sites), "--steps", "2",
                       "--encoder-frozen-steps", "1", "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output[-3000:] + repr(result.exception)
    doc = json.loads((tmp_path / "out" / "finetune.json").read_text())
    assert doc["config"]["encoder_frozen_steps"] == 1 and len(doc["losses"]) == 2
    bad = run_fedmm("finetune", "--encoder", "none", "--data-root", str(sites), "--linear-probe",
                    "--encoder-frozen-steps", "1")
    assert bad.exit_code == 2 and "has no effect" in bad.output


def test_cli_small_region_removal_is_recorded_and_checked(sites: Path, tmp_path: Path) -> None:
    result = run_fedmm("finetune", "--encoder", "none", "--data-root", str(sites), "--steps", "1",
                       "--min-region-ml", "0.5", "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output[-3000:] + repr(result.exception)
    assert json.loads((tmp_path / "out" / "finetune.json").read_text())["config"]["min_region_ml"] == 0.5
    bad = run_fedmm("finetune", "--encoder", "none", "--data-root", str(sites), "--min-region-ml", "-1")
    assert bad.exit_code == 2 and "min_region_ml" in bad.output


@pytest.mark.parametrize(("scale", "probe"), [(0.1, False), (1.0, True)])
def test_encoder_trains_at_its_own_rate_or_not_at_all(scale: float, probe: bool) -> None:
    model = build_segmenter(None, in_channels=2, out_channels=3)
    c = cfg("segmentation", encoder_lr_scale=scale, linear_probe=probe)
    opt = torch.optim.AdamW(parameter_groups(model, c), lr=c.lr)
    encoder = {id(p) for p in encoder_parameters(model)}
    head = {id(p) for p in opt.param_groups[0]["params"]}
    assert not head & encoder and len(head) + len(encoder) == len(list(model.parameters()))
    if probe:
        assert len(opt.param_groups) == 1
        assert not any(p.requires_grad for p in encoder_parameters(model))
    else:
        assert opt.param_groups[0]["lr"] == c.lr
        assert opt.param_groups[1]["lr"] == pytest.approx(c.lr * scale)
        assert {id(p) for p in opt.param_groups[1]["params"]} == encoder


def test_frozen_encoder_warmup_moves_the_head_first_then_the_encoder() -> None:
    torch.manual_seed(0)
    model = build_segmenter(None, in_channels=2, out_channels=3)
    c = cfg("segmentation", encoder_frozen_steps=2, encoder_lr_scale=0.5)
    opt = torch.optim.AdamW(parameter_groups(model, c), lr=c.lr, weight_decay=0.1)
    schedule = encoder_warmup(opt, c)
    assert schedule is not None
    x, y = torch.randn(1, 2, 16, 16, 16), torch.rand(1, 3, 16, 16, 16)

    def snapshot(params: list[torch.nn.Parameter]) -> list[torch.Tensor]:
        return [p.detach().clone() for p in params]

    encoder, head = encoder_parameters(model), opt.param_groups[0]["params"]
    before_enc, before_head = snapshot(encoder), snapshot(head)
    lrs = []
    for _ in range(3):
        lrs.append([g["lr"] for g in opt.param_groups])
        optimizer_step(opt, torch.nn.functional.mse_loss(model(x), y), schedule)
        if len(lrs) == 2:  # after the two frozen steps: encoder exactly as it was, head moved
            assert all(torch.equal(a, b) for a, b in zip(before_enc, snapshot(encoder), strict=True))
            assert not all(torch.equal(a, b) for a, b in zip(before_head, snapshot(head), strict=True))
    assert lrs == [[c.lr, 0.0], [c.lr, 0.0], [c.lr, pytest.approx(c.lr * 0.5)]]
    assert not all(torch.equal(a, b) for a, b in zip(before_enc, snapshot(encoder), strict=True))
    assert encoder_warmup(opt, cfg("segmentation")) is None


def test_frozen_warmup_and_linear_probe_are_refused_together() -> None:
    with pytest.raises(ValueError, match="encoder_frozen_steps=3 has no effect"):
        cfg("segmentation", encoder_frozen_steps=3, linear_probe=True)


def test_intensity_augmentation_changes_modalities_apart_and_keeps_background() -> None:
    rng = np.random.default_rng(0)
    image = np.zeros((2, 20, 20, 20), np.float32)
    image[:, 2:18, 2:18, 2:18] = rng.uniform(0.2, 1.0, (2, 16, 16, 16))
    label = np.zeros((1, 20, 20, 20), np.uint8)
    label[0, 8:12, 8:12, 8:12] = 2
    prepared = _prepare([{"image": torch.as_tensor(image), "label": torch.as_tensor(label)}], 16)[0]
    plain = [_crop_transform(16, seed, augment_intensity=False)(dict(prepared))[0] for seed in range(6)]
    aug = [_crop_transform(16, seed, augment_intensity=True)(dict(prepared))[0] for seed in range(6)]
    changed = 0
    for p, a in zip(plain, aug, strict=True):
        x, y = np.asarray(p["image"]), np.asarray(a["image"])
        np.testing.assert_array_equal(np.asarray(p["label"]), np.asarray(a["label"]))  # same crop
        assert ((x == 0) == (y == 0)).all()                 # background stays exactly 0
        ratio = [float(y[c][x[c] > 0].mean() / x[c][x[c] > 0].mean()) for c in range(2)]
        changed += abs(ratio[0] - ratio[1]) > 1e-3           # modalities change apart
    assert changed >= 3
