"""The `fedmm` command starts without the training stack: `fedmm --help`, `fedmm site ...` and
`fedmm server ...` (hospital IT's and the coordinator's everyday commands) import torch, MONAI,
OpenDP and Ray only in the commands that use them (a few seconds each on a small machine)."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("torch", "monai", "opendp", "ray", "scipy", "mlflow")


def test_importing_the_fedmm_command_loads_no_training_package() -> None:
    code = ("import json, sys; import simulations.cli; "
            f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_the_heavy_commands_still_load_what_they_need() -> None:
    """The check above can fail: the site's data check does load torch and MONAI."""
    code = ("import json, sys; import client.site_check; "
            f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert {"torch", "monai"} <= set(json.loads(out.stdout.strip().splitlines()[-1]))
