"""The manifest run from issue 17: real files no one here wrote (nibabel's own test images,
big-endian and little-endian NIfTI-1, NIfTI-2, a 4D file by channel, FreeSurfer MGZ) listed
for two sites, inspected with --check and trained on by both sites."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from nibabel.testing import data_path

from tests.integration.test_simulate import simulate

# A real Flower federation: ~50-90 s on 2 cores, so `slow` (make test-all), beside CI's other
# integration runs; the file walk itself (tests/client/test_data_real_files.py) runs in CI.
pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROWS = [  # site, subject, file, channel
    ("A", "anat", "anatomical.nii", ""),  # big-endian int16, LAS, 2 mm
    ("A", "moved", "reoriented_anat_moved.nii", ""),  # big-endian float32, reoriented
    ("A", "func", "functional.nii", "0"),  # 4D: its first volume
    ("B", "ex0", "example4d.nii.gz", "0"),
    ("B", "ex1", "example4d.nii.gz", "1"),
    ("B", "nifti2", "example_nifti2.nii.gz", "0"),  # NIfTI-2
]
SCENARIO = """
[train]
local_steps = 1
eval_batches = 1
[federation]
num_rounds = 1
round_timeout_s = 300
connect_timeout_s = 120
"""


@pytest.fixture(scope="module")
def manifest_run(tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("manifest")
    lines = ["site,subject,modality,path,channel"]
    lines += [f"{site},{subject},T1w,{Path(data_path) / name},{channel}"
              for site, subject, name, channel in ROWS]
    csv = work / "manifest.csv"
    csv.write_text("\n".join(lines) + "\n")
    scenario = Path(__file__).resolve().parents[2] / "simulations" / "scenarios" / "manifest_sites.toml"
    # The shipped scenario, made tiny: one round of one step on 16^3 crops at 3 mm.
    text = scenario.read_text().replace("crop_size = 32", "crop_size = 16").replace(
        "spacing_mm = 2.0", "spacing_mm = 3.0")
    (work / "tiny.toml").write_text(text + SCENARIO)
    fedmm = Path(sys.executable).parent / "fedmm"
    inspect = subprocess.run([str(fedmm), "data", "inspect", "--check", "--format", "json", str(csv)],
                             capture_output=True, text=True, timeout=300, cwd=work)
    out = work / "run"
    proc = simulate("--config", str(work / "tiny.toml"), "--data-root", str(csv), "--out", str(out), cwd=work)
    return inspect, out, proc


def test_inspect_check_reads_every_file_of_both_sites(manifest_run) -> None:
    inspect, _, _ = manifest_run
    assert inspect.returncode == 0, inspect.stderr[-2000:]
    report = json.loads(inspect.stdout)
    assert report["problems"] == [] and report["checked_files"]
    assert {s["site"]: s["studies"] for s in report["sites"]} == {"A": 3, "B": 3}


def test_simulate_trains_on_both_sites(manifest_run) -> None:
    _, out, proc = manifest_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "2 of 2 sites have usable studies" in proc.stdout
    assert "no usable study" not in proc.stdout and "contributed nothing" not in proc.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    (rnd,) = metrics["rounds"]
    assert rnd["train"]["aggregated"] and len(rnd["train"]["sites"]) == 2
    assert all(s["num-examples"] > 0 for s in rnd["train"]["sites"].values())
    assert "Traceback" not in (out / "report.html").read_text()
