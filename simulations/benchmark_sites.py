"""The quality benchmark's sites and their roles (docs/benchmark-protocol.md).

Six phantom sites, one scanner each: sites 0 to 3 form the federation, sites 4 and 5 take
part in no pretraining. Sites 2 (validation) and 3 (test) are evaluated *in the
federation*, sites 4 (validation) and 5 (test) as *unseen sites*. Each evaluated site
splits its studies once, by the phantom seed, into test studies that no pretraining sees
and pool studies (its unlabelled pretraining data and where its labelled draws come from).

The folders are symbolic links into the phantom, made anew each run:

    <dest>/pretrain/site-0 .. site-3          the federation's data (evaluated sites: pool
                                              only), the same for both roles
    <dest>/eval-<role>/site-K-pool, site-K-test
                                              the role's evaluated sites only, so a
                                              validation run has no folder of a test site's
                                              studies at all
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from simulations.baselines import linked_folder, site_studies

SETTINGS = ("in_federation", "unseen_site")
FEDERATION = ("site-0", "site-1", "site-2", "site-3")
EVALUATED = {"validation": {"in_federation": "site-2", "unseen_site": "site-4"},
             "test": {"in_federation": "site-3", "unseen_site": "site-5"}}
ROLES = tuple(EVALUATED)
SITES = 6


@dataclass(frozen=True)
class SiteRoles:
    """Where each role's data lies for one run."""

    pretrain_root: Path
    eval_root: Path
    evaluated: dict[str, str]          # setting -> evaluated site, for the role asked

    @property
    def federation(self) -> list[str]:
        return list(FEDERATION)

    @staticmethod
    def pool(site: str) -> str:
        """The eval_root folder of ``site``'s pool studies."""
        return f"{site}-pool"

    @staticmethod
    def test(site: str) -> str:
        """The eval_root folder of ``site``'s test studies."""
        return f"{site}-test"

    def pool_dir(self, site: str) -> Path:
        """``site``'s pool studies: its data for pretraining alone (local_only)."""
        return self.eval_root / self.pool(site)


def split_studies(studies: Sequence[Path], *, test_studies: int,
                  phantom_seed: int) -> tuple[list[Path], list[Path]]:
    """(pool, test): ``test_studies`` of ``studies`` drawn by the phantom seed, the rest pooled."""
    if not 0 < test_studies < len(studies) - 1:
        raise ValueError(f"expected between 1 and {len(studies) - 2} test studies per evaluated "
                         f"site (its other studies, at least 2, are the labelled pool), got "
                         f"{test_studies}; fix: generate more subjects per site or hold out fewer.")
    order = np.random.default_rng([phantom_seed, 0x7E57]).permutation(len(studies))
    test = set(order[:test_studies].tolist())
    return ([s for i, s in enumerate(studies) if i not in test],
            [s for i, s in enumerate(studies) if i in test])


def arrange_sites(data_root: Path, dest: Path, *, role: str, test_studies: int,
                  phantom_seed: int) -> SiteRoles:
    """Link the phantom's studies into the folders above for ``role`` (validation or test)."""
    if role not in EVALUATED:
        raise ValueError(f"expected a role among {list(EVALUATED)}, got {role!r}")
    found = sorted(p.name for p in data_root.iterdir() if p.is_dir())
    wanted = [f"site-{k}" for k in range(SITES)]
    if found != wanted:
        raise ValueError(f"expected the benchmark phantom's sites {wanted} in {data_root}, "
                         f"found {found}; delete the folder to generate it again.")
    splits = {site: split_studies(site_studies(data_root / site), test_studies=test_studies,
                                  phantom_seed=phantom_seed)
              for roles in EVALUATED.values() for site in roles.values()}
    for site in FEDERATION:
        studies = splits[site][0] if site in splits else site_studies(data_root / site)
        linked_folder(studies, dest / "pretrain" / site)
    evaluated = EVALUATED[role]
    for site in evaluated.values():
        pool, test = splits[site]
        linked_folder(pool, dest / f"eval-{role}" / SiteRoles.pool(site))
        linked_folder(test, dest / f"eval-{role}" / SiteRoles.test(site))
    return SiteRoles(pretrain_root=dest / "pretrain", eval_root=dest / f"eval-{role}",
                     evaluated=dict(evaluated))
