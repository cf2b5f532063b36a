"""`fedmm finetune`: measure what a pretrained encoder is worth on a small labelled task."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from client.finetune.config import FinetuneConfig
from client.finetune.run import run_finetune
from shared.config import format_validation_error

console = Console()


def _site_list(value: str | None, available: list[str]) -> list[str] | None:
    if value is None:
        return None
    names = [v.strip() for v in value.split(",") if v.strip()]
    unknown = sorted(set(names) - set(available))
    if unknown:
        raise typer.BadParameter(f"unknown sites {unknown}; the data root has {available}")
    return names


def finetune_command(
    encoder: Annotated[str, typer.Option(help="A run folder (uses its encoder.safetensors), the "
                                         "file itself, or 'none' to train the same network from scratch.")],
    data_root: Annotated[Path, typer.Option(help="Folder with one labelled site folder per site "
                                            "(BraTS 2021 layout).")],
    task: Annotated[str, typer.Option(
        help="segmentation (Dice WT/TC/ET) or classification (enhancing vs non-enhancing: "
        "acc, balanced acc, AUC).")] = "segmentation",
    train_sites: Annotated[str | None, typer.Option(help="Comma-separated site folders to fine-tune "
                                                    "on (default: all but the test sites).")] = None,
    test_sites: Annotated[str | None, typer.Option(help="Comma-separated held-out site folders "
                                                   "(default: the last site).")] = None,
    label_fraction: Annotated[float, typer.Option(
        help="Seeded share of labelled training studies.")] = 1.0,
    linear_probe: Annotated[bool, typer.Option(
        help="Freeze the encoder; train only the decoder/head.")] = False,
    context_fusion: Annotated[bool, typer.Option(
        help="Add SLeM's contextual fusion block (multi-scale dilated convolutions) on the "
        "deepest encoder features; it is trained with the decoder/head.")] = False,
    steps: Annotated[int, typer.Option(help="Optimizer steps (the most, with --early-stopping).")] = 120,
    early_stopping: Annotated[bool, typer.Option(
        help="Hold out 20 % of the labelled studies (at least 1), score on them every 50 "
        "steps, stop after 4 scores without improvement and keep the best weights.")] = False,
    encoder_lr_scale: Annotated[float, typer.Option(
        help="The encoder trains at the learning rate times this (0 < x <= 1); the new "
        "decoder/head at the full rate.")] = 1.0,
    encoder_frozen_steps: Annotated[int, typer.Option(
        help="Keep the encoder frozen for the first N steps while the new decoder/head "
        "learns, then train it too (linear probing, then fine-tuning).")] = 0,
    augment_intensity: Annotated[bool, typer.Option(
        help="Random per-modality intensity scaling and gamma on the training crops "
        "(segmentation).")] = False,
    min_region_ml: Annotated[float, typer.Option(
        help="Segmentation: remove each predicted region's connected components smaller "
        "than this many mL before scoring (0 keeps all).")] = 0.0,
    seed: Annotated[int, typer.Option(help="Seed for the label subset, crops and init.")] = 0,
    out: Annotated[Path | None, typer.Option(help="Folder for finetune.json.")] = None,
) -> None:
    """Fine-tune an encoder on labelled sites and test it on held-out sites."""
    try:
        cfg = FinetuneConfig.model_validate({"task": task, "label_fraction": label_fraction,
                                             "linear_probe": linear_probe, "steps": steps, "seed": seed,
                                             "early_stopping": early_stopping,
                                             "context_fusion": context_fusion,
                                             "encoder_lr_scale": encoder_lr_scale,
                                             "encoder_frozen_steps": encoder_frozen_steps,
                                             "augment_intensity": augment_intensity,
                                             "min_region_ml": min_region_ml})
    except ValidationError as err:
        console.print(f"[red]{format_validation_error(err, source='options', model=FinetuneConfig)}[/]")
        raise typer.Exit(2) from err
    if not data_root.is_dir():
        console.print(f"[red]--data-root {data_root} is not a folder.[/]")
        raise typer.Exit(2)
    sites = sorted(p.name for p in data_root.iterdir() if p.is_dir() and not p.name.startswith("."))
    test = _site_list(test_sites, sites) or sites[-1:]
    train = _site_list(train_sites, sites) or [s for s in sites if s not in test]
    if not train:
        console.print(f"[red]No training sites left: {data_root} has {sites}, test sites {test}.[/]")
        raise typer.Exit(2)
    out_dir = out or Path("runs") / "finetune"
    try:
        result = run_finetune(encoder=encoder, cfg=cfg, data_root=data_root.resolve(),
                              train_sites=train, test_sites=test, cache_dir=out_dir.resolve() / "cache",
                              out_dir=out_dir.resolve())
    except ValueError as err:
        console.print(f"[red]{err}[/]")
        raise typer.Exit(2) from err
    stopped = (f", {result.early_stopping_studies} of them for early stopping, best step "
               f"{result.best_step}" if cfg.early_stopping else "")
    table = Table(title=f"{cfg.task}: {result.encoder} ({result.train_studies} train{stopped} / "
                  f"{result.test_studies} test studies, {result.seconds:.0f} s)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in result.metrics.items():
        table.add_row(k, f"{v:.4f}")
    console.print(table)
    console.print(f"saved {out_dir / 'finetune.json'}")
