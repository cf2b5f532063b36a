"""BraTS 2021 folder discovery: studies, modalities, labels, aliases and reported problems."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from client.data import BratsFolderAdapter, get_adapter
from tests.client.site_data import SHAPE, study_id, write_nifti, write_site, write_study


def _problems_by_name(discovery) -> dict[str, str]:
    return {p.path.name: str(p) for p in discovery.problems}


def test_finds_studies_modalities_and_labels(tmp_path: Path) -> None:
    ids = write_site(tmp_path, num_studies=3)
    discovery = get_adapter("brats2021").discover(tmp_path)
    assert [s.study_id for s in discovery.studies] == ids
    assert discovery.problems == ()
    study = discovery.studies[0]
    assert set(study.images) == {"t1", "t1ce", "t2", "flair"}
    assert study.images["t1ce"] == tmp_path / ids[0] / f"{ids[0]}_t1ce.nii.gz"
    assert study.label == tmp_path / ids[0] / f"{ids[0]}_seg.nii.gz"


@pytest.mark.parametrize(
    ("suffixes", "expected"),
    [
        pytest.param(("t1n", "t1c", "t2w", "t2f"), {"t1", "t1ce", "t2", "flair"}, id="brats2023"),
        pytest.param(("T1", "T1GD", "T2", "FLAIR"), {"t1", "t1ce", "t2", "flair"}, id="upper"),
    ],
)
def test_modality_aliases(tmp_path: Path, suffixes: tuple[str, ...], expected: set[str]) -> None:
    write_study(tmp_path, 0, modalities=suffixes)
    discovery = BratsFolderAdapter().discover(tmp_path)
    assert set(discovery.studies[0].images) == expected
    assert discovery.problems == ()


def test_accepts_uncompressed_nifti_and_missing_label(tmp_path: Path) -> None:
    write_study(tmp_path, 0, suffix=".nii", label=False)
    study = BratsFolderAdapter().discover(tmp_path).studies[0]
    assert study.images["flair"].name == f"{study_id(0)}_flair.nii"
    assert study.label is None


def test_reports_bad_files_and_keeps_going(tmp_path: Path) -> None:
    write_site(tmp_path, num_studies=2)
    sid = study_id(0)
    volume = np.ones(SHAPE, dtype=np.float32)
    write_nifti(tmp_path / sid / f"{sid}_t3.nii.gz", volume)  # unknown modality
    (tmp_path / sid / "notes.txt").write_text("scanner: 3T")  # not the pattern
    write_nifti(tmp_path / sid / f"{study_id(7)}_t1.nii.gz", volume)  # another study's file
    write_nifti(tmp_path / sid / f"{sid}_t1.nii", volume)  # second t1
    (tmp_path / "BraTS2021_00099").mkdir()  # a study folder without images
    write_nifti(tmp_path / "loose_t1.nii.gz", volume)  # outside any study folder
    (tmp_path / "partitioning_1.csv").write_text("Partition_ID,Subject_ID\r\n")  # metadata
    (tmp_path / ".DS_Store").write_text("")

    discovery = BratsFolderAdapter().discover(tmp_path)

    assert [s.study_id for s in discovery.studies] == [study_id(0), study_id(1)]
    # Files are taken in sorted order: the .nii copy comes first and is kept.
    assert discovery.studies[0].images["t1"].name == f"{sid}_t1.nii"
    problems = _problems_by_name(discovery)
    assert set(problems) == {
        f"{sid}_t3.nii.gz", "notes.txt", f"{study_id(7)}_t1.nii.gz", f"{sid}_t1.nii.gz",
        "BraTS2021_00099", "loose_t1.nii.gz",
    }
    assert "unknown modality suffix 't3'" in problems[f"{sid}_t3.nii.gz"]
    assert "Fix:" in problems["notes.txt"]
    assert "named for 'BraTS2021_00007'" in problems[f"{study_id(7)}_t1.nii.gz"]
    assert "second one" in problems[f"{sid}_t1.nii.gz"]
    assert "got none" in problems["BraTS2021_00099"]
    assert all(p.path.is_relative_to(tmp_path) for p in discovery.problems)


def test_empty_root_raises_a_helpful_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError) as err:
        BratsFolderAdapter().discover(tmp_path)
    message = str(err.value)
    assert "BraTS2021_00000/BraTS2021_00000_{flair,t1,t1ce,t2,seg}.nii.gz" in message
    assert "an empty folder" in message
    assert "Fix:" in message


def test_missing_root_raises(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="got nothing at"):
        BratsFolderAdapter().discover(tmp_path / "nope")


def test_root_one_level_too_high_gets_a_hint(tmp_path: Path) -> None:
    write_site(tmp_path / "BraTS2021_Training_Data", num_studies=1)
    with pytest.raises(ValueError, match=r"try data_dir=.*BraTS2021_Training_Data"):
        BratsFolderAdapter().discover(tmp_path)
