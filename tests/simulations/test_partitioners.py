"""Partitioners: registry and configs agree, determinism, sizes, covariates and alpha behaviour."""

from __future__ import annotations

import typing
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from client.data import StudyRecord
from simulations.partitioners import (
    DirichletPartitionConfig,
    ModalityMissingPartitionConfig,
    NaturalPartitionConfig,
    PartitionConfig,
    QuantityPartitionConfig,
    available_partitioners,
    build_partitioner,
    partition_dataset,
)
from simulations.partitioners.quantity import power_law_sizes

MODS = ("t1", "t1ce", "t2", "flair")


def records(
    sites: dict[str, int], *, grades: tuple[str, ...] = ("2", "3", "4"), visits: int = 1
) -> list[StudyRecord]:
    """``n`` subjects per site, ``visits`` studies per subject, grades cycled (no files)."""
    out = []
    number = 0
    for site, count in sites.items():
        for _ in range(count):
            subject = f"S{number:04d}"
            for visit in range(visits):
                out.append(StudyRecord(
                    study_id=f"{subject}_{visit}", subject_id=subject, site=site,
                    images={m: Path(f"/d/{subject}_{visit}_{m}.nii.gz") for m in MODS},
                    meta={"grade": grades[number % len(grades)], "partition_2": f"{site}{number % 2}"},
                ))
            number += 1
    return out


def split(cfg: object, studies: list[StudyRecord], *, sites: int | None = 4, seed: int = 0, tmp: Path):
    return partition_dataset(studies, cfg=cfg, num_sites=sites, seed=seed, cache_dir=tmp)


def subjects_of(partition) -> list[list[str]]:
    return [sorted(site.subjects) for site in partition.sites]


def config_names() -> set[str]:
    union = typing.get_args(typing.get_args(PartitionConfig)[0])
    return {m.model_fields["name"].default for m in union}


def test_config_union_and_registry_agree() -> None:
    assert config_names() == set(available_partitioners())


def test_unknown_partitioner_suggests_the_closest() -> None:
    cfg = type("Cfg", (), {"name": "dirichlett"})()
    with pytest.raises(ValueError, match="Did you mean 'dirichlet'"):
        build_partitioner(cfg)


# FeTS 2022's partitioning_1 sizes, scaled down.
FETS_LIKE = {"1": 12, "18": 9, "2": 2, "13": 3, "7": 1, "4": 4}


def test_natural_keeps_institutions_largest_first(tmp_path: Path) -> None:
    part = split(NaturalPartitionConfig(), records(FETS_LIKE), sites=None, tmp=tmp_path)
    assert [s.name for s in part.sites] == ["1", "18", "4", "13", "2", "7"]
    assert [len(s.subjects) for s in part.sites] == [12, 9, 4, 3, 2, 1]
    assert all(r.site == s.name for s in part.sites for r in s.studies)


def test_natural_keep_largest_merges_or_drops_the_rest(tmp_path: Path) -> None:
    studies = records(FETS_LIKE)
    merged = split(NaturalPartitionConfig(keep_largest=2), studies, sites=None, tmp=tmp_path)
    assert [s.name for s in merged.sites] == ["1", "18", "rest"]
    assert len(merged.sites[2].subjects) == 10 and set(merged.sites[2].sources) == {"4", "13", "2", "7"}
    dropped = split(NaturalPartitionConfig(keep_largest=2, merge_rest=False), studies, sites=None,
                    tmp=tmp_path)
    assert [s.name for s in dropped.sites] == ["1", "18"] and len(dropped.left_out) == 10
    small = split(NaturalPartitionConfig(min_subjects=4), studies, sites=None, tmp=tmp_path)
    assert [s.name for s in small.sites] == ["1", "18", "4", "rest"]


def test_natural_by_a_meta_key_and_subjects_stay_whole(tmp_path: Path) -> None:
    studies = records({"A": 4, "B": 4}, visits=2)
    part = split(NaturalPartitionConfig(by="partition_2"), studies, sites=None, tmp=tmp_path)
    assert sorted(s.name for s in part.sites) == ["A0", "A1", "B0", "B1"]
    for site in part.sites:
        assert Counter(r.subject for r in site.studies) == dict.fromkeys(site.subjects, 2)


def test_natural_needs_recorded_institutions(tmp_path: Path) -> None:
    studies = [StudyRecord(study_id=f"x{i}", images={"t1": Path("/x")}) for i in range(3)]
    with pytest.raises(ValueError, match="dirichlet"):
        split(NaturalPartitionConfig(), studies, sites=None, tmp=tmp_path)


def test_natural_refuses_a_contradicting_site_count(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="keep_largest"):
        split(NaturalPartitionConfig(), records({"A": 3, "B": 3}), sites=3, tmp=tmp_path)


@pytest.mark.parametrize(
    "cfg",
    [
        pytest.param(DirichletPartitionConfig(by="grade", alpha=0.5), id="dirichlet"),
        pytest.param(QuantityPartitionConfig(exponent=1.0), id="quantity"),
        pytest.param(ModalityMissingPartitionConfig(drop=1), id="modality_missing"),
        pytest.param(NaturalPartitionConfig(by="partition_2"), id="natural"),
    ],
)
def test_same_seed_same_partition_other_seed_other_partition(cfg, tmp_path: Path) -> None:
    studies = records({"A": 30, "B": 30})
    sites = None if cfg.name == "natural" else 4
    first = split(cfg, studies, sites=sites, seed=3, tmp=tmp_path)
    again = split(cfg, list(reversed(studies)), sites=sites, seed=3, tmp=tmp_path)
    assert subjects_of(first) == subjects_of(again)
    assert [s.dropped_modalities for s in first.sites] == [s.dropped_modalities for s in again.sites]
    every = sorted(s for site in first.sites for s in site.subjects)
    assert every == sorted({r.subject for r in studies}) and len(every) == len(set(every))
    if cfg.name != "natural":
        other = split(cfg, studies, sites=sites, seed=4, tmp=tmp_path)
        assert subjects_of(other) != subjects_of(first)


def test_dirichlet_sites_meet_the_minimum_size(tmp_path: Path) -> None:
    part = split(DirichletPartitionConfig(by="grade", alpha=0.3, min_subjects=5), records({"A": 60}),
                 sites=4, tmp=tmp_path)
    assert all(len(s.subjects) >= 5 for s in part.sites)
    with pytest.raises(ValueError, match="min_subjects"):
        split(DirichletPartitionConfig(by="grade", min_subjects=20), records({"A": 60}), sites=4,
              tmp=tmp_path)


def _mean_top_share(alpha: float, tmp: Path) -> float:
    """Mean over seeds and sites of the share of a site's most common grade."""
    shares = []
    for seed in range(5):
        part = split(DirichletPartitionConfig(by="grade", alpha=alpha, min_subjects=1),
                     records({"A": 120}), sites=4, seed=seed, tmp=tmp)
        for site in part.sites:
            grades = Counter(r.meta["grade"] for r in site.studies)
            shares.append(max(grades.values()) / sum(grades.values()))
    return float(np.mean(shares))


def test_small_alpha_skews_the_covariate_large_alpha_does_not(tmp_path: Path) -> None:
    skewed, iid = _mean_top_share(0.05, tmp_path), _mean_top_share(1000.0, tmp_path)
    assert skewed > 0.8 and iid < 0.45 and skewed > iid


def test_dirichlet_over_tumour_size_reads_the_labels(tmp_path: Path) -> None:
    import nibabel as nib

    studies = []
    for i in range(12):
        seg = np.zeros((8, 8, 8), np.uint8)
        seg.flat[: 10 * (i + 1)] = 2  # tumour sizes 10, 20, ..., 120 voxels
        path = tmp_path / f"seg{i}.nii.gz"
        nib.save(nib.Nifti1Image(seg, np.diag([2.0, 2.0, 2.0, 1.0])), str(path))
        studies.append(StudyRecord(study_id=f"s{i:02d}", images={"t1": path}, label=path))
    part = split(DirichletPartitionConfig(by="tumour_size", alpha=0.05, bins=3, min_subjects=1),
                 studies, sites=2, seed=1, tmp=tmp_path)
    assert sum(len(s.subjects) for s in part.sites) == 12
    assert (tmp_path / "tumour_sizes.json").is_file()  # volumes are cached across runs
    from simulations.partitioners.base import group_by_subject
    from simulations.partitioners.covariates import subject_covariates

    values = subject_covariates(group_by_subject(studies), "tumour_size", bins=3)
    assert len(set(values.values())) == 3
    assert values["s00"].startswith("q1") and values["s11"].startswith("q3")


@pytest.mark.parametrize(
    ("total", "sites", "exponent"), [(20, 4, 1.0), (37, 5, 2.0), (9, 3, 0.0), (8, 4, 3.0)]
)
def test_power_law_sizes(total: int, sites: int, exponent: float) -> None:
    sizes = power_law_sizes(total, num_sites=sites, exponent=exponent, minimum=2)
    assert sum(sizes) == total and len(sizes) == sites and min(sizes) >= 2
    assert sizes == sorted(sizes, reverse=True)
    if exponent == 0:
        assert max(sizes) - min(sizes) <= 1


def test_quantity_partition_has_power_law_sizes(tmp_path: Path) -> None:
    cfg = QuantityPartitionConfig(exponent=1.5, min_subjects=1)
    part = split(cfg, records({"A": 40}), sites=4, tmp=tmp_path)
    assert [len(s.subjects) for s in part.sites] == power_law_sizes(40, num_sites=4, exponent=1.5, minimum=1)
    with pytest.raises(ValueError, match="subjects"):
        power_law_sizes(5, num_sites=4, exponent=1.0, minimum=2)


def test_modality_missing_removes_the_listed_modalities(tmp_path: Path) -> None:
    cfg = ModalityMissingPartitionConfig(missing=((), ("T1GD",), ("flair", "t2")))
    part = split(cfg, records({"A": 12}), sites=3, tmp=tmp_path)
    assert [s.dropped_modalities for s in part.sites] == [(), ("t1ce",), ("flair", "t2")]
    for site in part.sites:
        for record in site.studies:
            assert set(record.images) == set(MODS) - set(site.dropped_modalities)
    with pytest.raises(ValueError, match="keep_at_least"):
        split(ModalityMissingPartitionConfig(missing=(("t1", "t2", "flair"),)), records({"A": 4}),
              sites=2, tmp=tmp_path)


def test_modality_missing_draws_keep_enough_modalities(tmp_path: Path) -> None:
    part = split(ModalityMissingPartitionConfig(drop=3, keep_at_least=2), records({"A": 8}), sites=4,
                 tmp=tmp_path)
    assert all(len(s.dropped_modalities) == 2 for s in part.sites)
    assert all(len(r.images) == 2 for s in part.sites for r in s.studies)
