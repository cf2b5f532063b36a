"""`fedmm data inspect`: layout detection, sites, modalities per subject, labels, problems, JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from client.data.detect import detect_layout
from client.data.inspection import InspectReport, inspect_dataset
from client.data_cli import data_app
from tests.client.fake_layouts import fets2022, msd_task01

runner = CliRunner()


def test_report_counts_sites_subjects_modalities_and_labels(tmp_path: Path) -> None:
    tree = fets2022(tmp_path, per_site=(3, 2, 1))
    report = inspect_dataset(tree.root)
    assert report.layout == "fets2022" and report.detected
    assert [(s.site, s.subjects) for s in report.sites] == [("1", 3), ("2", 2), ("3", 1)]
    assert report.num_subjects == 6 and report.modalities == {"t1": 6, "t1ce": 5, "t2": 6, "flair": 6}
    (incomplete,) = [s for s in report.subjects if s.missing]
    assert incomplete.subject == "FeTS2022_00002" and incomplete.missing == ["t1ce"]
    assert report.labels.labelled_studies == 6 and "canonical" in report.labels.scheme
    assert report.covariates["partition_2"]
    assert [Path(p.path).name for p in report.problems] == ["partitioning_1.csv"]
    assert not report.checked_files


def test_check_reads_every_volume_and_reports_the_corrupt_one(tmp_path: Path) -> None:
    tree = msd_task01(tmp_path)
    report = inspect_dataset(tree.root, check=True)
    assert report.layout == "msd_task01" and report.checked_files
    assert str(tree.corrupt) in {p.path for p in report.problems}
    assert report.labels.labelled_studies == 2 and report.labels.unlabelled_studies == 2


def test_json_output_is_the_documented_schema(tmp_path: Path) -> None:
    tree = fets2022(tmp_path, per_site=(2, 1))
    result = runner.invoke(data_app, ["inspect", str(tree.root), "--format", "json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["schema_id"] == "fedmm.data-inspect/1"
    assert set(doc) == set(InspectReport.model_fields)
    InspectReport.model_validate(doc)


def test_text_output_and_explicit_layout(tmp_path: Path) -> None:
    tree = fets2022(tmp_path, per_site=(2, 1))
    result = runner.invoke(data_app, ["inspect", str(tree.root), "--layout", "brats2021"])
    assert result.exit_code == 0, result.output
    assert "layout      brats2021" in result.stdout and "FeTS2022_00002" in result.stdout


def test_bad_input_exits_2_with_a_fix(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = runner.invoke(data_app, ["inspect", str(tmp_path / "empty")])
    assert result.exit_code == 2 and "--layout" in result.output
    result = runner.invoke(data_app, ["inspect", str(tmp_path), "--layout", "fets"])
    assert result.exit_code == 2 and "fets2022" in result.output


def test_detection_points_at_a_recognisable_sub_folder(tmp_path: Path) -> None:
    fets2022(tmp_path / "downloads", per_site=(1,), corrupt_file=False)
    with pytest.raises(ValueError, match="MICCAI_FeTS2022_TrainingData looks like layout 'fets2022'"):
        detect_layout(tmp_path / "downloads")


def test_the_data_commands_layout_names_are_the_registrys() -> None:
    from client.data import available_adapters
    from client.data_cli import LAYOUTS

    assert list(LAYOUTS) == list(available_adapters())
