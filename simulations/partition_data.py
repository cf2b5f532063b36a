"""`simulate` on one dataset in its original layout: discover it, partition it, hand out the sites."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape

from client.data import get_adapter
from client.data.detect import detect_layout
from shared.config import ConfigError
from simulations.partitioners import (
    NaturalPartitionConfig,
    partition_dataset,
    partition_table,
    write_partition,
)
from simulations.partitioners.manifest import PARTITION_FILE
from simulations.scenario import SimulationConfig

__all__ = ["prepare_partitioned_data"]


def prepare_partitioned_data(
    sim: SimulationConfig, *, seed: int, out_dir: Path, cache_dir: Path, console: Console,
) -> tuple[Path, list[str]]:
    """Split ``sim.data_root`` into virtual sites and write each site's study list.

    Writes ``out_dir/partition.json`` (sites x subjects x modalities) and
    ``out_dir/partition/<site>/fedmm-studies.json``; virtual site k then loads exactly the
    studies of its list (``client.data.load_site_dataset`` reads the list instead of
    discovering the folder). Prints the partition as a table.

    Returns:
        (folder of the site folders, site folder names in site order).

    Raises:
        ConfigError: no data root, an unknown or undetectable layout, no usable study, or a
            split the partitioner cannot make; the message says what to change.
    """
    if sim.data_root is None:
        raise ConfigError(f"[simulation] layout = {sim.layout!r} splits a dataset you have on "
                          "disk: give its folder with --data-root DIR (or [simulation] data_root).")
    root = sim.data_root.expanduser().resolve()
    cfg = sim.partition or NaturalPartitionConfig()
    try:
        layout = detect_layout(root) if sim.layout in (None, "auto") else str(sim.layout)
        discovery = get_adapter(layout).discover(root)
        partition = partition_dataset(discovery.studies, cfg=cfg, num_sites=sim.sites, seed=seed,
                                      cache_dir=cache_dir)
    except ValueError as err:
        raise ConfigError(f"Cannot split --data-root {root}: {err}") from err
    console.print(f"[bold]Data[/]: {root} ({layout}), {len(discovery.studies)} studies, "
                  f"{len(discovery.problems)} problems; partition {cfg.name!r}, seed {seed}")
    for problem in discovery.problems[:5]:
        console.print(f"  [yellow]skipped[/] {escape(str(problem))}", highlight=False)
    if len(discovery.problems) > 5:
        console.print(f"  ... {len(discovery.problems) - 5} more in {out_dir / PARTITION_FILE}")
    if not partition.sites or any(not site.studies for site in partition.sites):
        empty = [s.name for s in partition.sites if not s.studies]
        raise ConfigError(f"The {cfg.name!r} partition of {root} left sites {empty} without a study; "
                          "lower [simulation] sites or change [simulation.partition].")
    site_root, folders = write_partition(
        partition, out_dir=out_dir, layout=layout, data_root=root,
        partitioner=cfg.model_dump(mode="json"), seed=seed, problems=discovery.problems,
    )
    console.print(partition_table(partition, title=f"Virtual sites ({cfg.name})"))
    for note in partition.notes:
        console.print(f"  note: {note}")
    if partition.left_out:
        console.print(f"  {len(partition.left_out)} subjects are in no site "
                      f"(see {out_dir / PARTITION_FILE}).")
    return site_root, folders
