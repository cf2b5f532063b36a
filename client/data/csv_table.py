"""Reading the CSV files datasets ship with: BOM or not, CRLF or LF, stray spaces, blank lines."""

from __future__ import annotations

import csv
import io
from pathlib import Path

__all__ = ["CsvRow", "read_csv"]

#: (line number in the file, column name -> stripped cell)
CsvRow = tuple[int, dict[str, str]]


def read_csv(path: Path) -> tuple[list[str], list[CsvRow]]:
    """Read a CSV with a header row into stripped cells.

    Header names are stripped and lower-cased; blank rows are skipped; rows shorter than
    the header get empty cells.

    Returns:
        the header names and the rows with their line numbers (the header is line 1).

    Raises:
        ValueError: the file cannot be read as UTF-8 text.
    """
    try:
        text = Path(path).read_bytes().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"expected a readable UTF-8 CSV file, got {type(err).__name__}: {err}") from err
    rows = list(csv.reader(io.StringIO(text, newline="")))
    if not rows:
        return [], []
    header = [c.strip().lower() for c in rows[0]]
    out: list[CsvRow] = []
    for line, row in enumerate(rows[1:], start=2):
        cells = [c.strip() for c in row]
        if not any(cells):
            continue
        cells += [""] * (len(header) - len(cells))
        out.append((line, dict(zip(header, cells, strict=False))))
    return header, out
