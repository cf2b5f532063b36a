"""Name look-ups whose errors list the valid options and suggest the closest one."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import TypeVar

T = TypeVar("T")


def closest_hint(name: str, options: Iterable[str]) -> str:
    """`` Did you mean 'x'?`` for the closest option, or an empty string."""
    close = difflib.get_close_matches(name, list(options), n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def look_up(name: str, options: Mapping[str, T], *, kind: str, fix: str = "") -> T:
    """``options[name]``, or a ValueError naming the kind, the options and the closest one."""
    if name in options:
        return options[name]
    raise ValueError(
        f"Unknown {kind} {name!r}; expected one of {sorted(options)}."
        f"{closest_hint(name, options)}{' ' + fix if fix else ''}"
    )
