"""Which sites' replies may enter a round's aggregate: the server's checks on encoder updates.

A registered site can send anything (its outgoing guard only stops an honest site's own
mistakes), so every training reply is checked here before Flower's strategy sees it:

* the arrays are exactly the encoder entries sent, each with the shape sent and **exactly
  the wire dtype** of the run's ``federation.transfer_dtype`` (float32 by default: a
  float64, float16, int or bool array is then refused), and all finite once cast back to
  the dtype sent (``shared/transfer.py``);
* ``num-examples`` is one of the coarse counts a site may send
  (``shared/coarse_counts.py``), so neither NaN, infinity nor 1e12;
* the update norm ``||w_site - w_sent||`` is at most ``max_update_norm_ratio`` times the
  median update norm of the round's replies that passed the checks above (a median of
  two is their mean, so the rule singles out a site only from three replies on);
* each accepted site's weight is capped at ``max_weight_ratio`` times the median weight.

Reasons name the check and the entry, never a value a site sent. Pure NumPy: the Flower
edge (``server/strategy.py``) decodes messages and calls :func:`screen_round`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from shared.coarse_counts import COARSE_COUNTS
from shared.transfer import from_wire, wire_dtype


class Rejection(StrEnum):
    """The check a rejected reply failed (``metrics.json``: ``failures[].rejected``)."""

    UNREADABLE = "unreadable"            # no arrays, or arrays that do not decode
    NOT_THE_ENCODER = "not-the-encoder"  # other entry names or shapes than sent
    DTYPE = "dtype"                      # another dtype than the run's wire dtype
    NON_FINITE = "non-finite"            # NaN or infinity in an array
    NUM_EXAMPLES = "num-examples"        # not one of the coarse counts
    NO_EXAMPLES = "no-examples"          # trained on nothing: nothing to average
    NORM_OUTLIER = "norm-outlier"        # update norm far above the round's median


@dataclass(frozen=True)
class Candidate:
    """One training reply as the checks see it.

    Attributes:
        node: the site's node id (as metrics.json writes it).
        arrays: the decoded arrays, or None when the reply had none or they did not decode.
        num_examples: the reply's ``num-examples`` exactly as received (any type).
    """

    node: str
    arrays: Mapping[str, np.ndarray] | None
    num_examples: object


@dataclass(frozen=True)
class Verdict:
    """The outcome for one reply.

    Attributes:
        node: the site's node id.
        rejected: the failed check, or None when the reply is accepted.
        reason: a sentence for logs and metrics.json (no value the site sent).
        weight: the capped aggregation weight (0 when rejected).
        update_norm: ``||w_site - w_sent||`` over floating-point entries (None when the
            arrays could not be compared).
        arrays: an accepted reply's arrays cast back to the dtypes sent (what is
            aggregated); None when rejected.
    """

    node: str
    rejected: Rejection | None
    reason: str
    weight: float = 0.0
    update_norm: float | None = None
    arrays: Mapping[str, np.ndarray] | None = field(default=None, repr=False, compare=False)

    @property
    def accepted(self) -> bool:
        return self.rejected is None


def check_arrays(arrays: Mapping[str, np.ndarray] | None, sent: Mapping[str, np.ndarray],
                 *, transfer_dtype: str = "float32") -> tuple[Rejection, str] | None:
    """The first problem with a reply's arrays (as received, in the run's transfer dtype)
    against the arrays sent, or None."""
    if arrays is None:
        return Rejection.UNREADABLE, "the reply holds no encoder arrays that can be decoded"
    if set(arrays) != set(sent):
        # Only counts and the server's own names: a site chooses its entry names.
        extra, missing = len(set(arrays) - set(sent)), sorted(set(sent) - set(arrays))
        return (Rejection.NOT_THE_ENCODER,
                f"expected exactly the {len(sent)} encoder entries sent, got {extra} other "
                f"entries and {len(missing)} missing{f' (e.g. {missing[:2]})' if missing else ''}")
    for key, want in sent.items():
        got = arrays[key]
        if got.shape != want.shape:
            return (Rejection.NOT_THE_ENCODER,
                    f"entry {key!r}: expected shape {want.shape}, got {got.shape}")
        wire = wire_dtype(want.dtype, transfer_dtype)
        if got.dtype != wire:
            how = "as sent" if wire == want.dtype else f"{want.dtype} sent as {transfer_dtype}"
            return (Rejection.DTYPE,
                    f"entry {key!r}: expected dtype {wire} ({how}, federation.transfer_dtype), "
                    f"got {_dtype_name(got)}")
    decoded = from_wire(arrays, sent, transfer_dtype)
    bad = [k for k, a in decoded.items() if a.dtype.kind in "fc" and not np.isfinite(a).all()]
    if bad:
        return (Rejection.NON_FINITE,
                f"NaN or infinity in {len(bad)} of {len(arrays)} entries (e.g. {bad[0]!r})")
    return None


def _dtype_name(array: np.ndarray) -> str:
    """A dtype's plain name; a structured dtype's field names are the site's text."""
    return "a structured dtype" if array.dtype.fields is not None else array.dtype.name


def check_num_examples(value: object) -> tuple[Rejection, str] | None:
    """The problem with a reply's ``num-examples``, or None when it is a coarse count > 0."""
    number = value if isinstance(value, int | float) and not isinstance(value, bool) else None
    if number is None or not math.isfinite(number) or number not in COARSE_COUNTS:
        return (Rejection.NUM_EXAMPLES,
                f"num-examples must be one of the coarse counts {COARSE_COUNTS} "
                f"(shared/coarse_counts.py), got a {type(value).__name__} that is not")
    if number == 0:
        return Rejection.NO_EXAMPLES, "trained on no examples this round; nothing to average"
    return None


def update_norm(arrays: Mapping[str, np.ndarray], sent: Mapping[str, np.ndarray]) -> float:
    """``||w_site - w_sent||``: the L2 norm over the floating-point entries, in float64
    (a finite float32 update cannot overflow it)."""
    total = 0.0
    for key, want in sent.items():
        if want.dtype.kind == "f":
            diff = arrays[key].astype(np.float64) - want.astype(np.float64)
            total += float(np.dot(diff.ravel(), diff.ravel()))
    return math.sqrt(total)


def screen_round(candidates: Sequence[Candidate], *, sent: Mapping[str, np.ndarray],
                 max_update_norm_ratio: float, max_weight_ratio: float,
                 transfer_dtype: str = "float32") -> list[Verdict]:
    """Check every reply of a round; return one verdict per candidate, in order.

    Replies arrive in ``transfer_dtype`` (``federation.transfer_dtype``); an accepted
    verdict carries its arrays cast back to the dtypes sent. Per-reply checks come first;
    the norm rule then compares the survivors' update norms
    with their median, and the weights of the accepted replies are capped at
    ``max_weight_ratio`` times their median.
    """
    problems: dict[int, tuple[Rejection, str]] = {}
    norms: dict[int, float] = {}
    weights: dict[int, float] = {}
    decoded: dict[int, dict[str, np.ndarray]] = {}
    for i, c in enumerate(candidates):
        problem = (check_arrays(c.arrays, sent, transfer_dtype=transfer_dtype)
                   or check_num_examples(c.num_examples))
        if problem is not None:
            problems[i] = problem
        elif c.arrays is not None and isinstance(c.num_examples, int | float):
            decoded[i] = from_wire(c.arrays, sent, transfer_dtype)
            norms[i] = update_norm(decoded[i], sent)
            weights[i] = float(c.num_examples)
    median = float(np.median(list(norms.values()))) if norms else 0.0
    for i, norm in norms.items():
        if norm > max_update_norm_ratio * median:
            del weights[i]
            problems[i] = (Rejection.NORM_OUTLIER,
                           f"update norm {norm / median:.3g} x the round's median (at most "
                           f"{max_update_norm_ratio:g} x, federation.max_update_norm_ratio)"
                           if median > 0 else "update norm above 0 while the round's median is 0")
    cap = max_weight_ratio * float(np.median(list(weights.values()))) if weights else 0.0
    verdicts = []
    for i, c in enumerate(candidates):
        if i in problems:
            check, reason = problems[i]
            verdicts.append(Verdict(c.node, check, reason, update_norm=norms.get(i)))
            continue
        weight = min(weights[i], cap)
        note = f"; weight capped at {weight:g}" if weight < weights[i] else ""
        verdicts.append(Verdict(c.node, None, f"accepted{note}", weight=weight,
                                update_norm=norms[i], arrays=decoded[i]))
    return verdicts
