"""FeTS 2022's partitioning CSVs: the institution of each FeTS 2022 / BraTS 2021 training case."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from client.data.adapter import DataProblem

__all__ = ["NATURAL_FILE", "SPLIT_FILE", "case_number", "find_partitioning", "read_partitioning"]

#: 23 real institutions (partition 1..23).
NATURAL_FILE = "partitioning_1.csv"
#: 33 partitions: the five largest institutions each split in three.
SPLIT_FILE = "partitioning_2.csv"
_HEADER = ("partition_id", "subject_id")
# FeTS 2022 numbers are the BraTS 2021 training numbers, so both names map to one case.
_CASE_RE = re.compile(r"^(?:FeTS2022|BraTS2021)_(\d+)$", re.IGNORECASE)


def case_number(study_id: str) -> int | None:
    """``FeTS2022_01341`` or ``BraTS2021_01341`` -> 1341; None for other names."""
    match = _CASE_RE.match(study_id.strip())
    return int(match[1]) if match else None


def find_partitioning(root: Path, name: str = NATURAL_FILE) -> Path | None:
    """The CSV ``name`` in ``root`` or in its parent (where it sits beside the case folders)."""
    for folder in (root, root.parent):
        if (folder / name).is_file():
            return folder / name
    return None


def read_partitioning(path: Path) -> tuple[dict[int, str], list[DataProblem]]:
    """Read a ``Partition_ID,Subject_ID`` CSV (CRLF or LF, with or without a BOM).

    Returns:
        case number -> partition id (as written, e.g. ``"18"``), and one problem per bad
        row (with its line number); a file without the header gives no rows and one problem.
    """
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        return {}, [DataProblem(path=path, problem=f"expected a readable UTF-8 CSV, got {err}.",
                                fix="restore the file from the FeTS 2022 archive.")]
    rows = list(csv.reader(io.StringIO(text, newline="")))
    header = tuple(c.strip().lower() for c in rows[0]) if rows else ()
    if header[:2] != _HEADER:
        return {}, [DataProblem(
            path=path, problem=f"expected the header 'Partition_ID,Subject_ID', got {','.join(header)!r}.",
            fix="restore the file from the FeTS 2022 archive.",
        )]
    cases: dict[int, str] = {}
    problems: list[DataProblem] = []
    for line, row in enumerate(rows[1:], start=2):
        cells = [c.strip() for c in row]
        if not any(cells):
            continue  # blank lines (a trailing CRLF) are not rows
        number = case_number(cells[1]) if len(cells) >= 2 else None
        if len(cells) < 2 or not cells[0].isdigit() or number is None:
            problems.append(DataProblem(
                path=path, problem=f"line {line}: expected '<partition number>,FeTS2022_<case "
                f"number>', got {','.join(cells)!r}.",
                fix="correct or delete the row.",
            ))
            continue
        if number in cases and cases[number] != cells[0]:
            problems.append(DataProblem(
                path=path, problem=f"line {line}: case {cells[1]} is listed in partition "
                f"{cases[number]} and again in {cells[0]}; keeping {cases[number]}.",
                fix="delete one of the two rows.",
            ))
            continue
        cases[number] = cells[0]
    return cases, problems
