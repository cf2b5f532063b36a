"""`fedmm site check`: the report shows what training will use, skip and release."""

from __future__ import annotations

from pathlib import Path

import pytest

from client.site_check import check_site
from shared.config import RunConfig, SiteConfig
from tests.client.site_data import SHAPE, SPACING, study_id, write_site, write_study

#: A large epsilon: four patients then (almost) surely clear k = 3.
CFG = RunConfig.model_validate({
    "data": {"crop_size": 8, "spacing_mm": SPACING, "batch_size": 2, "hist_bins": 8},
    "privacy": {"min_studies": 3, "epsilon": 100.0},
})


@pytest.fixture
def messy_site(tmp_path: Path) -> SiteConfig:
    data = tmp_path / "data"
    write_site(data, num_studies=3)
    write_study(data, 3, modalities=("t1", "t2"))                       # fewer modalities: usable
    corrupt = data / study_id(4)
    write_study(data, 4)
    (corrupt / f"{study_id(4)}_t1.nii.gz").write_bytes(b"not a nifti")  # unreadable file
    (data / "empty_study").mkdir()                                       # no images at all
    return SiteConfig(data_dir=data, state_dir=tmp_path / "state")


def test_report_lists_studies_files_problems_and_the_release(messy_site: SiteConfig) -> None:
    report = check_site(CFG, messy_site)
    assert report.ready and not report.fatal
    by_id = {s.study_id: s for s in report.studies}
    assert set(by_id) == {study_id(i) for i in range(5)}
    good = by_id[study_id(0)]
    assert good.usable and set(good.images) == {"t1", "t1ce", "t2", "flair"} and good.has_label
    assert good.images["t1"].shape == SHAPE and good.images["t1"].spacing == (SPACING,) * 3
    assert good.input_shape is not None and good.input_shape[0] == len(CFG.data.modalities)
    assert by_id[study_id(3)].usable and set(by_id[study_id(3)].images) == {"t1", "t2"}
    broken = by_id[study_id(4)]
    assert not broken.usable and broken.images["t1"].error
    paths = {p.path.name for p in report.problems}
    assert f"{study_id(4)}_t1.nii.gz" in paths and "empty_study" in paths
    assert all(p.fix for p in report.problems)
    assert report.usable == 4 and report.shares_statistics and report.patients == 4
    assert report.modality_studies["t1ce"] == 3 and report.modality_studies["t2"] == 4
    assert report.modality_patients["t1ce"] == 3 and report.modality_patients["t2"] == 4
    assert set(report.released_modalities) == {"t1", "t1ce", "t2", "flair"}
    assert report.release_chances["t2"] > 0.99


def test_a_small_site_is_told_it_withholds_statistics(tmp_path: Path) -> None:
    write_site(tmp_path / "data", num_studies=2)
    report = check_site(CFG, SiteConfig(data_dir=tmp_path / "data", state_dir=tmp_path / "s"))
    assert report.ready and report.usable == 2 and not report.shares_statistics
    assert report.release_chances["t1"] < 0.01


def test_the_noisier_the_release_the_more_patients_it_takes(tmp_path: Path) -> None:
    write_site(tmp_path / "data", num_studies=4)
    site = SiteConfig(data_dir=tmp_path / "data", state_dir=tmp_path / "s")
    default_epsilon = CFG.model_copy(update={"privacy": CFG.privacy.model_copy(
        update={"epsilon": 2.0})})
    assert check_site(CFG, site).shares_statistics
    assert not check_site(default_epsilon, site).shares_statistics


def test_a_folder_training_cannot_use_is_fatal(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    report = check_site(CFG, SiteConfig(data_dir=tmp_path / "data", state_dir=tmp_path / "s"))
    assert not report.ready and "Expected" in report.fatal
    missing = check_site(CFG, SiteConfig(data_dir=tmp_path / "nope", state_dir=tmp_path / "s"))
    assert not missing.ready and "nothing" in missing.fatal
