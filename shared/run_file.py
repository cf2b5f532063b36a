"""A run file: RunConfig's sections ([data] [pretext] [train] [federation] ...) in TOML.

``simulate`` scenario files and the coordinator's ``RUN.toml`` for ``fedmm server run``
share this format (a scenario adds a ``[simulation]`` table); both read it here, so the
two can never drift apart.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from shared.config import ConfigError, RunConfig, format_validation_error, validate_run_config

#: RunConfig fields the command running the file fills in itself; a file may not set them.
OWNED_FIELDS = ("out_dir", "resume", "sites")


def read_toml_file(path: Path, *, kind: str, example: str) -> dict[str, Any]:
    """Read a TOML file into a dict; errors name the file, the problem and an example.

    Args:
        path: the file.
        kind: what the file is, for messages (e.g. ``"Scenario file"``).
        example: a file to copy from, named in the message when ``path`` is missing.

    Raises:
        ConfigError: the file is missing or is not valid TOML.
    """
    if not path.is_file():
        raise ConfigError(f"{kind} {path} does not exist; expected a .toml file (see {example}).")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path} is not valid TOML: {err}") from err


M = TypeVar("M", bound=BaseModel)


def read_toml_model(path: Path, model: type[M], *, kind: str, example: str) -> M:
    """Read a TOML file and validate it as ``model``; errors name the file and each setting.

    Raises:
        ConfigError: the file is missing, is not valid TOML, or does not validate.
    """
    raw = read_toml_file(path, kind=kind, example=example)
    try:
        return model.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source=str(path), model=model)) from err


def run_config_from_sections(raw: dict[str, Any], *, source: str, owner: str) -> RunConfig:
    """Validate RunConfig sections, refusing the fields ``owner`` sets itself.

    Args:
        raw: the file's tables (without any table that belongs to the caller).
        source: where ``raw`` came from, for messages.
        owner: who sets the owned fields and how, e.g. ``"`simulate` itself (use --out /
            --resume)"``.

    Raises:
        ConfigError: an owned field is set, or the sections do not validate.
    """
    owned = [k for k in OWNED_FIELDS if k in raw]
    if owned:
        raise ConfigError(
            f"Invalid {source}: {owned} are set by {owner}, remove them from the file."
        )
    return validate_run_config(raw, source=source)


def read_run_file(path: Path, *, owner: str) -> RunConfig:
    """Read and validate a run file (no other tables than RunConfig's).

    Raises:
        ConfigError: missing file, invalid TOML, an owned field or an invalid setting.
    """
    raw = read_toml_file(path, kind="Run file", example="deploy/examples/run.toml")
    if "simulation" in raw:
        raise ConfigError(
            f"Invalid {path}: a [simulation] table belongs in a `simulate` scenario file, not in "
            "a run file for a real federation; remove it (sites and their data are the real "
            "site daemons)."
        )
    return run_config_from_sections(raw, source=str(path), owner=owner)
