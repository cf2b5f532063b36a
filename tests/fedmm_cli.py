"""`fedmm ARGS` run in the test's own process: no interpreter start-up (about 10 s on two
cores), for commands that refuse their options or finish quickly."""

from __future__ import annotations

from click.testing import Result
from typer.testing import CliRunner

from simulations.cli import app


def run_fedmm(*args: str) -> Result:
    """The command's exit code, its stdout and stderr apart (``output``: both) and any
    exception it raised."""
    return CliRunner().invoke(app, list(args))
