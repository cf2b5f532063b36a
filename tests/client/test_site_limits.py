"""A site's own limits decide what a run may ask of it; the coordinator's config cannot raise them."""

from __future__ import annotations

from typing import Any

import pytest

from client.site_limits import SiteLimitRefusal, check_epsilon_budget, check_site_limits
from shared.config import RunConfig, SiteLimits
from shared.site_errors import SiteErrorCode

LIMITS = SiteLimits(max_epsilon_per_release=4.0, max_epsilon_total=10.0, min_k=8, max_batch_size=6,
                    max_voxels=100_000)


def run(**sections: Any) -> RunConfig:
    return RunConfig.model_validate(sections)


def test_a_run_within_the_limits_passes_and_a_simulation_has_none() -> None:
    within = run(privacy={"epsilon": 4.0, "min_studies": 8}, data={"batch_size": 6, "max_voxels": 100_000})
    check_site_limits(within, LIMITS)
    check_site_limits(run(privacy={"epsilon": 1e12, "min_studies": 1}), None)


def test_the_defaults_admit_the_default_run() -> None:
    check_site_limits(RunConfig(), SiteLimits())


@pytest.mark.parametrize(("sections", "setting", "limit"), [
    ({"privacy": {"epsilon": 1e12, "min_studies": 8}}, "privacy.epsilon", "max_epsilon_per_release"),
    ({"privacy": {"epsilon": 4.0, "min_studies": 1}}, "privacy.min_studies", "min_k"),
    ({"privacy": {"epsilon": 4.0, "min_studies": 8}, "data": {"batch_size": 1000}},
     "data.batch_size", "max_batch_size"),
    ({"privacy": {"epsilon": 4.0, "min_studies": 8}, "data": {"max_voxels": 10**9}},
     "data.max_voxels", "max_voxels"),
], ids=["epsilon", "k", "batch", "voxels"])
def test_a_run_asking_for_more_is_refused_naming_the_setting(
        sections: dict[str, Any], setting: str, limit: str) -> None:
    with pytest.raises(SiteLimitRefusal) as err:
        check_site_limits(run(**sections), LIMITS)
    assert err.value.setting == setting and err.value.code == SiteErrorCode.SITE_LIMIT
    assert f"[limits].{limit}" in str(err.value) and "site.toml" in str(err.value)


def test_one_release_may_not_exceed_the_lifetime_budget_either() -> None:
    small_total = SiteLimits(max_epsilon_per_release=8.0, max_epsilon_total=5.0)
    with pytest.raises(SiteLimitRefusal, match="max_epsilon_total"):
        check_site_limits(run(privacy={"epsilon": 6.0}), small_total)


def test_the_lifetime_budget_counts_what_was_spent() -> None:
    check_epsilon_budget(epsilon=4.0, spent=6.0, limits=LIMITS)  # exactly the budget
    with pytest.raises(SiteLimitRefusal, match="spent 8 of its lifetime budget 10"):
        check_epsilon_budget(epsilon=4.0, spent=8.0, limits=LIMITS)
    check_epsilon_budget(epsilon=4.0, spent=1e9, limits=None)
