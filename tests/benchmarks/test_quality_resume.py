"""The quality benchmark reuses finished pretraining only when nothing it depends on changed."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest


def test_pretraining_is_reused_only_when_its_settings_match(quality: ModuleType, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    asked: list[tuple[str, ...]] = []

    def fake_pretrain(cfg: Any, *, seed: int, data_root: Path, train_sites: list[str],
                      work: Path) -> dict[str, Any]:
        calls.append(seed)
        asked.append(cfg.variants)
        out: dict[str, Any] = {"seconds": {}}
        for variant in cfg.variants:
            enc = work / f"enc-{len(calls)}-{variant}.safetensors"
            enc.write_bytes(b"x")
            out[variant], out["seconds"][variant] = str(enc), 1.0
        return out

    monkeypatch.setattr(quality, "pretrain", fake_pretrain)
    cfg = quality.QualityConfig(variants=("scratch", "federated"))
    args = {"seed": 0, "data_root": tmp_path / "data", "train_sites": ["a", "b"], "work": tmp_path}
    first = quality.finished_pretraining(cfg, **args)
    again = quality.finished_pretraining(replace(cfg, finetune_steps=7, linear_probe=True), **args)
    assert calls == [0] and again["federated"] == first["federated"] and "reused_from" in again
    quality.finished_pretraining(replace(cfg, local_steps=cfg.local_steps + 1), **args)
    assert calls == [0, 0]                                   # pretraining changed: run again
    quality.finished_pretraining(cfg, **args)
    assert calls == [0, 0, 0]                                # the record holds the last settings
    Path(quality.finished_pretraining(cfg, **args)["federated"]).unlink()
    assert calls == [0, 0, 0]
    quality.finished_pretraining(cfg, **args)
    assert calls == [0, 0, 0, 0]                             # encoder file gone: run again
    more = quality.finished_pretraining(replace(cfg, variants=("scratch", "federated", "cyclic")), **args)
    assert calls == [0, 0, 0, 0, 0] and asked[-1] == ("cyclic",)  # only the missing variant
    assert more["federated"] == quality.finished_pretraining(cfg, **args)["federated"]
    assert set(more["seconds"]) == {"federated", "cyclic"} and len(calls) == 5


def test_pretraining_recorded_by_other_code_is_never_reused(quality: ModuleType, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def fake_pretrain(cfg: Any, *, seed: int, data_root: Path, train_sites: list[str],
                      work: Path) -> dict[str, Any]:
        calls.append(quality.code_version())
        enc = work / f"enc-{len(calls)}.safetensors"
        enc.write_bytes(b"x")
        return {"seconds": {"federated": 1.0}, "federated": str(enc)}

    monkeypatch.setattr(quality, "pretrain", fake_pretrain)
    cfg = quality.QualityConfig(variants=("scratch", "federated"))
    args = {"seed": 0, "data_root": tmp_path / "data", "train_sites": ["a"], "work": tmp_path}
    real = quality.code_version()
    assert len(real) == 64 and real == quality.code_version()
    quality.finished_pretraining(cfg, **args)
    quality.finished_pretraining(cfg, **args)
    assert len(calls) == 1                                   # same code: reused
    monkeypatch.setattr(quality, "code_version", lambda: "0" * 64)
    quality.finished_pretraining(cfg, **args)
    assert len(calls) == 2                                   # an edited source: pretrained again
