"""The server's checks on training replies: what enters an aggregate, and why the rest does not."""

from __future__ import annotations

import numpy as np
import pytest

from server.update_checks import (
    Candidate,
    Rejection,
    check_arrays,
    check_num_examples,
    screen_round,
    update_norm,
)

SENT = {"encoder.a": np.zeros(3, np.float32), "encoder.b": np.ones((2, 2), np.float32)}


def step(value: float, **overrides: np.ndarray) -> dict[str, np.ndarray]:
    """The sent arrays moved by ``value`` in every coordinate."""
    return {**{k: (v + value).astype(v.dtype) for k, v in SENT.items()}, **overrides}


def screen(*candidates: Candidate, ratio: float = 10.0, cap: float = 2.0):
    return screen_round(list(candidates), sent=SENT, max_update_norm_ratio=ratio, max_weight_ratio=cap)


@pytest.mark.parametrize(("arrays", "check"), [
    (None, Rejection.UNREADABLE),
    (step(0.1, **{"encoder.extra": np.zeros(1, np.float32)}), Rejection.NOT_THE_ENCODER),
    ({"encoder.a": SENT["encoder.a"]}, Rejection.NOT_THE_ENCODER),
    (step(0.1, **{"encoder.a": np.zeros(4, np.float32)}), Rejection.NOT_THE_ENCODER),
    (step(0.1, **{"encoder.a": np.zeros(3, np.float64)}), Rejection.DTYPE),
    (step(0.1, **{"encoder.a": np.zeros(3, np.float16)}), Rejection.DTYPE),
    (step(0.1, **{"encoder.a": np.zeros(3, np.int32)}), Rejection.DTYPE),
    (step(0.1, **{"encoder.a": np.zeros(3, bool)}), Rejection.DTYPE),
    (step(0.1, **{"encoder.a": np.array([0, np.nan, 0], np.float32)}), Rejection.NON_FINITE),
    (step(0.1, **{"encoder.b": np.full((2, 2), -np.inf, np.float32)}), Rejection.NON_FINITE),
], ids=["none", "extra-entry", "missing-entry", "shape", "float64", "float16", "int", "bool",
        "nan", "inf"])
def test_each_array_problem_is_named(arrays, check: Rejection) -> None:
    problem = check_arrays(arrays, SENT)
    assert problem is not None and problem[0] == check


def test_matching_finite_arrays_pass() -> None:
    assert check_arrays(step(0.5), SENT) is None


def test_reasons_carry_no_name_or_dtype_a_site_chose() -> None:
    chosen = "BraTS2021_00042-t1.nii.gz"
    problem = check_arrays(step(0.1, **{chosen: np.zeros(1, np.float32)}), SENT)
    assert problem is not None and chosen not in problem[1]
    structured = np.zeros(3, dtype=[("patient_name", "<f4")])
    problem = check_arrays(step(0.1, **{"encoder.a": structured}), SENT)
    assert problem is not None and problem[0] == Rejection.DTYPE and "patient_name" not in problem[1]


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 1e12, 7, 50.5, -10, "10", True, None],
                         ids=["nan", "inf", "1e12", "not-a-bucket", "fraction", "negative", "text",
                              "bool", "missing"])
def test_num_examples_must_be_a_coarse_count(value: object) -> None:
    problem = check_num_examples(value)
    assert problem is not None and problem[0] == Rejection.NUM_EXAMPLES


@pytest.mark.parametrize("value", [1, 10, 50, 200, 1000, 50.0])
def test_coarse_counts_pass(value: object) -> None:
    assert check_num_examples(value) is None


def test_zero_examples_is_nothing_to_average() -> None:
    problem = check_num_examples(0)
    assert problem is not None and problem[0] == Rejection.NO_EXAMPLES


def test_update_norm_is_the_distance_to_what_was_sent_in_float64() -> None:
    assert update_norm(step(2.0), SENT) == pytest.approx(2.0 * np.sqrt(7))
    huge = step(0.0, **{"encoder.a": np.full(3, 3e38, np.float32)})
    assert np.isfinite(update_norm(huge, SENT))   # float32 squares would overflow


def test_an_outlier_norm_is_rejected_against_the_rounds_median() -> None:
    verdicts = screen(Candidate("1", step(0.1), 10), Candidate("2", step(0.12), 10),
                      Candidate("3", step(0.09), 10), Candidate("4", step(-2.0), 10))
    assert [v.rejected for v in verdicts] == [None, None, None, Rejection.NORM_OUTLIER]
    assert "x the round's median" in verdicts[3].reason
    assert verdicts[0].update_norm == pytest.approx(0.1 * np.sqrt(7), rel=1e-5)


def test_a_huge_but_finite_update_is_an_outlier() -> None:
    verdicts = screen(Candidate("1", step(0.1), 10), Candidate("2", step(0.1), 10),
                      Candidate("3", step(1e30), 10))
    assert [v.accepted for v in verdicts] == [True, True, False]
    assert verdicts[2].rejected == Rejection.NORM_OUTLIER


def test_with_two_replies_the_norm_rule_cannot_tell_which_one_is_bad() -> None:
    # The median of two norms is their mean, and neither is 10 x the mean: documented limit.
    verdicts = screen(Candidate("1", step(0.1), 10), Candidate("2", step(1e30), 10))
    assert all(v.accepted for v in verdicts)


def test_rejected_replies_do_not_set_the_median() -> None:
    # Two NaN replies are not part of the median, so the honest norms still decide.
    nan = step(0.1, **{"encoder.a": np.full(3, np.nan, np.float32)})
    verdicts = screen(Candidate("1", nan, 10), Candidate("2", nan, 10), Candidate("3", step(0.1), 10),
                      Candidate("4", step(0.1), 10), Candidate("5", step(5.0), 10))
    assert [v.rejected for v in verdicts] == [Rejection.NON_FINITE, Rejection.NON_FINITE, None, None,
                                              Rejection.NORM_OUTLIER]


def test_weights_are_capped_at_a_multiple_of_the_median() -> None:
    verdicts = screen(Candidate("1", step(0.1), 10), Candidate("2", step(0.1), 10),
                      Candidate("3", step(0.1), 1000), cap=2.0)
    assert [v.weight for v in verdicts] == [10.0, 10.0, 20.0]
    assert "capped" in verdicts[2].reason


def test_a_rejected_reply_has_no_weight_and_every_candidate_gets_a_verdict_in_order() -> None:
    verdicts = screen(Candidate("1", step(0.1), float("nan")), Candidate("1", step(0.1), 10),
                      Candidate("9", None, 10))
    assert [v.node for v in verdicts] == ["1", "1", "9"]
    assert [v.weight for v in verdicts] == [0.0, 10.0, 0.0]


@pytest.mark.parametrize("transfer", ["bfloat16", "float16"])
def test_sixteen_bit_replies_are_checked_in_their_wire_dtype_and_cast_back(transfer: str) -> None:
    import torch

    from shared.transfer import to_wire

    wire = to_wire({k: torch.from_numpy(v) for k, v in step(0.5).items()}, transfer)
    assert check_arrays(wire, SENT, transfer_dtype=transfer) is None
    problem = check_arrays(step(0.5), SENT, transfer_dtype=transfer)  # float32 where 16 bits are due
    assert problem is not None and problem[0] == Rejection.DTYPE and transfer in problem[1]
    nan = to_wire({"encoder.a": torch.tensor([0.0, float("nan"), 0.0])}, transfer)
    problem = check_arrays({**wire, **nan}, SENT, transfer_dtype=transfer)
    assert problem is not None and problem[0] == Rejection.NON_FINITE
    verdicts = screen_round([Candidate("1", wire, 10), Candidate("2", wire, 10)], sent=SENT,
                            max_update_norm_ratio=10.0, max_weight_ratio=2.0, transfer_dtype=transfer)
    assert all(v.accepted for v in verdicts)
    arrays = verdicts[0].arrays
    assert arrays is not None and all(a.dtype == np.float32 for a in arrays.values())
    np.testing.assert_allclose(arrays["encoder.b"], step(0.5)["encoder.b"], rtol=1e-2)
