"""The `fedmm` command line: thin typer edges over typed calls.

The site's and the coordinator's commands (`fedmm site`, `fedmm server`, `fedmm data`) import
only what a lean install has; `simulate`, `phantom` and `finetune` need the simulation extra
and are stand-ins saying so where it is not installed (docs/site.md).
"""

from __future__ import annotations

import importlib

import typer
from rich.console import Console

from client.cli import site_app
from client.data_cli import data_app
from server.cli import server_app

err_console = Console(stderr=True)
_OUR_PACKAGES = ("client", "server", "shared", "simulations")

app = typer.Typer(
    name="fedmm",
    help="Federated self-supervised pretraining of a multimodal brain-MRI encoder, on Flower.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(site_app, name="site")
app.add_typer(server_app, name="server")
app.add_typer(data_app, name="data")


def _add_lazy_command(name: str, module: str, function: str, *, summary: str,
                      extra: str = "simulation") -> None:
    """Register ``fedmm NAME``, importing ``module`` only when the command runs.

    `simulate`, `phantom` and `finetune` need the simulation extra (Ray, SciPy, nilearn,
    scikit-learn ...): importing them up front would load those packages into every
    ``fedmm site`` process, and break ``fedmm`` in a site daemon's lean install. Where the
    extra is missing, the command says so and how to install it.
    """

    @app.command(name, help=summary, add_help_option=False,
                 context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def command(ctx: typer.Context) -> None:
        try:
            real = getattr(importlib.import_module(module), function)
        except ModuleNotFoundError as missing:
            if (missing.name or "").split(".")[0] in _OUR_PACKAGES:  # a bug, not a missing extra
                raise
            err_console.print(f"`fedmm {name}` needs the package {missing.name!r}, which this "
                              f"installation lacks (fedmm was installed without its {extra} "
                              f"extra). Fix: pip install -e '.[{extra}]' in the fedmm checkout "
                              "(or `make setup`).", style="red", markup=False, highlight=False)
            raise typer.Exit(2) from missing
        single = typer.Typer(pretty_exceptions_enable=False)
        single.command()(real)
        typer.main.get_command(single).main(args=list(ctx.args), prog_name=f"fedmm {name}")


_add_lazy_command("simulate", "simulations.simulate_cli", "simulate_command",
                  summary="Run a federated self-supervised pretraining on Flower's simulation engine.")
_add_lazy_command("phantom", "simulations.phantom.cli", "phantom_command",
                  summary="Generate the multi-site brain phantom (a data root `simulate` can use).")
_add_lazy_command("finetune", "client.finetune.cli", "finetune_command",
                  summary="Fine-tune a pretrained encoder (or scratch) on a small labelled task.")
_add_lazy_command("export", "server.export.cli", "export_command", extra="export",
                  summary="Export a run's encoder as a MONAI bundle, TorchScript, ONNX or an "
                  "nnU-Net checkpoint.")


def main() -> None:
    """Entry point of the ``fedmm`` console script."""
    app()
