"""Each layout's own quirks: CSV forms, covariates, channels, grids, DICOM geometry, label maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from client.data import DataProblemError, get_adapter
from client.data.load_transforms import MapLabels
from client.data.readers import read_volume
from tests.client import fake_layouts as part1
from tests.client import fake_layouts_more as part2


def _by_id(layout: str, root: Path) -> dict:
    return {s.study_id: s for s in get_adapter(layout).discover(root).studies}


def test_fets_reads_both_partitionings_and_reports_unlisted_cases(tmp_path: Path) -> None:
    tree = part1.fets2022(tmp_path, per_site=(2, 1), corrupt_file=False)
    studies = _by_id("fets2022", tree.root)
    assert studies["FeTS2022_00001"].meta == {"partition_2": "11"}
    # A BOM and LF line endings work as well as CRLF; a case without a row is reported.
    (tree.root / "partitioning_1.csv").write_bytes(b"\xef\xbb\xbfPartition_ID,Subject_ID\n1,FeTS2022_00001\n")
    discovery = get_adapter("fets2022").discover(tree.root)
    assert {s.study_id: s.site for s in discovery.studies} == {
        "FeTS2022_00001": "1", "FeTS2022_00002": None, "FeTS2022_00003": None}
    assert sum("got no row" in p.problem for p in discovery.problems) == 2
    (tree.root / "partitioning_1.csv").unlink()
    (problem,) = get_adapter("fets2022").discover(tree.root).problems
    assert problem.path.name == "partitioning_1.csv" and "copy partitioning_1.csv" in problem.fix


def test_brats2021_without_fets_csv_has_no_sites_and_no_problems(tmp_path: Path) -> None:
    tree = part1.brats2021(tmp_path)
    (tmp_path / "partitioning_1.csv").unlink()
    discovery = get_adapter("brats2021").discover(tree.root)
    assert all(s.site is None for s in discovery.studies) and discovery.problems == ()


def test_brats2023_subjects_cohorts_and_label_map(tmp_path: Path) -> None:
    tree = part1.brats2023(tmp_path)
    studies = _by_id("brats2023", tree.root)
    gli = studies["BraTS-GLI-00000-001"]
    assert gli.subject == "BraTS-GLI-00000" and gli.meta == {"cohort": "GLI", "visit": "001"}
    assert gli.label_map == {1: 1, 2: 2, 3: 4} and gli.images["flair"].name.endswith("-t2f.nii.gz")
    one_challenge = tree.root / "ASNR-MICCAI-BraTS2023-MEN-Challenge-TrainingData"
    assert list(_by_id("brats2023", one_challenge)) == ["BraTS-MEN-00004-000"]


def test_msd_channels_come_from_dataset_json(tmp_path: Path) -> None:
    tree = part1.msd_task01(tmp_path)
    studies = _by_id("msd_task01", tree.root)
    case = studies["BRATS_001"]
    assert case.channels == {"flair": 0, "t1": 1, "t1ce": 2, "t2": 3}
    assert set(case.images.values()) == {tree.root / "Task01_BrainTumour" / "imagesTr" / "BRATS_001.nii.gz"}
    assert case.label_map == {1: 2, 2: 1, 3: 4} and case.meta == {"split": "train"}
    assert studies["BRATS_485"].label is None and studies["BRATS_485"].meta == {"split": "test"}
    (tree.root / "Task01_BrainTumour" / "dataset.json").unlink()
    discovery = get_adapter("msd_task01").discover(tree.root)
    assert {s.study_id for s in discovery.studies} == set(studies)  # the ._ file is not a case
    assert any("documented channel order" in p.problem for p in discovery.problems)


def test_ixi_hospital_covariates_and_grid_reference(tmp_path: Path) -> None:
    studies = _by_id("ixi", part2.ixi(tmp_path).root)
    hh = studies["IXI012-HH-1211"]
    assert hh.site == "HH" and hh.meta["scanner"] == "Philips 3T" and hh.meta["field_strength_t"] == "3.0"
    assert hh.grid_reference == "t1" and "dwi" not in hh.images


def test_ucsf_metadata_matches_three_digit_ids(tmp_path: Path) -> None:
    studies = _by_id("ucsf_pdgm", part2.ucsf_pdgm(tmp_path).root)
    assert studies["UCSF-PDGM-0004"].meta == {"grade": "4", "sex": "M"}
    assert studies["UCSF-PDGM-0515"].meta == {}


def test_isles_and_chaos_keep_their_own_label_schemes(tmp_path: Path) -> None:
    isles = _by_id("isles2022", part2.isles2022(tmp_path / "i").root)
    assert isles["sub-strokecase0001_ses-0001"].grid_reference == "dwi"
    assert isles["sub-strokecase0001_ses-0001"].label_map == {1: 1}
    chaos = _by_id("chaos", part2.chaos(tmp_path / "c").root)
    assert chaos["MR_2_T1DUAL"].subject == chaos["MR_2_T2SPIR"].subject == "MR_2"
    assert chaos["MR_2_T2SPIR"].label_map == {63: 1, 126: 2, 189: 3, 252: 4}
    assert chaos["CT_1"].label_map == {1: 1, 255: 1} and chaos["MR_3_T2SPIR"].label is None


def test_dicom_series_geometry_is_ras(tmp_path: Path) -> None:
    tree = part2.chaos(tmp_path)
    series = tree.root / "Train_Sets" / "CT" / "1" / "DICOM_anon"
    img = read_volume(series)
    assert tuple(img.shape) == part1.SHAPE
    # LPS -> RAS flips the first two axes; slices 2 mm apart along +z.
    np.testing.assert_allclose(np.diag(img.affine.numpy()), [-2.0, -2.0, 2.0, 1.0])
    expected = part1.volume(1) * 300 - 1024
    np.testing.assert_allclose(img.as_tensor().numpy(), np.round(expected).astype(np.int16), atol=1)


def test_manifest_covariates_channels_and_a_csv_given_directly(tmp_path: Path) -> None:
    tree = part2.manifest(tmp_path)
    studies = _by_id("manifest", tree.root / "manifest.csv")
    assert studies["p2"].meta == {"grade": "3"} and studies["p1"].site == "A"
    csv = tmp_path / "four_d.csv"
    part1.write_nifti(tmp_path / "x.nii.gz", np.stack([part1.volume(0)] * 2, axis=-1))
    csv.write_text("site,subject,modality,path,channel\nA,s,t1,x.nii.gz,0\nA,s,t2,x.nii.gz,1\n")
    (record,) = get_adapter("manifest").discover(csv).studies
    assert record.channels == {"t1": 0, "t2": 1}
    (tmp_path / "bad.csv").write_text("subject,path\n")
    with pytest.raises(ValueError, match=r"missing \['site', 'modality'\].*Fix"):
        get_adapter("manifest").discover(tmp_path / "bad.csv")


def test_an_unexpected_label_value_is_reported_with_its_file() -> None:
    label = MetaTensor(torch.tensor([[0, 1], [3, 5]]), meta={"filename_or_obj": "/d/seg.nii.gz"})
    with pytest.raises(DataProblemError) as err:
        MapLabels({1: 1, 2: 2, 3: 4})(label)
    assert err.value.problem.path == Path("/d/seg.nii.gz") and "[5]" in err.value.problem.problem
    assert MapLabels({1: 2, 2: 1, 3: 4})(torch.tensor([0, 1, 2, 3])).tolist() == [0, 2, 1, 4]
