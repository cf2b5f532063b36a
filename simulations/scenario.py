"""A simulation scenario: the run's config sections plus a [simulation] section, from TOML."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError

from shared.config import ConfigError, FrozenModel, RunConfig, format_validation_error

#: RunConfig fields that `simulate` owns; a scenario file may not set them.
_HARNESS_FIELDS = ("out_dir", "resume", "sites")


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
        description="Virtual sites (phantom: how many to generate; data root: first N folders).",
    )
    data_root: Path | None = Field(
        default=None, description="Folder of site folders; None = the embedded phantom.",
    )
    phantom: PhantomSettings = PhantomSettings()
    client_cpus: int | None = Field(default=None, ge=1, description="CPUs per site (auto).")
    client_gpus: float | None = Field(default=None, ge=0, le=1, description="GPU share per site.")


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
    if not path.is_file():
        raise ConfigError(f"Scenario file {path} does not exist; expected a .toml file "
                          "(see simulations/scenarios/phantom_default.toml).")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path} is not valid TOML: {err}") from err


def build_scenario(raw: dict[str, Any], *, source: str) -> Scenario:
    """Validate a raw scenario: a [simulation] table plus RunConfig's sections at top level."""
    raw = dict(raw)
    sim_raw = raw.pop("simulation", {})
    owned = [k for k in _HARNESS_FIELDS if k in raw]
    if owned:
        raise ConfigError(
            f"Invalid {source}: {owned} are set by `simulate` itself (use --out / --resume), "
            "remove them from the file."
        )
    try:
        sim = SimulationConfig.model_validate(sim_raw)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source=f"{source} [simulation]",
                                                  model=SimulationConfig)) from err
    try:
        run = RunConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source=source, model=RunConfig)) from err
    return Scenario(simulation=sim, run=run)
