"""`fedmm export RUN_DIR --format F --out DIR`: a thin typer edge over ``export_run``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from server.export import EXPORT_FORMATS, export_run

console = Console()
err_console = Console(stderr=True)


def export_command(
    run_dir: Annotated[Path, typer.Argument(
        help="A finished run's output folder (holds encoder.safetensors and model_card.json).")],
    fmt: Annotated[str, typer.Option(
        "--format", help=f"One of {', '.join(EXPORT_FORMATS)} (docs/finetune.md).")],
    out: Annotated[Path, typer.Option(help="Folder to write into (created if missing).")],
) -> None:
    """Export a run's pretrained encoder for MONAI, TorchScript, ONNX or nnU-Net."""
    try:
        written = export_run(run_dir, fmt=fmt, out=out)
    except ValueError as err:
        err_console.print(f"[red]{err}[/]")
        raise typer.Exit(2) from err
    console.print(f"Wrote {fmt} export: {written}")
