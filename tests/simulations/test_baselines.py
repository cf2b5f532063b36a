"""Non-federated baselines: IID virtual sites, pooled folders, cyclic weight transfer."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from client.site_state import SiteState
from shared.config import RunConfig
from shared.model import build_encoder
from simulations.baselines import iid_site_folders, pooled_site_folder, pretrain_alone, pretrain_cyclic
from tests.client.site_data import SPACING, write_site

CFG = RunConfig.model_validate({
    "seed": 3,
    "model": {"preset": "cpu-small"},
    "data": {"crop_size": 16, "spacing_mm": SPACING, "batch_size": 2, "hist_bins": 8},
    "train": {"eval_batches": 1},
    "privacy": {"min_studies": 2},
})


def fake_sites(root: Path, sizes: dict[str, int]) -> Path:
    for site, n in sizes.items():
        for i in range(n):
            (root / site / f"{site}-study{i}").mkdir(parents=True)
        (root / site / ".cache").mkdir()  # hidden folders are not studies
    return root


def test_iid_folders_deal_every_study_once_and_mix_the_sites(tmp_path: Path) -> None:
    root = fake_sites(tmp_path / "data", {"a": 6, "b": 6, "c": 6})
    dest = iid_site_folders(root, ["a", "b", "c"], tmp_path / "iid", seed=0)
    folders = sorted(p.name for p in dest.iterdir())
    assert folders == ["site-0", "site-1", "site-2"]
    dealt = {f: sorted(p.name for p in (dest / f).iterdir()) for f in folders}
    every = sorted(n for names in dealt.values() for n in names)
    assert every == sorted(f"{s}-study{i}" for s in "abc" for i in range(6))  # each once
    assert all(len(names) == 6 for names in dealt.values())
    assert all(len({n.split("-")[0] for n in names}) > 1 for names in dealt.values())
    again = iid_site_folders(root, ["a", "b", "c"], tmp_path / "iid", seed=0)
    assert {f: sorted(p.name for p in (again / f).iterdir()) for f in folders} == dealt
    other = iid_site_folders(root, ["a", "b", "c"], tmp_path / "iid1", seed=1)
    assert {f: sorted(p.name for p in (other / f).iterdir()) for f in folders} != dealt


def test_pooling_refuses_two_studies_with_one_name(tmp_path: Path) -> None:
    root = fake_sites(tmp_path / "data", {"a": 1, "b": 1})
    (root / "b" / "a-study0").mkdir()
    with pytest.raises(ValueError, match="unique study folder names"):
        pooled_site_folder(root, ["a", "b"], tmp_path / "pooled")


def test_cyclic_visits_every_site_each_round_and_keeps_their_norms_there(tmp_path: Path) -> None:
    for name in ("a", "b"):
        write_site(tmp_path / name, num_studies=3)
    path = pretrain_cyclic(CFG, site_dirs=[tmp_path / "a", tmp_path / "b"], rounds=2,
                           steps_per_round=1, pool=None, out_dir=tmp_path / "cyclic")
    for k in (0, 1):
        assert SiteState.load(tmp_path / "cyclic" / f"site-{k}").rounds == [1, 2]
    torch.manual_seed(CFG.seed)
    init = build_encoder("cpu-small").state_dict()
    cyclic = load_file(path)
    norms = [k for k in init if ".adn.N." in k]
    assert norms and all(torch.equal(cyclic[k], init[k]) for k in norms)  # site-local: initial
    assert any(not torch.equal(cyclic[k], init[k]) for k in init if k.endswith("conv.weight"))
    alone = load_file(pretrain_alone(CFG, data_dir=tmp_path / "a", rounds=1, steps_per_round=1,
                                     pool=None, out_dir=tmp_path / "alone"))
    assert any(not torch.equal(alone[k], init[k]) for k in norms)  # one holder: trained norms
