"""The quality benchmark's fine-tuning jobs: labelled subsets shared by every variant, paired."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest

ENCODERS = {"federated": "f.safetensors", "centralized": "c.safetensors",
            "local_only": {"site-0": "l0.safetensors", "site-1": "l1.safetensors"}}


def test_every_variant_gets_every_subset(quality: ModuleType) -> None:
    cfg = quality.QualityConfig(label_subsets=3, tasks=("segmentation",), label_fractions=(0.1,))
    jobs = quality.seed_jobs(cfg, seed=2, encoders=ENCODERS)
    assert len(jobs) == 3 * (1 + 1 + 1 + 2)            # subsets x (scratch, fed, cen, 2 local sites)
    for subset in range(3):
        variants = sorted(j.variant for j in jobs if j.subset == subset)
        assert variants == ["centralized", "federated", "local_only", "local_only", "scratch"]
    seeds = {quality.finetune_seed(j.seed, j.subset) for j in jobs}
    assert seeds == {2, 1002, 2002}                    # draw 0 is the seed itself
    assert quality.finetune_seed(0, 1) != quality.finetune_seed(1, 0)


def test_paired_differences_match_variants_on_the_same_subset(quality: ModuleType) -> None:
    cfg = quality.QualityConfig(seeds=(0, 1), label_subsets=2, tasks=("segmentation",),
                                label_fractions=(0.1,))
    jobs = [j for seed in cfg.seeds for j in quality.seed_jobs(cfg, seed=seed, encoders=ENCODERS)]
    for j in jobs:  # scratch scores 0.1 * (seed + subset); others add a fixed offset
        offset = {"scratch": 0.0, "federated": 0.05, "centralized": -0.02,
                  "local_only": 0.01 if j.site == "site-0" else 0.03}[j.variant]
        j.metrics = {"dice_mean": 0.1 * (j.seed + j.subset) + offset}
    paired = quality.paired_points(jobs, cfg, fraction=0.1)
    assert set(paired) == {"federated", "centralized", "local_only"}
    for variant, expected in (("federated", 5.0), ("centralized", -2.0), ("local_only", 2.0)):
        assert len(paired[variant]) == 4
        assert all(abs(d - expected) < 1e-9 for d in paired[variant])
    table = quality.paired_markdown(paired)
    assert "| federated | +5.0 ± 0.0 | 0.0 | 4 | 4 |" in table
    assert "| centralized | -2.0 ± 0.0 | 0.0 | 4 | 0 |" in table
    vs_fed = quality.paired_points(jobs, cfg, fraction=0.1, reference="federated")
    assert set(vs_fed) == {"scratch", "centralized", "local_only"}
    assert all(abs(d + 7.0) < 1e-9 for d in vs_fed["centralized"])


def test_control_variants_are_fine_tuned_on_the_same_subsets(quality: ModuleType) -> None:
    cfg = quality.QualityConfig(label_subsets=2, tasks=("segmentation",), label_fractions=(0.1,),
                                variants=("scratch", "federated", "federated_iid", "cyclic"))
    jobs = quality.seed_jobs(cfg, seed=0, encoders={**ENCODERS, "federated_iid": "i.safetensors",
                                                    "cyclic": "y.safetensors"})
    for subset in range(2):
        assert sorted(j.variant for j in jobs if j.subset == subset) == [
            "cyclic", "federated", "federated_iid", "scratch"]


def test_listed_options_are_checked_before_anything_runs(quality: ModuleType,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    for argv, expected in ((["--variants", "federated,foo"], "got ['foo']"),
                           (["--tasks", "x"], "segmentation and/or classification"),
                           (["--label-fractions", "0,0.5"], "fractions in (0, 1], got [0.0]"),
                           (["--seeds", "a"], "comma-separated int values, got 'a'")):
        try:
            quality.main(argv)
        except SystemExit as exit_:
            assert exit_.code == 2
        else:
            raise AssertionError(f"{argv} was accepted")
        assert expected in capsys.readouterr().err


def test_update_dp_variants_pretrain_with_their_noise_and_are_fine_tuned_like_the_others(
        quality: ModuleType) -> None:
    from shared.config import validate_run_config

    cfg = quality.QualityConfig(variants=("scratch", "federated", "federated_dp"),
                                tasks=("segmentation",), label_fractions=(0.1,), label_subsets=1)
    plain = quality.pretraining_config(cfg, seed=0, num_sites=3)
    noised = validate_run_config(quality.pretraining_config(cfg, seed=0, num_sites=3, update_noise=1.0,
                                                            clip=0.3), source="test")
    assert "updates" not in plain["privacy"]
    assert noised.privacy.updates.enabled and noised.privacy.updates.clipping_norm == 0.3
    assert noised.privacy.updates.noise_multiplier == quality.UPDATE_DP_VARIANTS["federated_dp"]
    jobs = quality.seed_jobs(cfg, seed=0, encoders={**ENCODERS, "federated_dp": "dp.safetensors"})
    assert sorted(j.variant for j in jobs) == ["federated", "federated_dp", "scratch"]


def test_the_update_dp_clip_is_the_median_update_norm_of_the_run_without_dp(
        quality: ModuleType, tmp_path: Path) -> None:
    rounds = [{"train": {"sites": {"1": {"update-norm": 1.0}, "2": {"update-norm": 4.0},
                                   "3": {"train-loss": 0.5}}}},
              {"train": {"sites": {"1": {"update-norm": 2.0}, "2": {"update-norm": 9.0}}}}]
    (tmp_path / "metrics.json").write_text(json.dumps({"rounds": rounds}))
    assert quality.median_update_norm(tmp_path) == 3.0
    with pytest.raises(SystemExit, match="add federated to --variants"):
        quality.median_update_norm(tmp_path / "missing")
    (tmp_path / "metrics.json").write_text(json.dumps({"rounds": [{"train": {"sites": {}}}]}))
    with pytest.raises(SystemExit, match="found none"):
        quality.median_update_norm(tmp_path)


def test_update_dp_variants_without_federated_need_a_clip(quality: ModuleType, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        quality.main(["--variants", "scratch,federated_dp"])
    assert exit_.value.code == 2 and "pass --update-dp-clip" in capsys.readouterr().err


def test_update_privacy_table_shows_each_seeds_clip_and_epsilon(quality: ModuleType) -> None:
    card = {"clipping_norm": 0.123456, "epsilon": 12.34, "delta": 1e-5}
    text = quality.update_privacy_markdown({"0": {"federated_dp": card}, "1": {"federated_dp": {
        **card, "clipping_norm": 0.2, "epsilon": 11.0}}})
    assert "| federated_dp | 1 | 0.123, 0.2 | 12.3 (1e-05), 11.0 (1e-05) |" in text
    assert quality.update_privacy_markdown({}) == ""
