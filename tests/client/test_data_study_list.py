"""Study lists: records survive JSON, a site folder with a list loads exactly those studies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from client.data import (
    STUDY_LIST_FILE,
    StudyRecord,
    discover_site,
    load_site_dataset,
    read_study_list,
    write_study_list,
)
from client.data.study_list import record_from_json, record_to_json
from tests.client.fake_layouts import msd_task01
from tests.client.site_data import small_config, study_id, write_site


def test_a_record_with_every_field_round_trips() -> None:
    record = StudyRecord(
        study_id="BRATS_001", subject_id="p1", site="A", images={"flair": Path("/d/x.nii.gz")},
        label=Path("/d/y.nii.gz"), meta={"grade": "4"}, channels={"flair": 0},
        label_map={1: 2, 2: 1, 3: 4}, grid_reference="flair",
    )
    assert record_from_json(json.loads(json.dumps(record_to_json(record)))) == record


def test_a_site_folder_with_a_list_loads_only_the_listed_studies(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_site(data, num_studies=4)
    everything = discover_site(data, layout="brats2021").studies
    site = tmp_path / "partition" / "site-0"
    write_study_list(site / STUDY_LIST_FILE, everything[1:3], layout="brats2021", site="A")
    assert discover_site(site, layout="brats2021").studies == everything[1:3]
    ds = load_site_dataset(site, data=small_config(eval_fraction=0.0), cache_dir=tmp_path / "c", seed=0)
    assert ds.train_ids == (study_id(1), study_id(2))


def test_explicit_studies_override_discovery(tmp_path: Path) -> None:
    tree = msd_task01(tmp_path)
    from client.data import get_adapter

    studies = [s for s in get_adapter("msd_task01").discover(tree.root).studies if s.study_id == "BRATS_001"]
    ds = load_site_dataset(tmp_path / "nowhere", data=small_config(eval_fraction=0.0),
                           cache_dir=tmp_path / "c", seed=0, studies=studies)
    assert ds.train_ids == ("BRATS_001",)


def test_a_damaged_list_says_how_to_fix_it(tmp_path: Path) -> None:
    path = tmp_path / STUDY_LIST_FILE
    path.write_text("{not json")
    with pytest.raises(ValueError, match="Fix"):
        read_study_list(path)
    path.write_text(json.dumps({"schema": "other"}))
    with pytest.raises(ValueError, match=r"fedmm\.study-list/1"):
        read_study_list(path)
    path.write_text(json.dumps({"schema": "fedmm.study-list/1", "studies": [
        {"study_id": "a", "images": {"t1": "/x.nii.gz"}}, {"images": {}}]}))
    listed = read_study_list(path)
    assert [s.study_id for s in listed.studies] == ["a"] and "study #1" in listed.problems[0].problem
