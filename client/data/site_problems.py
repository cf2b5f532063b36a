"""What a site tells its operator about its data: the list of problems, and one line if none is usable."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from client.data.adapter import DataProblem

__all__ = ["PROBLEMS_FILE", "no_usable_study_line", "write_problem_list"]

#: Where a site keeps the list of its data problems, in its state folder (it names files:
#: it stays on the site).
PROBLEMS_FILE = "data_problems.txt"


def write_problem_list(problems: Sequence[DataProblem], path: Path) -> Path:
    """Write one problem per line (file, what is wrong, the fix) atomically; returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(f"{p}\n" for p in problems) or "No problems found.\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def no_usable_study_line(site: str, *, studies: int, problems: int, problems_file: Path | None) -> str:
    """The one line a site with no usable study says at start (at the site: it may hold paths).

    Args:
        site: the site's name or folder.
        studies: studies found (all of them unusable).
        problems: problems found.
        problems_file: where the list is (``write_problem_list``), or None when not written.
    """
    where = f"listed in {problems_file}" if problems_file is not None else "listed in the log above"
    found = f"none of its {studies} studies can be read" if studies else "no study was found"
    return (f"Site {site} has no usable study: {found} ({problems} problem{'s' * (problems != 1)}, "
            f"{where}). It contributes nothing to this run until they are fixed.")
