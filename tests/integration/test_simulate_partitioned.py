"""`simulate` over a fake FeTS 2022 tree split into its natural institutions: a real 2-round
federation where each virtual site loads exactly its partition's studies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.client.fake_layouts import fets2022
from tests.fedmm_cli import run_fedmm
from tests.integration.test_simulate import leftover_processes, simulate

pytestmark = pytest.mark.integration

# Partition 1 has 5 cases (one with a corrupt file), partition 2 has 4, partition 3 has 1:
# keep the two largest institutions and leave the third out.
TINY_FETS = """
seed = 1
[simulation]
layout = "fets2022"
[simulation.partition]
name = "natural"
keep_largest = 2
merge_rest = false
[data]
spacing_mm = 4.0
crop_size = 16
batch_size = 2
eval_fraction = 0.25
[train]
local_steps = 2
eval_batches = 1
[federation]
num_rounds = 2
round_timeout_s = 300
connect_timeout_s = 120
[privacy]
min_studies = 2
"""


@pytest.fixture(scope="module")
def fets_run(tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("fets")
    tree = fets2022(work / "data", per_site=(5, 4, 1))
    (work / "tiny.toml").write_text(TINY_FETS)
    out = work / "run"
    proc = simulate("--config", str(work / "tiny.toml"), "--data-root", str(tree.root), "--out", str(out),
                    cwd=work)
    return tree, out, proc


def test_two_natural_sites_go_through_two_rounds(fets_run) -> None:
    _, out, proc = fets_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert [r["round"] for r in metrics["rounds"]] == [1, 2]
    for rnd in metrics["rounds"]:
        assert rnd["train"]["aggregated"] and len(rnd["train"]["sites"]) == 2
        assert all(s["eval-loss"] is not None for s in rnd["evaluate"]["sites"].values())
    card = json.loads((out / "model_card.json").read_text())
    assert card["sites"] == 2 and card["rounds"] == 2
    assert "Virtual sites (natural)" in proc.stdout


def test_the_partition_manifest_names_each_sites_subjects(fets_run) -> None:
    tree, out, _ = fets_run
    doc = json.loads((out / "partition.json").read_text())
    assert doc["schema"] == "fedmm.partition/1" and doc["layout"] == "fets2022"
    by_site = {s["name"]: set(s["subjects"]) for s in doc["sites"]}
    expected = {site: {s for s, inst in tree.sites.items() if inst == site} for site in ("1", "2")}
    assert by_site == expected
    assert doc["left_out_subjects"] == [s for s, inst in tree.sites.items() if inst == "3"]
    assert any("partitioning_1.csv" in p["path"] for p in doc["problems"])
    lists = sorted((out / "partition").glob("*/fedmm-studies.json"))
    assert [p.parent.name for p in lists] == [s["folder"] for s in doc["sites"]]


def test_each_site_trained_on_its_own_studies_only(fets_run) -> None:
    _, out, _ = fets_run
    metrics = json.loads((out / "metrics.json").read_text())
    examples = sorted(s["num-examples"] for s in metrics["rounds"][0]["train"]["sites"].values())
    assert len(examples) == 2 and all(n > 0 for n in examples)
    assert len(list((out / "sites").glob("site-*/site_state.pt"))) == 2


def test_no_background_process_is_left(fets_run) -> None:
    _, out, _ = fets_run
    assert leftover_processes(out / ".flwr") == []


def test_a_site_count_that_contradicts_the_natural_partition_fails_early(tmp_path: Path) -> None:
    tree = fets2022(tmp_path / "data", per_site=(2, 2, 1), corrupt_file=False)
    (tmp_path / "tiny.toml").write_text(TINY_FETS)
    result = run_fedmm("simulate", "--config", str(tmp_path / "tiny.toml"), "--data-root",
                       str(tree.root), "--sites", "3", "--out", str(tmp_path / "run"))
    assert result.exit_code == 2
    assert "keep_largest" in result.output and "natural" in result.output
