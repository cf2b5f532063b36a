"""`fedmm site ...`: commands for hospital IT, run next to the site's own data."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from client.release import release_site_stats
from shared.config import ConfigError, RunConfig, SiteConfig
from shared.keys import ConfigKey, RecordKey

site_app = typer.Typer(help="Commands for hospital IT, run next to the site's data.",
                       no_args_is_help=True)
console = Console(stderr=True)


@site_app.command("stats")
def stats_command(
    data: Annotated[Path, typer.Option("--data", help="The site's data folder (one study per "
                                       "sub-folder, BraTS 2021 layout).")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the payload; send nothing.")] = False,
    run_config: Annotated[Path | None, typer.Option(
        "--run-config", help="JSON RunConfig of the run to join (default: fedmm's defaults).")] = None,
    state: Annotated[Path | None, typer.Option(
        "--state", help="The site's state folder (the release is kept there and reused in "
        "round 0). Default: a temporary folder.")] = None,
) -> None:
    """Print exactly the statistics payload this site would send in round 0."""
    if not dry_run:
        console.print("Statistics are only sent by a running site daemon in round 0. "
                      "Add --dry-run to print the payload it would send.")
        raise typer.Exit(2)
    if not data.is_dir():
        console.print(f"[red]--data {data} is not a folder.[/] Expected the site's data folder.")
        raise typer.Exit(2)
    try:
        cfg = RunConfig.from_json(run_config.read_text() if run_config else "",
                                  source=str(run_config or "defaults"))
    except (ConfigError, OSError) as err:
        console.print(f"[red]{err}[/]")
        raise typer.Exit(2) from err
    with tempfile.TemporaryDirectory(prefix="fedmm-site-") as tmp:
        site = SiteConfig(data_dir=data.resolve(), state_dir=(state or Path(tmp)).resolve())
        release = release_site_stats(cfg, site)
    payload = {RecordKey.STATS.value: {ConfigKey.STATS_JSON.value: release.to_json()}}
    console.print("[bold]This is the whole message content the site would send in round 0[/] "
                  "(no site name, no study ids, counts only as a coarse bucket):")
    print(json.dumps(payload, indent=2))
    print(json.dumps(json.loads(release.to_json()), indent=2))
