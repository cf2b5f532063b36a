"""The quality benchmark's pretraining: reused only while nothing it depends on changed."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from simulations import benchmark_pretraining as bp

SETTINGS = bp.PretrainSettings(rounds=2, local_steps=3, crop=16, spacing_mm=4.0,
                               pretext="plane_intersection")


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Replace the real pretraining by one that writes a file per encoder asked for."""
    asked: list[list[str]] = []

    def fake_pretrain(s: Any, wanted: list[str], *, seed: int, work: Path, **_: Any) -> dict[str, Any]:
        asked.append(wanted)
        out: dict[str, Any] = {"encoders": {}, "seconds": {}}
        for name in wanted:
            enc = work / f"enc-{len(asked)}-{name.replace('/', '_')}.safetensors"
            enc.write_bytes(b"x")
            out["encoders"][name], out["seconds"][name] = str(enc), 1.0
        return out

    monkeypatch.setattr(bp, "pretrain", fake_pretrain)
    return asked


def finished(tmp_path: Path, s: bp.PretrainSettings = SETTINGS, wanted: tuple[str, ...] = ("federated",),
             data_key: Any = "phantom-a") -> dict[str, Any]:
    return bp.finished_pretraining(s, list(wanted), seed=0, data_key=data_key,
                                   federation_root=tmp_path / "data", federation=["site-0", "site-1"],
                                   alone={"site-1": tmp_path / "data" / "site-1"}, work=tmp_path)


def test_pretraining_is_reused_only_when_its_settings_match(tmp_path: Path, fake: list) -> None:
    first = finished(tmp_path)
    again = finished(tmp_path)
    assert len(fake) == 1 and again["encoders"] == first["encoders"] and again["reused"] == ["federated"]
    finished(tmp_path, replace(SETTINGS, local_steps=4))
    assert len(fake) == 2                                    # a setting changed: run again
    finished(tmp_path, data_key="phantom-b")
    assert len(fake) == 3                                    # other data (phantom or split)
    Path(finished(tmp_path, data_key="phantom-b")["encoders"]["federated"]).unlink()
    finished(tmp_path, data_key="phantom-b")
    assert len(fake) == 4                                    # encoder file gone: run again
    more = finished(tmp_path, wanted=("federated", "local_only/site-1"), data_key="phantom-b")
    assert fake[-1] == ["local_only/site-1"]                 # only the missing encoder
    assert set(more["encoders"]) == {"federated", "local_only/site-1"} and len(fake) == 5


def test_pretraining_recorded_by_other_code_is_never_reused(tmp_path: Path, fake: list,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    real = bp.code_version()
    assert len(real) == 64 and real == bp.code_version()
    finished(tmp_path)
    finished(tmp_path)
    assert len(fake) == 1                                    # same code: reused
    monkeypatch.setattr(bp, "code_version", lambda: "0" * 64)
    finished(tmp_path)
    assert len(fake) == 2                                    # an edited source: pretrained again


def test_update_dp_pretraining_gets_its_noise_and_clip() -> None:
    from shared.config import validate_run_config

    plain = bp.pretraining_config(SETTINGS, seed=0, num_sites=3)
    noised = validate_run_config(bp.pretraining_config(SETTINGS, seed=0, num_sites=3, update_noise=1.0,
                                                       clip=0.3), source="test")
    assert "updates" not in plain["privacy"]
    assert noised.privacy.updates.enabled and noised.privacy.updates.clipping_norm == 0.3
    assert noised.privacy.updates.noise_multiplier == bp.UPDATE_DP_VARIANTS["federated_dp"]


def test_an_adadn_target_reaches_every_adadn_task_and_the_cache_key(tmp_path: Path, fake: list) -> None:
    from shared.config import validate_run_config

    mixed = replace(SETTINGS, pretext="plane_intersection,cross_modal_contrastive:0.5")
    raw = bp.pretraining_config(replace(mixed, adadn_target="pool_jitter"), seed=0, num_sites=3)
    run = validate_run_config(raw, source="test")
    tasks = {t.name: t for t in run.pretext}
    assert tasks["cross_modal_contrastive"].adadn.target == "pool_jitter"
    assert tasks["cross_modal_contrastive"].weight == 0.5
    assert "adadn" not in raw["pretext"][0]                  # plane_intersection has no AdaDN
    plain = validate_run_config(bp.pretraining_config(mixed, seed=0, num_sites=3), source="test")
    assert {t.name: t for t in plain.pretext}["cross_modal_contrastive"].adadn.target == "pool"
    with pytest.raises(ValueError, match="expected a pretext with an AdaDN task"):
        bp.pretraining_config(replace(SETTINGS, adadn_target="own_site"), seed=0, num_sites=3)
    finished(tmp_path, mixed)
    finished(tmp_path, replace(mixed, adadn_target="pool_jitter"))
    assert len(fake) == 2                                    # another target: pretrained again
    both = replace(mixed, adadn_interpolate=True, adadn_matching="histogram")
    run = validate_run_config(bp.pretraining_config(both, seed=0, num_sites=3), source="test")
    adadn = {t.name: t for t in run.pretext}["cross_modal_contrastive"].adadn
    assert adadn.interpolate and adadn.matching == "histogram" and adadn.target == "pool"
    finished(tmp_path, both)
    assert len(fake) == 3                                    # other AdaDN settings: again
    with pytest.raises(ValueError, match=r"adadn settings \['interpolate'\]"):
        bp.pretraining_config(replace(SETTINGS, adadn_interpolate=True), seed=0, num_sites=3)


def test_the_update_dp_clip_is_the_median_update_norm_of_the_run_without_dp(tmp_path: Path) -> None:
    rounds = [{"train": {"sites": {"1": {"update-norm": 1.0}, "2": {"update-norm": 4.0},
                                   "3": {"train-loss": 0.5}}}},
              {"train": {"sites": {"1": {"update-norm": 2.0}, "2": {"update-norm": 9.0}}}}]
    (tmp_path / "metrics.json").write_text(json.dumps({"rounds": rounds}))
    assert bp.median_update_norm(tmp_path) == 3.0
    with pytest.raises(SystemExit, match="add federated to --variants"):
        bp.median_update_norm(tmp_path / "missing")
    (tmp_path / "metrics.json").write_text(json.dumps({"rounds": [{"train": {"sites": {}}}]}))
    with pytest.raises(SystemExit, match="found none"):
        bp.median_update_norm(tmp_path)


def test_the_bf16_variant_is_the_federated_run_with_bfloat16_replies(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import simulations.simulate as simulate

    sent: dict[str, str] = {}

    def fake_run(scenario: Any, *, out_dir: Path, **_: Any) -> Any:
        sent[out_dir.name] = scenario.run.federation.transfer_dtype
        return type("Result", (), {"out_dir": out_dir})()

    monkeypatch.setattr(simulate, "run_simulation", fake_run)
    out = bp.pretrain(SETTINGS, ["federated", "federated_bf16"], seed=4, federation_root=tmp_path,
                      federation=["site-0", "site-1"], alone={}, work=tmp_path / "work")
    assert sent == {"federated-seed4": "float32", "federated_bf16-seed4": "bfloat16"}
    assert set(out["encoders"]) == {"federated", "federated_bf16"}
    assert "update_privacy" not in out
