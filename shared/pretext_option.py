"""The ``--pretext a,b:0.5`` command-line form of a run's pretext task list.

Outside the ``shared.pretext`` package on purpose: the task names come from the run config
(``shared.config.pretext_task_names``), so parsing, and refusing a wrong name, loads neither
torch nor MONAI.
"""

from __future__ import annotations

from typing import Any

from shared.config import ConfigError, pretext_task_names
from shared.lookup import closest_hint


def parse_pretext_option(text: str) -> list[dict[str, Any]]:
    """``"a,b:0.5"`` -> ``[{"name": "a"}, {"name": "b", "weight": 0.5}]``.

    Raises:
        ConfigError: an unknown task name or a weight that is not a positive number; the
            message lists the registered tasks.
    """
    known = pretext_task_names()
    tasks: list[dict[str, Any]] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, _, weight = part.partition(":")
        name = name.strip()
        if name not in known:
            raise ConfigError(f"--pretext: {name!r} is not a registered pretext task; available: "
                              f"{known}.{closest_hint(name, known)}")
        entry: dict[str, Any] = {"name": name}
        if weight:
            try:
                entry["weight"] = float(weight)
            except ValueError:
                entry["weight"] = -1.0
            if not entry["weight"] > 0:
                raise ConfigError(f"--pretext: the weight of {name!r} must be a positive number, "
                                  f"got {weight!r} (write NAME:WEIGHT, e.g. {name}:0.5).")
        tasks.append(entry)
    if not tasks:
        raise ConfigError(f"--pretext: expected one or more task names separated by commas, got "
                          f"{text!r}; available: {known}.")
    return tasks
