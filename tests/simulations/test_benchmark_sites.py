"""The quality benchmark's sites: fixed roles, test studies that no pretraining sees."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulations.benchmark_sites import EVALUATED, FEDERATION, arrange_sites, split_studies


def phantom(root: Path, subjects: int = 6) -> Path:
    for k in range(6):
        for i in range(subjects):
            (root / f"site-{k}" / f"BraTS2021_{k:02d}{i:03d}").mkdir(parents=True)
    return root


def names(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def test_the_split_is_fixed_by_the_phantom_seed() -> None:
    studies = [Path(f"s{i}") for i in range(12)]
    pool, test = split_studies(studies, test_studies=3, phantom_seed=0)
    assert len(test) == 3 and len(pool) == 9 and not set(pool) & set(test)
    assert split_studies(studies, test_studies=3, phantom_seed=0) == (pool, test)
    assert any(split_studies(studies, test_studies=3, phantom_seed=s)[1] != test for s in range(1, 5))
    with pytest.raises(ValueError, match="between 1 and 10 test studies"):
        split_studies(studies, test_studies=11, phantom_seed=0)


@pytest.mark.parametrize("role", ["validation", "test"])
def test_test_studies_are_in_no_pretraining_and_roles_stay_apart(tmp_path: Path, role: str) -> None:
    data = phantom(tmp_path / "data")
    roles = arrange_sites(data, tmp_path / "sites", role=role, test_studies=2, phantom_seed=0)
    assert roles.evaluated == EVALUATED[role] and roles.federation == list(FEDERATION)
    assert names(roles.pretrain_root) == set(FEDERATION)
    for setting, site in roles.evaluated.items():
        pool, test = names(roles.eval_root / f"{site}-pool"), names(roles.eval_root / f"{site}-test")
        assert len(test) == 2 and len(pool) == 4 and pool | test == names(data / site)
        if setting == "in_federation":  # pretrains on its pool, never on its test studies
            assert names(roles.pretrain_root / site) == pool
    # the in-federation sites of both roles keep their test studies out of pretraining
    for site in ("site-2", "site-3"):
        assert len(names(roles.pretrain_root / site)) == 4
    assert len(names(roles.pretrain_root / "site-0")) == 6
    # a role's run lays out no folder of the other role's evaluated sites
    other = EVALUATED["test" if role == "validation" else "validation"]
    assert not any((roles.eval_root / f"{s}-test").exists() for s in other.values())


def test_the_pretraining_data_is_the_same_for_both_roles(tmp_path: Path) -> None:
    data = phantom(tmp_path / "data")
    a = arrange_sites(data, tmp_path / "sites", role="validation", test_studies=2, phantom_seed=1)
    first = {s: names(a.pretrain_root / s) for s in FEDERATION}
    b = arrange_sites(data, tmp_path / "sites", role="test", test_studies=2, phantom_seed=1)
    assert a.pretrain_root == b.pretrain_root and a.eval_root != b.eval_root
    assert {s: names(b.pretrain_root / s) for s in FEDERATION} == first


def test_a_wrong_phantom_or_role_is_named(tmp_path: Path) -> None:
    (tmp_path / "data" / "site-0").mkdir(parents=True)
    with pytest.raises(ValueError, match="expected the benchmark phantom's sites"):
        arrange_sites(tmp_path / "data", tmp_path / "s", role="test", test_studies=1, phantom_seed=0)
    with pytest.raises(ValueError, match="expected a role among"):
        arrange_sites(tmp_path / "data", tmp_path / "s", role="train", test_studies=1, phantom_seed=0)
