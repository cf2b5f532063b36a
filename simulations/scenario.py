"""A simulation scenario: the run's config sections plus a [simulation] section, from TOML."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator, model_validator

from shared.config import ConfigError, FrozenModel, RunConfig, format_validation_error
from shared.run_file import read_toml_file, run_config_from_sections
from simulations.partitioners.config import PartitionConfig

#: Where a run folder keeps the scenario it ran (``--resume`` reads it back; the report too).
SCENARIO_FILE = "scenario.json"


class PhantomSettings(FrozenModel):
    """The embedded default data: a multi-site brain phantom (simulations/phantom)."""

    subjects_per_site: int = Field(default=12, ge=2, le=500)
    spacing_mm: float = Field(default=2.0, ge=1.0, le=8.0)
    tumour_fraction: float = Field(default=0.85, ge=0, le=1)
    profiles_file: Path | None = Field(default=None, description="Scanner profiles TOML.")


class SimulationConfig(FrozenModel):
    """How `simulate` lays out virtual sites and resources."""

    sites: int | None = Field(
        default=None, ge=1, le=64,
        description="Virtual sites (phantom: how many to generate; data root: first N folders; "
        "with `layout`: how many sites the partitioner makes, default 4).",
    )
    data_root: Path | None = Field(
        default=None, description="Folder of site folders; None = the embedded phantom. With "
        "`layout`: the one dataset's folder, in its original layout.",
    )
    layout: str | None = Field(
        default=None,
        description="Read data_root as ONE dataset in this layout ('auto' to detect it; see "
        "`fedmm data inspect`) and split it into virtual sites by [simulation.partition]. "
        "None: data_root is a folder of site folders in data.layout.",
    )
    partition: PartitionConfig | None = Field(
        default=None, description="How `layout` data is split (default: natural institutions).",
    )
    phantom: PhantomSettings = PhantomSettings()
    client_cpus: int | None = Field(default=None, ge=1, description="CPUs per site (auto).")
    client_gpus: float | None = Field(default=None, ge=0, le=1, description="GPU share per site.")
    ray_address: str | None = Field(
        default=None,
        description="An existing Ray cluster to run the sites on (HOST:PORT of its head, as "
        "`ray start --head` prints it, or 'auto'); None: a private Ray on this machine. Every "
        "node needs fedmm installed and the data at the same path (docs/simulate.md).",
    )

    @field_validator("ray_address")
    @classmethod
    def _host_and_port(cls, value: str | None) -> str | None:
        if value is None or value == "auto":
            return value
        host, _, port = value.removeprefix("ray://").rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"expected HOST:PORT of the Ray head (e.g. 10.0.0.5:6379, as `ray start "
                             f"--head` prints it) or 'auto', got {value!r}")
        return value

    @field_validator("layout")
    @classmethod
    def _known_layout(cls, value: str | None) -> str | None:
        if value is None or value == "auto":
            return value
        from client.data import available_adapters  # the data pipeline is heavy to import

        if value not in available_adapters():
            from shared.lookup import closest_hint

            raise ValueError(f"expected 'auto' or one of {list(available_adapters())}, got "
                             f"{value!r}.{closest_hint(value, available_adapters())}")
        return value

    @model_validator(mode="after")
    def _partition_needs_layout(self) -> SimulationConfig:
        if self.partition is not None and self.layout is None:
            raise ValueError("[simulation.partition] splits one dataset: set [simulation] layout "
                             "(e.g. layout = \"auto\") too, or remove the partition table.")
        return self


class Scenario(FrozenModel):
    simulation: SimulationConfig = SimulationConfig()
    run: RunConfig = RunConfig()


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Recursively merge ``override`` into ``base`` (override wins), returning a new dict."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def read_scenario_file(path: Path) -> dict[str, Any]:
    """Read a scenario TOML into a raw dict; errors name the file and the problem."""
    return read_toml_file(path, kind="Scenario file",
                          example="simulations/scenarios/phantom_default.toml")


def build_scenario(raw: dict[str, Any], *, source: str) -> Scenario:
    """Validate a raw scenario: a [simulation] table plus RunConfig's sections at top level."""
    raw = dict(raw)
    sim_raw = raw.pop("simulation", {})
    try:
        sim = SimulationConfig.model_validate(sim_raw)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source=f"{source} [simulation]",
                                                  model=SimulationConfig)) from err
    run = run_config_from_sections(raw, source=source,
                                   owner="`simulate` itself (use --out / --resume)")
    if run.model.preset != "auto":  # "auto" picks a preset that takes any crop
        from shared.model import check_crop_size  # torch and MONAI: only for a valid config

        check_crop_size(run.model.preset, run.data.crop_size)
    return Scenario(simulation=sim, run=run)
