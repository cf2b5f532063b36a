"""TorchScript and ONNX files of the exported segmenter, written with MONAI's export utilities."""

from __future__ import annotations

from pathlib import Path

import torch
from monai.networks.utils import convert_to_onnx, convert_to_torchscript

from server.export.network import build_export_network, min_edge
from server.export.run_folder import RunFolder

#: The ONNX opset written; onnxruntime 1.32 runs it.
ONNX_OPSET = 17
#: Absolute tolerance of the export-time check against PyTorch: the segmenter's outputs are
#: logits of order 1, and float32 reassociation differs by ~1e-6 between the two runtimes.
VERIFY_ATOL = 1e-4


def _example_input(run: RunFolder, edge: int) -> torch.Tensor:
    """A seeded ``(1, M, edge, edge, edge)`` batch: tracing and the check run on it."""
    gen = torch.Generator().manual_seed(0)
    return torch.rand(1, len(run.modalities), edge, edge, edge, generator=gen)


def write_torchscript(run: RunFolder, out: Path) -> Path:
    """``out/model.ts``: the traced segmenter, checked against PyTorch on an example batch.

    Load it without fedmm: ``torch.jit.load("model.ts")``; input ``(N, M, D, H, W)`` with
    edges multiples of the encoder's total stride.
    """
    net = build_export_network(run)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "model.ts"
    convert_to_torchscript(net, filename_or_obj=str(path), use_trace=True, verify=True,
                           inputs=[_example_input(run, 2 * min_edge(net))], atol=VERIFY_ATOL)
    return path


def write_onnx(run: RunFolder, out: Path) -> Path:
    """``out/model.onnx``: input ``image`` ``(N, M, D, H, W)``, output ``pred`` (logits).

    Batch and spatial axes are dynamic; MONAI's ``convert_to_onnx`` checks the file with
    onnxruntime against PyTorch (``VERIFY_ATOL``) before it is kept.
    """
    net = build_export_network(run)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "model.onnx"
    axes = {0: "batch", 2: "depth", 3: "height", 4: "width"}
    convert_to_onnx(net, [_example_input(run, 2 * min_edge(net))], input_names=["image"],
                    output_names=["pred"], dynamic_axes={"image": axes, "pred": axes},
                    filename=str(path), verify=True, use_ort=True, atol=VERIFY_ATOL,
                    opset_version=ONNX_OPSET, dynamo=False)
    return path
