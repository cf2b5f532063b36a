"""The quality benchmark's fine-tuning jobs: one labelled draw per seed shared by every
variant of a setting, per-seed paired differences, the budget check, the options."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest

from simulations.benchmark_sites import SiteRoles

ROLES = SiteRoles(pretrain_root=Path("p"), eval_root=Path("e"),
                  evaluated={"in_federation": "site-2", "unseen_site": "site-4"})
ENCODERS = {"federated": "f.safetensors", "centralized": "c.safetensors",
            "local_only/site-2": "l2.safetensors", "local_only/site-4": "l4.safetensors"}


def test_every_setting_gets_its_variants_and_its_own_local_encoder(quality: ModuleType) -> None:
    cfg = quality.QualityConfig(tasks=("segmentation",), label_fractions=(0.1, 1.0))
    jobs = quality.seed_jobs(cfg, seed=3, roles=ROLES, encoders=ENCODERS)
    inside = sorted(j.variant for j in jobs if j.setting == "in_federation" and j.fraction == 0.1)
    unseen = sorted(j.variant for j in jobs if j.setting == "unseen_site" and j.fraction == 0.1)
    assert inside == ["centralized", "federated", "local_only", "scratch"]
    assert unseen == ["federated", "local_only", "scratch"]      # centralized: in_federation only
    local = {j.setting: j.encoder for j in jobs if j.variant == "local_only"}
    assert local == {"in_federation": "l2.safetensors", "unseen_site": "l4.safetensors"}
    assert {j.site for j in jobs if j.setting == "unseen_site"} == {"site-4"}
    assert {j.seed for j in jobs} == {3} and len(jobs) == 2 * (4 + 3)


def test_paired_differences_are_per_seed_on_the_same_draw(quality: ModuleType) -> None:
    cfg = quality.QualityConfig(seeds=(0, 1, 2), tasks=("segmentation",), label_fractions=(0.1,))
    jobs = [j for seed in cfg.seeds for j in quality.seed_jobs(cfg, seed=seed, roles=ROLES,
                                                                 encoders=ENCODERS)]
    offsets = {"scratch": 0.0, "federated": 0.05, "centralized": -0.02, "local_only": 0.01}
    for j in jobs:  # scratch scores 0.1 * seed; the others add their offset (+ seed noise)
        noise = 0.001 * j.seed * (j.variant == "federated")
        j.metrics = {"dice_mean": 0.1 * j.seed + offsets[j.variant] + noise}
    paired = quality.paired_differences(jobs, cfg)
    fs = paired["in_federation"]["0.1"]["federated_minus_scratch"]
    assert fs["per_seed"] == pytest.approx([5.0, 5.1, 5.2]) and fs["mean"] == pytest.approx(5.1)
    assert fs["ci95"][0] < 5.1 < fs["ci95"][1]
    assert paired["in_federation"]["0.1"]["federated_minus_local_only"]["per_seed"] == pytest.approx(
        [4.0, 4.1, 4.2])
    assert paired["in_federation"]["0.1"]["centralized_minus_scratch"]["mean"] == pytest.approx(-2.0)
    assert set(paired["unseen_site"]["0.1"]) == {"federated_minus_scratch", "federated_minus_local_only"}
    table = quality.paired_markdown(paired)
    assert "| in_federation | 10% | federated_minus_scratch | +5.0, +5.1, +5.2 | +5.1 |" in table
    # a seed whose job is missing is left out of that difference, not paired with another seed
    jobs = [j for j in jobs if not (j.seed == 1 and j.variant == "scratch")]
    assert quality.paired_differences(jobs, cfg)["in_federation"]["0.1"][
        "federated_minus_scratch"]["per_seed"] == pytest.approx([5.0, 5.2])


def test_results_and_budget_check_read_the_same_jobs(quality: ModuleType) -> None:
    cfg = quality.QualityConfig(seeds=(0, 1), tasks=("segmentation",), label_fractions=(0.1, 1.0))
    jobs = [j for seed in cfg.seeds for j in quality.seed_jobs(cfg, seed=seed, roles=ROLES,
                                                                 encoders=ENCODERS)]
    for j in jobs:
        j.metrics, j.best_step = {"dice_mean": 0.3 if j.fraction == 0.1 else 0.2}, 100 * (1 + j.seed)
    results = quality.summarize(jobs, cfg)
    assert results["in_federation"]["0.1"]["scratch"]["dice_mean"] == pytest.approx(0.3)
    assert results["unseen_site"]["1.0"]["federated"]["best_step_median"] == 150
    assert quality.budget_check(results, cfg)["holds"] is False   # more labels scored lower
    for j in jobs:
        j.metrics = {"dice_mean": 0.2 if j.fraction == 0.1 else 0.3}
    assert quality.budget_check(quality.summarize(jobs, cfg), cfg)["holds"] is True
    assert "| in_federation | 10% | scratch | 0.200 ± 0.000" in quality.results_markdown(
        quality.summarize(jobs, cfg))
    one = quality.QualityConfig(seeds=(0, 1), tasks=("segmentation",), label_fractions=(0.1,))
    assert quality.budget_check(quality.summarize(jobs, one), one)["holds"] == (
        "not run (one label fraction)")


def test_listed_options_are_checked_before_anything_runs(quality: ModuleType,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    for argv, expected in ((["--variants", "federated,foo"], "got ['foo']"),
                           (["--tasks", "x"], "segmentation and/or classification"),
                           (["--label-fractions", "0,0.5"], "fractions in (0, 1], got [0.0]"),
                           (["--seeds", "a"], "comma-separated int values, got 'a'"),
                           (["--role", "train"], "invalid choice: 'train'"),
                           (["--variants", "scratch,federated_dp"], "pass --update-dp-clip"),
                           (["--encoder-frozen-steps", "-1"], "expected 0 or more steps"),
                           (["--encoder-frozen-steps", "5", "--linear-probe"], "5 with --linear-probe"),
                           (["--adadn-target", "pool_jitter"], "expected a --pretext with an AdaDN task"),
                           (["--adadn-target", "elsewhere"], "invalid choice: 'elsewhere'"),
                           (["--adadn-interpolate"], "--adadn-interpolate: expected a --pretext"),
                           (["--adadn-matching", "histogram"], "--adadn-matching: expected a --pretext"),
                           (["--adadn-matching", "rank"], "invalid choice: 'rank'"),
                           (["--min-region-ml", "-1"], "expected a volume from 0 to 100 mL, got -1.0"),
                           (["--subjects-per-site", "11"], "expected at least 12 (the 10 test studies")):
        with pytest.raises(SystemExit) as exit_:
            quality.main(argv)
        assert exit_.value.code == 2, argv
        assert expected in capsys.readouterr().err


def test_the_protocols_settings_are_the_defaults(quality: ModuleType) -> None:
    cfg, args = quality.parse_config([])
    assert cfg.role == "validation" and len(cfg.seeds) >= 5 and min(cfg.label_fractions) == 0.1
    assert (cfg.subjects_per_site, cfg.test_studies, cfg.finetune_steps) == (40, 10, 1000)
    more, _ = quality.parse_config(["--subjects-per-site", "80"])
    assert (more.subjects_per_site, more.test_studies) == (80, 10)
    test, _ = quality.parse_config(["--role", "test"])
    assert test.role == "test" and args.name is None


def test_update_privacy_table_shows_each_seeds_clip_and_epsilon(quality: ModuleType) -> None:
    card = {"clipping_norm": 0.123456, "epsilon": 12.34, "delta": 1e-5}
    text = quality.update_privacy_markdown({"0": {"federated_dp": card}, "1": {"federated_dp": {
        **card, "clipping_norm": 0.2, "epsilon": 11.0}}})
    assert "| federated_dp | 1 | 0.123, 0.2 | 12.3 (1e-05), 11.0 (1e-05) |" in text
    assert quality.update_privacy_markdown({}) == ""


def test_encoder_recipe_reaches_pretrained_encoders_only(quality: ModuleType,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import json
    from dataclasses import asdict

    import client.finetune as finetune

    seen: dict[str | None, tuple[float, int, float]] = {}

    def fake_run_finetune(*, encoder, cfg, **_kw):  # type: ignore[no-untyped-def]
        seen[encoder] = (cfg.encoder_lr_scale, cfg.encoder_frozen_steps, cfg.min_region_ml)
        return finetune.FinetuneResult(task=cfg.task, encoder=str(encoder), metrics={"dice_mean": 0.5},
                                       train_studies=2, test_studies=1, seconds=0.0)

    monkeypatch.setattr(finetune, "run_finetune", fake_run_finetune)
    cfg, _ = quality.parse_config(["--encoder-lr-scale", "0.1", "--encoder-frozen-steps", "7",
                                   "--min-region-ml", "0.5"])
    cfg_json = json.dumps(asdict(cfg))
    for encoder in (None, "f.safetensors"):
        job = quality.Job("x", "in_federation", "site-2", encoder, "segmentation", 0.1, 0)
        quality._run_job(job, cfg_json, "e", "c")
    assert seen == {None: (1.0, 0, 0.5), "f.safetensors": (0.1, 7, 0.5)}  # post-processing: every variant


def test_an_adadn_target_reaches_the_pretraining_settings(quality: ModuleType) -> None:
    cfg, _ = quality.parse_config(["--pretext", "cross_modal_contrastive", "--adadn-target", "pool_jitter"])
    assert cfg.pretrain_settings().adadn_target == "pool_jitter"
    assert quality.parse_config([])[0].pretrain_settings().adadn_target is None


def test_adadn_interpolation_and_matching_reach_the_pretraining_settings(quality: ModuleType) -> None:
    cfg, _ = quality.parse_config(["--pretext", "cross_modal_contrastive", "--adadn-interpolate",
                                   "--adadn-matching", "histogram"])
    assert cfg.pretrain_settings().adadn() == {"interpolate": True, "matching": "histogram"}
    assert quality.parse_config([])[0].pretrain_settings().adadn() == {}


def test_the_bf16_control_is_paired_against_federated(quality: ModuleType) -> None:
    assert quality.COMPARISONS["federated_bf16_minus_federated"] == ("federated_bf16", "federated")
    cfg, _ = quality.parse_config(["--variants", "scratch,federated,federated_bf16"])
    assert cfg.variants == ("scratch", "federated", "federated_bf16")
    assert cfg.setting_variants("unseen_site") == ["scratch", "federated"]  # controls: in_federation
