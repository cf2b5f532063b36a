"""A site's own limits against what a run asks: the site decides, not the coordinator.

The run config comes from the coordinator, who may be careless or compromised; a site
that took its privacy budget or threshold from there would have none. Every message is
checked against the site's ``[limits]`` (site.toml, passed to the ClientApp in the node
config) before anything is read or computed; a run that asks for more is refused with
the name of the setting (the coordinator learns which setting, never the site's value).
"""

from __future__ import annotations

from shared.config import RunConfig, SiteLimits
from shared.site_errors import SiteErrorCode, SiteRefusal


class SiteLimitRefusal(SiteRefusal):
    """A run setting exceeds the site's own limit."""

    code = SiteErrorCode.SITE_LIMIT


def check_site_limits(cfg: RunConfig, limits: SiteLimits | None) -> None:
    """Refuse a run that asks for more than ``limits`` allow (no limits: a simulation).

    Raises:
        SiteLimitRefusal: naming the run setting, the site's limit and the way out.
    """
    if limits is None:
        return
    checks = (
        ("privacy.epsilon", cfg.privacy.epsilon > limits.max_epsilon_per_release,
         f"privacy.epsilon = {cfg.privacy.epsilon:g} per statistics release",
         f"at most {limits.max_epsilon_per_release:g} ([limits].max_epsilon_per_release)"),
        ("privacy.epsilon", cfg.privacy.epsilon > limits.max_epsilon_total,
         f"privacy.epsilon = {cfg.privacy.epsilon:g} per statistics release",
         f"at most {limits.max_epsilon_total:g} in total ([limits].max_epsilon_total)"),
        ("privacy.min_studies", cfg.privacy.min_studies < limits.min_k,
         f"privacy.min_studies = {cfg.privacy.min_studies} (k)",
         f"at least {limits.min_k} ([limits].min_k)"),
        ("data.batch_size", cfg.data.batch_size > limits.max_batch_size,
         f"data.batch_size = {cfg.data.batch_size}",
         f"at most {limits.max_batch_size} ([limits].max_batch_size)"),
        ("data.max_voxels", cfg.data.max_voxels > limits.max_voxels,
         f"data.max_voxels = {cfg.data.max_voxels}",
         f"at most {limits.max_voxels} ([limits].max_voxels)"),
    )
    for setting, exceeded, asked, allowed in checks:
        if exceeded:
            raise SiteLimitRefusal(
                f"The run asks for {asked}; this site allows {allowed} in site.toml. The site "
                f"refuses the run and tells the coordinator only the setting's name ({setting}). "
                "Fix: ask the coordinator to stay within it, or raise the limit in site.toml "
                "after your privacy officer agrees, then restart the site daemon.",
                setting=setting,
            )


def check_epsilon_budget(*, epsilon: float, spent: float, limits: SiteLimits | None) -> None:
    """Refuse a new statistics release that would take the site past its lifetime budget.

    Raises:
        SiteLimitRefusal: with what is spent, what the release costs and the limit.
    """
    if limits is None or spent + epsilon <= limits.max_epsilon_total + 1e-12:
        return
    raise SiteLimitRefusal(
        f"A new statistics release costs epsilon {epsilon:g}; this site has spent {spent:g} of "
        f"its lifetime budget {limits.max_epsilon_total:g} ([limits].max_epsilon_total in "
        "site.toml; the privacy ledger in the state folder lists every release). The site "
        "refuses to release more. Fix: keep the run's statistics settings (the kept release is "
        "re-sent at no cost), or raise the budget after your privacy officer agrees.",
        setting="privacy.epsilon",
    )
