"""Optional differential privacy on encoder updates: Flower's fixed-clipping wrappers and its RDP accountant.

Off unless the run sets ``[privacy.updates] enabled = true`` (``UpdatePrivacyConfig``).
Each training round is wrapped in Flower's own
``DifferentialPrivacyClientSideFixedClipping`` (sites clip with ``fixedclipping_mod``,
``client/update_clipping.py``) or ``DifferentialPrivacyServerSideFixedClipping``: every
site's update is clipped to ``C`` and the average gets Gaussian noise of standard
deviation ``z C / n`` for the ``n`` sites sampled. Flower's ``RdpAccountant`` composes the
released rounds (site-level add/remove neighbours, no sampling amplification).

fedmm's round protocol tolerates sites that do not reply, so a round may average
``k < n`` replies: its sensitivity is then ``C / k`` and the same noise is a Gaussian
mechanism with noise multiplier ``z k / n``, which is what is accounted. Weights are made
equal (the mechanism's sensitivity assumes an equally weighted mean). A round that would
take epsilon past ``max_epsilon`` is not sent: the run stops and exports what it has.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from flwr.app import Message
from flwr.serverapp.strategy import (
    DifferentialPrivacyClientSideFixedClipping,
    DifferentialPrivacyServerSideFixedClipping,
    Strategy,
)
from flwr.supercore.privacy_accounting import (
    GaussianPrivacyEvent,
    NeighboringRelation,
    PrivacyConfig,
    SamplingMethod,
)
from flwr.supercore.privacy_accounting.rdp_accountant import RdpAccountant

from server.strategy import RoundAggregate
from shared.config import UpdatePrivacyConfig
from shared.wire_keys import MetricKey, RecordKey

log = logging.getLogger("flwr.fedmm.server")


class PrivacyBudgetReached(RuntimeError):
    """The next round would take the accounted epsilon past ``max_epsilon``."""


@dataclass(frozen=True)
class RoundPrivacy:
    """What one released round cost, as metrics.json records it."""

    noise_multiplier: float  # the effective one, z k / n
    sites: int               # k: replies averaged
    sampled: int             # n: sites the noise was calibrated for
    epsilon: float           # cumulative, at delta
    delta: float

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class UpdatePrivacy:
    """The run's update-DP state: the accountant and the per-round Flower wrapper.

    Args:
        cfg: the run's ``[privacy.updates]`` (must be enabled).
        population: sites in the federation (reported with each event; no amplification
            is claimed from it).
        history: rounds already released (a resumed run recomposes them).
    """

    def __init__(self, cfg: UpdatePrivacyConfig, *, population: int,
                 history: Iterable[RoundPrivacy] = ()) -> None:
        if not cfg.enabled:
            raise ValueError("UpdatePrivacy needs [privacy.updates] enabled = true")
        self.cfg = cfg
        self.population = max(1, population)
        self.accountant = RdpAccountant(PrivacyConfig(
            target_delta=cfg.target_delta, population_size=self.population,
            neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE,
            sampling_method=SamplingMethod.NO_AMPLIFICATION, max_epsilon=cfg.max_epsilon))
        for past in history:
            self.accountant.compose(self._event(past.noise_multiplier, past.sites))

    def _event(self, noise_multiplier: float, sites: int) -> GaussianPrivacyEvent:
        sites = max(1, sites)
        return GaussianPrivacyEvent(noise_multiplier=noise_multiplier, sample_size=sites,
                                    population_size=max(self.population, sites))

    def check_budget(self, sampled: int) -> None:
        """Refuse a round whose release (with all ``sampled`` sites replying) would pass
        ``max_epsilon``; fewer replies cost more, and are refused after the fact."""
        if self.cfg.max_epsilon is None:
            return
        if self.accountant.would_exceed(self._event(self.cfg.noise_multiplier, sampled)):
            spent = self.accountant.get_privacy_spent()
            raise PrivacyBudgetReached(
                f"The next round would take update DP's epsilon past {self.cfg.max_epsilon:g} "
                f"([privacy.updates].max_epsilon; spent {spent.epsilon:.3f} at delta "
                f"{spent.delta:g} over {spent.num_releases} rounds). The run stops here and "
                "exports the encoder trained so far.")

    def wrap(self, strategy: Strategy, *, sampled: int) -> Strategy:
        """Flower's fixed-clipping wrapper around ``strategy`` for a round of ``sampled`` sites."""
        wrapper = (DifferentialPrivacyClientSideFixedClipping if self.cfg.clipping == "client"
                   else DifferentialPrivacyServerSideFixedClipping)
        return wrapper(strategy, self.cfg.noise_multiplier, self.cfg.clipping_norm, max(1, sampled))

    def aggregate(self, wrapped: Strategy, server_round: int, accepted: Iterable[Message], *,
                  sampled: int) -> RoundAggregate:
        """The noised, equally weighted mean of the replies the server's checks accepted.

        ``wrapped`` is this round's ``wrap(...)``: Flower's wrapper clips (server-side
        variant), lets the fedmm strategy average, and adds Gaussian noise for the ``sampled``
        sites.
        """
        wrapped.num_sampled_clients = sampled  # type: ignore[attr-defined]
        arrays, _ = wrapped.aggregate_train(server_round, equal_weights(accepted))
        if arrays is None:
            return RoundAggregate(None, "Flower's update-DP wrapper did not aggregate the accepted "
                                        "replies (see the server log)")
        return RoundAggregate(arrays)

    def released(self, *, sites: int, sampled: int) -> RoundPrivacy:
        """Account a round whose noised average of ``sites`` replies was committed."""
        effective = self.cfg.noise_multiplier * sites / max(1, sampled)
        self.accountant.compose(self._event(effective, sites))
        spent = self.accountant.get_privacy_spent()
        log.info("Update DP: round released over %d of %d sites; epsilon %.4f at delta %g",
                 sites, sampled, spent.epsilon, spent.delta)
        return RoundPrivacy(noise_multiplier=effective, sites=sites, sampled=sampled,
                            epsilon=spent.epsilon, delta=spent.delta)

    def summary(self) -> dict[str, Any]:
        """For the model card: mechanism, settings and the epsilon spent."""
        spent = self.accountant.get_privacy_spent()
        return {"mechanism": f"Gaussian, fixed clipping at the {self.cfg.clipping} (Flower), "
                             "site-level add/remove neighbours, RDP accounting, no sampling amplification",
                "clipping_norm": self.cfg.clipping_norm, "noise_multiplier": self.cfg.noise_multiplier,
                "epsilon": spent.epsilon, "delta": spent.delta, "rounds": spent.num_releases}


def equal_weights(replies: Iterable[Message]) -> list[Message]:
    """The replies without errors, each weighted 1 (the mechanism averages sites equally)."""
    out = []
    for msg in replies:
        if msg.has_error():
            continue
        metrics = msg.content.metric_records.get(RecordKey.METRICS)
        if metrics is not None:
            metrics[MetricKey.NUM_EXAMPLES] = 1
        out.append(msg)
    return out
