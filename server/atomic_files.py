"""Files in a run or server folder that another process may read while they are written.

Kept apart from the checkpoints (which need torch) so that the coordinator's light commands
(`fedmm server register-site`, the MLflow check) import only the standard library for them.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_atomic(path: Path, data: bytes) -> None:
    """Write via a temp file and rename, so a crash never leaves a torn file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON object from a run folder that another process may be writing; {} while it is
    missing or unreadable (the next poll reads it again)."""
    try:
        doc: dict[str, Any] = json.loads(path.read_text())
        return doc
    except (OSError, json.JSONDecodeError):
        return {}
