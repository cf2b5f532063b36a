"""SLeM's contextual fusion block: shapes, identity start, gradients, downstream use, CLI flag."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import typer
from pydantic import ValidationError
from typer.testing import CliRunner

import client.finetune.cli as finetune_cli
from client.finetune import FinetuneConfig, FinetuneResult
from shared.model import build_classifier, build_segmenter
from shared.model.context_fusion import ContextFusionBlock


@pytest.mark.parametrize("size", [(2, 2, 2), (3, 5, 4), (6, 6, 6)], ids=["2^3", "3x5x4", "6^3"])
def test_shape_is_preserved(size: tuple[int, int, int]) -> None:
    block = ContextFusionBlock(16, dilations=(1, 2, 4), norm_groups=4, zero_init=False)
    assert block(torch.rand(2, 16, *size)).shape == (2, 16, *size)


def test_starts_as_identity_and_gradients_flow() -> None:
    torch.manual_seed(0)
    block = ContextFusionBlock(16, norm_groups=4)
    x = torch.rand(2, 16, 4, 4, 4, requires_grad=True)
    y = block(x)
    torch.testing.assert_close(y, x)  # zero-initialised fusion: pretrained features pass unchanged
    (y * torch.rand_like(y)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert block.fuse.conv.weight.grad is not None and block.fuse.conv.weight.grad.abs().sum() > 0
    # Once the fusion weights move, every branch receives gradients.
    block.zero_grad()
    with torch.no_grad():
        block.fuse.conv.weight.normal_(std=0.1)
    (block(x) ** 2).mean().backward()
    for name, p in block.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_dilations_are_configurable_and_validated() -> None:
    block = ContextFusionBlock(8, dilations=(1, 3), norm_groups=4, global_pool=False)
    assert block.dilations == (1, 3) and len(block.branches) == 2 and block.pooled is None
    assert [b.conv.dilation for b in block.branches] == [(1, 1, 1), (3, 3, 3)]
    assert block.fuse.conv.in_channels == 2 * 8
    assert ContextFusionBlock(8, norm_groups=4).fuse.conv.in_channels == 4 * 8  # 3 rates + pool
    for bad in [(), (0, 1), (2, 2)]:
        with pytest.raises(ValueError, match="distinct positive dilations"):
            ContextFusionBlock(8, dilations=bad, norm_groups=4)
    with pytest.raises(ValueError, match="divisible by norm_groups"):
        ContextFusionBlock(12, norm_groups=8)
    with pytest.raises(ValidationError, match="distinct positive dilations"):
        FinetuneConfig(context_dilations=(1, 1))


def test_segmenter_and_classifier_with_context_fusion_train() -> None:
    torch.manual_seed(0)
    seg = build_segmenter(None, in_channels=4, out_channels=3, context_fusion=True,
                          context_dilations=(1, 2))
    assert isinstance(seg.context_fusion, ContextFusionBlock)
    assert seg.context_fusion.dilations == (1, 2)
    out = seg(torch.rand(1, 4, 32, 32, 32))
    assert out.shape == (1, 3, 32, 32, 32)
    out.mean().backward()
    fuse = seg.context_fusion.fuse.conv.weight
    assert fuse.grad is not None and fuse.grad.abs().sum() > 0
    clf = build_classifier(None, in_channels=4, num_classes=2, context_fusion=True)
    logits = clf(torch.rand(2, 4, 32, 32, 32))
    assert logits.shape == (2, 2)
    logits.sum().backward()
    assert clf.context_fusion is not None
    assert clf.context_fusion.fuse.conv.weight.grad is not None


def test_default_models_have_no_context_fusion() -> None:
    seg = build_segmenter(None, in_channels=4, out_channels=3)
    clf = build_classifier(None, in_channels=4, num_classes=2)
    assert seg.context_fusion is None and clf.context_fusion is None
    assert not any("context_fusion" in k for k in [*seg.state_dict(), *clf.state_dict()])


@pytest.mark.parametrize(("flag", "expected"), [([], False), (["--context-fusion"], True)],
                         ids=["default", "flag"])
def test_finetune_cli_accepts_context_fusion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flag: list[str], expected: bool
) -> None:
    seen: dict[str, Any] = {}

    def fake_run(*, cfg: FinetuneConfig, **kw: Any) -> FinetuneResult:
        seen["cfg"] = cfg
        return FinetuneResult(task=cfg.task, encoder="none", metrics={"dice_mean": 0.5},
                              train_studies=1, test_studies=1, seconds=0.0)

    monkeypatch.setattr(finetune_cli, "run_finetune", fake_run)
    for site in ("a", "b"):
        (tmp_path / "data" / site).mkdir(parents=True)
    app = typer.Typer()
    app.command()(finetune_cli.finetune_command)
    result = CliRunner().invoke(app, ["--encoder", "none", "--data-root", str(tmp_path / "data"),
                                      "--out", str(tmp_path / "out"), *flag])
    assert result.exit_code == 0, result.output
    assert seen["cfg"].context_fusion is expected
