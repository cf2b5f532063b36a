"""TorchScript and ONNX exports run outside fedmm and agree with the PyTorch network."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from server.export import export_run, read_run_folder
from server.export.network import build_export_network
from simulations.cli import app

ATOL = 1e-4


def test_onnx_matches_pytorch_in_onnxruntime(run_dir: Path, tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    path = export_run(run_dir, fmt="onnx", out=tmp_path)
    net = build_export_network(read_run_folder(run_dir))
    x = torch.rand(2, 4, 32, 16, 48, generator=torch.Generator().manual_seed(5))  # dynamic axes
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(["pred"], {"image": x.numpy()})[0]
    with torch.no_grad():
        want = net(x).numpy()
    assert got.shape == (2, 3, 32, 16, 48)
    np.testing.assert_allclose(got, want, atol=ATOL, rtol=0)


def test_torchscript_loads_without_fedmm_code(run_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["export", str(run_dir), "--format", "torchscript",
                                 "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    scripted = torch.jit.load(str(tmp_path / "model.ts"))
    net = build_export_network(read_run_folder(run_dir))
    x = torch.rand(1, 4, 32, 32, 32, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), net(x), atol=ATOL, rtol=0)


def test_cli_error_says_what_was_expected_and_the_fix(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["export", str(tmp_path), "--format", "onnx",
                                      "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "Expected encoder.safetensors and model_card.json" in result.output
    assert "simulate --resume" in result.output
