"""Scanner-shift rendering, the partition manifest and the per-site study lists on disk."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from rich.console import Console

from client.data import STUDY_LIST_FILE, get_adapter, read_study_list
from simulations.partitioners import (
    NaturalPartitionConfig,
    ScannerShiftPartitionConfig,
    partition_dataset,
    partition_table,
    write_partition,
)
from simulations.partitioners.scanner_shift import shift_volume
from simulations.phantom.profiles import load_profiles
from tests.client.fake_layouts import fets2022, label_volume, volume, write_nifti


def single_site(root: Path, n: int = 6) -> list:
    """A UPENN-GBM-like single-institution tree, discovered."""
    for i in range(n):
        case = f"UPENN-GBM-{i:05d}_11"
        for mod in ("T1", "FLAIR"):
            write_nifti(root / "images_structural" / case / f"{case}_{mod}.nii.gz", volume(i) * 100)
        write_nifti(root / "images_segm" / f"{case}_segm.nii.gz", label_volume((2, 1, 4)))
    return list(get_adapter("upenn_gbm").discover(root).studies)


def test_shift_volume_keeps_background_and_changes_the_foreground() -> None:
    vol = volume(0)
    profile = load_profiles()[2]
    out = shift_volume(vol, profile=profile, gamma=1.2, site_coil=np.zeros(vol.shape, np.float32),
                       rng=np.random.default_rng(0), spacing_mm=2.0)
    assert out.shape == vol.shape and out.dtype == np.float32
    assert np.all(out[vol == 0] == 0) and np.all(out[vol > 0] >= 0)
    assert not np.allclose(out[vol > 0], vol[vol > 0])


def test_scanner_shift_renders_each_sites_images_once(tmp_path: Path) -> None:
    studies = single_site(tmp_path / "upenn")
    cfg = ScannerShiftPartitionConfig()
    part = partition_dataset(studies, cfg=cfg, num_sites=3, seed=0, cache_dir=tmp_path / "cache")
    profiles = [p.name for p in load_profiles()]
    assert [s.profile for s in part.sites] == profiles[:3]
    originals = {s.study_id: s for s in studies}
    for site in part.sites:
        for record in site.studies:
            for modality, path in record.images.items():
                assert path.is_file() and path.is_relative_to(tmp_path / "cache" / "scanner_shift")
                before = nib.load(originals[record.study_id].images[modality]).get_fdata()
                after = nib.load(path).get_fdata()
                assert after.shape == before.shape and not np.allclose(after, before)
            assert record.label == originals[record.study_id].label  # labels are untouched
            assert record.meta["scanner_profile"] == site.profile
    again = partition_dataset(studies, cfg=cfg, num_sites=3, seed=0, cache_dir=tmp_path / "cache")
    first_file = part.sites[0].studies[0].images["t1"]
    assert again.sites[0].studies[0].images["t1"] == first_file
    assert first_file.stat().st_mtime_ns == again.sites[0].studies[0].images["t1"].stat().st_mtime_ns


def test_write_partition_writes_the_manifest_and_one_study_list_per_site(tmp_path: Path) -> None:
    tree = fets2022(tmp_path / "data", per_site=(3, 2, 1), corrupt_file=False)
    discovery = get_adapter("fets2022").discover(tree.root)
    part = partition_dataset(discovery.studies, cfg=NaturalPartitionConfig(keep_largest=1), num_sites=None,
                             seed=0, cache_dir=tmp_path / "cache")
    root, folders = write_partition(part, out_dir=tmp_path / "run", layout="fets2022", data_root=tree.root,
                                    partitioner={"name": "natural"}, seed=0, problems=discovery.problems)
    assert root == tmp_path / "run" / "partition" and len(folders) == 2
    doc = json.loads((tmp_path / "run" / "partition.json").read_text())
    assert [s["name"] for s in doc["sites"]] == ["1", "rest"]
    assert doc["sites"][1]["sources"] == ["2", "3"] and doc["sites"][1]["num_subjects"] == 3
    assert doc["sites"][0]["subjects"]["FeTS2022_00002"] == {"FeTS2022_00002": ["t1", "t2", "flair"]}
    for folder, site in zip(folders, part.sites, strict=True):
        listed = read_study_list(root / folder / STUDY_LIST_FILE)
        assert listed.studies == site.studies
    console = Console(record=True, width=120)
    console.print(partition_table(part, title="t"))
    text = console.export_text()
    assert "rest" in text and "flair" in text


@pytest.mark.parametrize("bad", [{"name": "natural", "keep_largest": 0}, {"name": "dirichlet", "alpha": 0},
                                 {"name": "scanner_shift", "contrast_gamma": [9.0]},
                                 {"name": "modality_missing", "missing": [["t9"]]}])
def test_partition_configs_reject_bad_values(bad: dict) -> None:
    from pydantic import TypeAdapter, ValidationError

    from simulations.partitioners import PartitionConfig

    with pytest.raises(ValidationError):
        TypeAdapter(PartitionConfig).validate_python(bad)
