"""A site daemon's lean install (fedmm without extras) is enough for everything a site runs.

The test environment has every extra installed, so a subprocess makes the simulation-only
packages unimportable (as they are in a lean install) and then loads the site's code path:
the ClientApp, the task executor and runner, the site daemon, and `fedmm site` through the
`fedmm` command itself. It records every attempt to import one of those packages and fails
on any made by fedmm's own code; attempts by libraries (MONAI and nibabel probe optional
packages) are theirs, and they go on without them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Packages only the extras bring (import names), with the distribution that brings them.
SIMULATION_ONLY = {
    "ray": "flwr[simulation]", "nilearn": "nilearn", "matplotlib": "matplotlib",
    "datasets": "flwr-datasets", "pyarrow": "flwr-datasets", "pandas": "nilearn",
    "flwr_datasets": "flwr-datasets", "seaborn": "flwr-datasets", "sklearn": "scikit-learn",
    "scipy": "scipy", "ignite": "pytorch-ignite", "dp_accounting": "flwr[dp]",
    "tensorboard": "tensorboard", "mlflow": "mlflow-skinny",
}
SITE_MODULES = ("client.app", "client.task_executor", "client.task_runner", "client.site_daemon",
                "client.cli", "client.site_check", "simulations.cli")

_PROBE = r"""
import importlib, importlib.abc, json, sys, traceback
from pathlib import Path

blocked, root, modules = set(json.loads(sys.argv[1])), Path(sys.argv[2]), json.loads(sys.argv[3])
ours = [str(root / p) for p in ("client", "server", "shared", "simulations")]
attempts = []

class Lean(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] not in blocked:
            return None
        frames = [f for f in traceback.extract_stack()[:-1] if "importlib" not in f.filename]
        caller = frames[-1].filename if frames else "?"
        attempts.append({"name": name, "by": caller, "ours": any(caller.startswith(o) for o in ours)})
        raise ModuleNotFoundError(f"No module named {name!r} (not in a lean install)", name=name)

sys.meta_path.insert(0, Lean())
for module in modules:
    importlib.import_module(module)
from simulations.cli import app
try:
    app(["site", "--help"], prog_name="fedmm")
except SystemExit as done:
    assert done.code in (0, None), done.code
print("\nRESULT " + json.dumps({"attempts": attempts,
                                "loaded": sorted(m for m in sys.modules if m.split(".")[0] in blocked)}))
"""


def test_the_site_code_path_needs_no_simulation_only_package() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(sorted(SIMULATION_ONLY)), str(ROOT),
         json.dumps(SITE_MODULES)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Commands for hospital IT" in proc.stdout or "fedmm site" in proc.stdout
    result = json.loads(proc.stdout.rsplit("RESULT ", 1)[1])
    ours = [f"{a['name']} (imported by {a['by']})" for a in result["attempts"] if a["ours"]]
    assert not ours, "the site's code path imports simulation-only packages: " + ", ".join(ours)
    assert result["loaded"] == []


def test_the_base_install_lists_none_of_the_simulation_only_packages() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = {d.split("==")[0].split("[")[0].lower() for d in project["dependencies"]}
    assert "flwr" in base and not any(d.startswith("flwr[") for d in project["dependencies"])
    brought_by = {dist.split("[")[0] for dist in SIMULATION_ONLY.values()} - {"flwr"}
    assert not base & brought_by, f"in the site's base install: {sorted(base & brought_by)}"
    extras = project["optional-dependencies"]
    dev_extras = {e for d in extras["dev"] if d.startswith("fedmm[")
                  for e in d[len("fedmm["):-1].split(",")}
    assert {"simulation", "mlflow"} <= dev_extras  # make test installs and tests everything
