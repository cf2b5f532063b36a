"""What a site tells its operator about its data: the list of problems, and one line if none is usable."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from client.data.adapter import DataProblem
from client.data.dataset import NoUsableStudyError, load_site_dataset
from shared.config import DataConfig

__all__ = ["PROBLEMS_FILE", "SiteDataSummary", "no_usable_study_line", "summarize_site_data",
           "write_problem_list"]

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


@dataclass(frozen=True)
class SiteDataSummary:
    """A site's data as training will see it: counts and where the problem list is."""

    studies: int  # studies found (for an idle site: all of them unusable)
    usable: int
    problems: int
    problems_file: str | None

    @property
    def idle(self) -> bool:
        """True when the site has no usable study (it will contribute nothing)."""
        return self.usable == 0

    def line(self, name: str) -> str:
        """The one line said at start: the idle-site warning, or the usable count."""
        if self.idle:
            file = Path(self.problems_file) if self.problems_file else None
            return no_usable_study_line(name, studies=self.studies, problems=self.problems,
                                        problems_file=file)
        skipped = (f", {self.problems} problem{'s' * (self.problems != 1)} listed in {self.problems_file}"
                   if self.problems else "")
        return f"{name}: {self.usable} usable studies{skipped}"


def summarize_site_data(data_dir: Path, *, data: DataConfig, cache_dir: Path, seed: int,
                        problems_dir: Path, samples_dir: Path | None = None) -> SiteDataSummary:
    """Open a site's data exactly as its ClientApp will (filling the cache it uses) and
    write its problem list to ``problems_dir/PROBLEMS_FILE`` (when there are problems).

    Raises:
        Exception: what is not a data error (disk, memory, a bug) propagates.
    """
    problems: tuple[DataProblem, ...]
    try:
        dataset = load_site_dataset(data_dir, data=data, cache_dir=cache_dir, seed=seed,
                                    samples_dir=samples_dir)
        usable, problems, studies = dataset.num_studies, dataset.problems, dataset.num_studies
    except NoUsableStudyError as err:
        usable, problems, studies = 0, err.problems, err.num_studies
    written = write_problem_list(problems, problems_dir / PROBLEMS_FILE) if problems else None
    return SiteDataSummary(studies=studies, usable=usable, problems=len(problems),
                           problems_file=str(written) if written else None)
