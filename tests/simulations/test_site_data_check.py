"""`simulate`'s check of every site's data before the federation: idle sites said once, quorum kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from client.data import PROBLEMS_FILE, no_usable_study_line
from shared.config import ConfigError, FederationConfig, RunConfig, SimulatedSitesConfig
from simulations.site_data_check import check_sites, read_idle_sites, require_quorum
from tests.client.site_data import small_config, study_id, write_site


def _cfg(root: Path, out: Path, *, quorum: float) -> RunConfig:
    return RunConfig(data=small_config(eval_fraction=0.0), federation=FederationConfig(quorum=quorum),
                     sites=SimulatedSitesConfig(data_root=root, site_dirs=("good", "bad"),
                                                state_root=out / "sites"))


@pytest.fixture
def two_sites(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    write_site(root / "good", num_studies=2)
    write_site(root / "bad", num_studies=1)
    for file in (root / "bad" / study_id(0)).iterdir():
        file.write_bytes(b"not an image")
    return root


def test_an_idle_site_is_named_once_with_its_problem_count_and_list(two_sites: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    cfg = _cfg(two_sites, out, quorum=0.5)
    good, bad = check_sites(cfg, out_dir=out)
    assert not good.idle and good.usable == 2 and good.problems_file is None
    assert bad.idle and bad.studies == 1 and bad.problems == 1  # the study, at its first bad file
    listed = out / "sites" / "site-1" / PROBLEMS_FILE
    assert bad.problems_file == str(listed) and len(listed.read_text().splitlines()) == 1
    line = bad.line()
    assert line.startswith("Site site-1 (bad) has no usable study") and "(1 problem," in line
    assert str(listed) in line and "\n" not in line
    require_quorum([good, bad], cfg)  # one of two replies makes a 0.5 quorum
    assert read_idle_sites(out) == [line]
    # The ClientApp finds the validated, cached site: nothing is preprocessed twice.
    assert (out / "sites" / "site-0" / "cache" / "study_index.json").is_file()


def test_the_run_stops_before_the_federation_when_the_quorum_cannot_be_met(
    two_sites: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    out.mkdir()
    cfg = _cfg(two_sites, out, quorum=1.0)
    with pytest.raises(ConfigError, match=r"at least 2 of 2 sites.*site-1 \(bad\)") as err:
        require_quorum(check_sites(cfg, out_dir=out), cfg)
    assert "federation.quorum" in str(err.value)


def test_the_line_for_the_site_daemon_is_one_line_with_the_count_and_the_list() -> None:
    line = no_usable_study_line("hospital-a", studies=3, problems=1, problems_file=Path("/x/p.txt"))
    assert line == ("Site hospital-a has no usable study: none of its 3 studies can be read (1 problem, "
                    "listed in /x/p.txt). It contributes nothing to this run until they are fixed.")
