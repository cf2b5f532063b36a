"""The levers' summary: every screening's differences, read from its own results file."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest

from simulations.paired_stats import goals, summary

SCREEN = ("python benchmarks/quality.py --role validation --tasks segmentation --label-fractions 0.1 "
          "--variants scratch,local_only,federated")


def results_file(path: Path, *, options: str, dice: dict[str, list[float]], commit: str = "a" * 40,
                 variants: str = "scratch,local_only,federated") -> Path:
    """A results file as quality.py writes it: jobs, their paired differences and the goals."""
    jobs = [{"variant": variant, "setting": "in_federation", "site": "site-2", "task": "segmentation",
             "fraction": 0.1, "seed": seed, "metrics": {"dice_mean": value}}
            for variant, values in dice.items() for seed, value in enumerate(values)]
    pairs = {f"{a}_minus_{b}": summary([100 * (x - y) for x, y in zip(dice[a], dice[b], strict=True)])
             for a, b in (("federated", "scratch"), ("federated", "local_only"),
                          ("federated_bf16", "federated")) if a in dice and b in dice}
    paired = {"in_federation": {"0.1": pairs}}
    path.write_text(json.dumps({
        "command": f"{SCREEN.replace('scratch,local_only,federated', variants)} {options} "
                   f"--name {path.stem} --out-dir x --work-dir /w/{path.stem}",
        "git_commit": commit, "seconds": {"total": 600.0}, "jobs": jobs,
        "paired_dice_points": paired, "goals": goals(paired, fraction="0.1")}))
    return path


def test_each_screening_is_a_row_named_by_its_own_options(levers: ModuleType, tmp_path: Path) -> None:
    results_file(tmp_path / "lever_a.json", options="--strategy fedema",
                 dice={"scratch": [0.50, 0.60, 0.40], "local_only": [0.45, 0.55, 0.35],
                       "federated": [0.60, 0.70, 0.52]})
    results_file(tmp_path / "lever_b.json", options="--pretext x --augment-intensity",
                 dice={"scratch": [0.50, 0.60, 0.40], "local_only": [0.50, 0.62, 0.42],
                       "federated": [0.49, 0.61, 0.41]})
    results_file(tmp_path / "lever_bf16.json", options="", variants="federated,federated_bf16",
                 dice={"federated": [0.5, 0.6], "federated_bf16": [0.52, 0.58]})
    doc = levers.collect(tmp_path, None)
    assert [r["lever"] for r in doc["levers"]] == ["--strategy fedema", "--pretext x --augment-intensity"]
    best = doc["levers"][0]
    assert best["passes"] is True and doc["levers"][1]["passes"] is False
    local = best["differences"]["local_only_minus_scratch"]   # derived from the jobs, per seed
    assert local["per_seed"] == pytest.approx([-5.0, -5.0, -5.0]) and local["ci95"] == pytest.approx([-5, -5])
    assert best["differences"]["unseen_federated_minus_scratch"] is None
    assert [r["lever"] for r in doc["controls"]] == ["the defaults"]
    control = doc["controls"][0]["other_differences"]["federated_bf16_minus_federated"]
    assert control["mean"] == pytest.approx(0.0)


def test_a_lever_with_another_label_fraction_keeps_it_in_its_name(levers: ModuleType) -> None:
    assert levers.lever_name(f"{SCREEN} --rounds 12 --name x") == "--rounds 12"
    other = SCREEN.replace("--label-fractions 0.1", "--label-fractions 0.043")
    assert levers.lever_name(f"{other} --subjects-per-site 80 --out-dir o") == (
        "--label-fractions 0.043 --subjects-per-site 80")


def test_the_summary_is_written_by_its_command_and_reproduces(levers: ModuleType, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    screens, out = tmp_path / "levers", tmp_path / "out"
    screens.mkdir()
    results_file(screens / "lever_a.json", options="--rounds 12",
                 dice={"scratch": [0.5, 0.6], "local_only": [0.4, 0.5], "federated": [0.45, 0.62]})
    reference = results_file(tmp_path / "quality_validation.json", options="",
                             dice={"scratch": [0.5, 0.6], "local_only": [0.5, 0.6], "federated": [0.5, 0.6]})
    argv = ["--in-dir", str(screens), "--reference", str(reference), "--out-dir", str(out)]
    assert levers.main(argv) == 0
    text = (out / "summary.md").read_text()
    assert f"`python benchmarks/levers.py {' '.join(argv)}`" in text
    assert "| `full validation run (reference)` | +0.0" in text and "| `--rounds 12` | -1.5" in text
    assert "No lever passes (1 screened)." in text and (out / "summary.png").stat().st_size > 0
    first = (out / "summary.json").read_bytes()
    assert levers.main(argv) == 0 and (out / "summary.json").read_bytes() == first
    with pytest.raises(SystemExit, match="found none"):      # its own summary is no screening
        levers.main(["--in-dir", str(out), "--reference", "none"])
    capsys.readouterr()


def test_a_folder_without_results_or_with_a_foreign_file_is_refused(levers: ModuleType,
                                                                    tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="found none"):
        levers.collect(tmp_path, None)
    (tmp_path / "notes.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(SystemExit, match=r"notes\.json to be a results file of benchmarks/quality\.py"):
        levers.collect(tmp_path, None)
    with pytest.raises(SystemExit) as exit_:
        levers.main(["--in-dir", str(tmp_path), "--reference", str(tmp_path / "missing.json")])
    assert exit_.value.code == 2



def test_the_committed_summary_is_the_one_its_files_give(levers: ModuleType) -> None:
    """A screening added without re-running `python benchmarks/levers.py` fails here."""
    folder = levers.RESULTS / "levers"
    committed = json.loads((folder / "summary.json").read_text())
    doc = levers.collect(folder, levers.RESULTS / "quality_validation.json")
    assert json.loads(json.dumps({**doc, "command": committed["command"]})) == committed
    assert committed["command"] == "python benchmarks/levers.py"
