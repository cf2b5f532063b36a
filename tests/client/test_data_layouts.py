"""Every registered layout on a tiny fake tree in its real layout: subjects, sites, modalities,
labels after mapping, and a corrupt file reported with its path while the rest loads."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch

from client.data import available_adapters, get_adapter, load_site_dataset
from client.data.detect import detect_layout
from tests.client import fake_layouts as part1
from tests.client import fake_layouts_more as part2
from tests.client.site_data import small_config

BUILDERS: dict[str, part1.Builder] = {
    "brats2021": part1.brats2021, "fets2022": part1.fets2022, "brats2023": part1.brats2023,
    "msd_task01": part1.msd_task01, "upenn_gbm": part2.upenn_gbm, "ucsf_pdgm": part2.ucsf_pdgm,
    "ixi": part2.ixi, "isles2022": part2.isles2022, "chaos": part2.chaos, "manifest": part2.manifest,
}


def test_every_registered_layout_has_a_fake_tree() -> None:
    assert set(BUILDERS) == set(available_adapters())


@pytest.fixture(params=sorted(BUILDERS))
def tree(request: pytest.FixtureRequest, tmp_path: Path) -> part1.FakeTree:
    return BUILDERS[request.param](tmp_path / "data")


def test_discovery_finds_subjects_sites_and_modalities(tree: part1.FakeTree) -> None:
    discovery = get_adapter(tree.layout).discover(tree.root)
    assert {s.study_id: set(s.images) for s in discovery.studies} == tree.modalities
    assert {s.subject: s.site for s in discovery.studies} == tree.sites
    assert {p.path for p in discovery.problems} == tree.discovery_problems
    assert all("Fix" in str(p) or p.fix for p in discovery.problems)


def test_the_layout_is_detected(tree: part1.FakeTree) -> None:
    assert detect_layout(tree.root) == tree.layout


def test_corrupt_file_is_reported_and_the_rest_loads_with_canonical_labels(
    tree: part1.FakeTree, tmp_path: Path
) -> None:
    discovery = get_adapter(tree.layout).discover(tree.root)
    data = small_config(modalities=tree.run_modalities, eval_fraction=0.0)
    ds = load_site_dataset(tree.root, data=data, cache_dir=tmp_path / "cache", seed=0,
                           studies=discovery.studies)
    assert set(ds.train_ids) == set(tree.modalities) - {tree.corrupt_study}
    by_path = {p.path: p for p in ds.problems}
    assert tree.corrupt in by_path, [str(p) for p in ds.problems]
    assert "readable" in by_path[tree.corrupt].problem
    for sample in ds.preprocessed("train"):
        study = sample["study_id"]
        present = {m for m, flag in zip(tree.run_modalities, sample["present"].tolist(), strict=True) if flag}
        assert present == tree.modalities[study] & set(tree.run_modalities)
        assert sample["image"].shape[0] == len(tree.run_modalities)
        if study in tree.labels:
            label = sample["label"]
            assert label.dtype == torch.uint8
            counts = Counter(int(v) for v in label.flatten().tolist() if v)
            assert dict(counts) == tree.labels[study], study
        else:
            assert "label" not in sample
