"""`fedmm data ...`: look at a dataset folder before simulating or joining a federation.

It lives beside the `client.data` package, not in it: importing anything inside that package
loads the whole data pipeline first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

# The layouts, by name, for --help and the unknown-name check: written out so that `fedmm data
# --help` (and every `fedmm` command, which loads this group) starts without the data pipeline
# (torch, MONAI). A test checks that it equals the adapter registry's names.
LAYOUTS = ("brats2021", "brats2023", "chaos", "fets2022", "isles2022", "ixi", "manifest",
           "msd_task01", "ucsf_pdgm", "upenn_gbm")

data_app = typer.Typer(help="Inspect datasets in their original layouts.", no_args_is_help=True)
_err = Console(stderr=True)


@data_app.callback()
def _group() -> None:
    """Inspect datasets in their original layouts."""  # keeps `data` a group of commands


@data_app.command("inspect")
def inspect_command(
    path: Annotated[Path, typer.Argument(help="The dataset's folder (or a manifest CSV).")],
    layout: Annotated[str, typer.Option(
        help="Layout name, or 'auto' to detect it. Layouts: " + ", ".join(LAYOUTS) + ".",
    )] = "auto",
    output: Annotated[str, typer.Option(
        "--format", help="text (for people) or json (schema fedmm.data-inspect/1, docs/datasets.md).",
    )] = "text",
    check: Annotated[bool, typer.Option(
        "--check", help="Also read every volume and report unreadable files (slow on large data).",
    )] = False,
) -> None:
    """Print the layout, sites with subject counts, modalities per subject, labels and problems."""
    if output not in ("text", "json"):
        _err.print(f"[red]--format must be 'text' or 'json', got {output!r}.[/]")
        raise typer.Exit(2)
    if layout != "auto" and layout not in LAYOUTS:
        _err.print(f"[red]--layout {layout!r} is unknown; expected 'auto' or one of "
                   f"{list(LAYOUTS)}.[/]")
        raise typer.Exit(2)
    from client.data.inspection import inspect_dataset, render_text  # the data pipeline, only here

    try:
        report = inspect_dataset(path, layout=layout, check=check)
    except ValueError as err:
        _err.print(str(err), markup=False, style="red")
        raise typer.Exit(2) from err
    print(report.model_dump_json(indent=2) if output == "json" else render_text(report))
