"""`fedmm export`: a run's pretrained encoder in the formats other tools load."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from server.export.monai_bundle import write_monai_bundle
from server.export.nnunet import write_nnunet
from server.export.portable import write_onnx, write_torchscript
from server.export.run_folder import RunFolder, read_run_folder
from shared.lookup import look_up

#: Format name -> writer(run, out) returning the main file or folder written.
EXPORT_FORMATS: dict[str, Callable[[RunFolder, Path], Path]] = {
    "monai-bundle": write_monai_bundle,
    "torchscript": write_torchscript,
    "onnx": write_onnx,
    "nnunet": write_nnunet,
}


def export_run(run_dir: Path, *, fmt: str, out: Path) -> Path:
    """Export ``run_dir``'s encoder as ``fmt`` into ``out``; return what was written.

    Raises:
        ValueError: an unknown format (the valid ones listed), or a run folder that is
            not a finished fedmm run (what is missing and how to fix it).
    """
    writer = look_up(fmt, EXPORT_FORMATS, kind="export format")
    return writer(read_run_folder(run_dir), out)


__all__ = ["EXPORT_FORMATS", "RunFolder", "export_run", "read_run_folder"]
