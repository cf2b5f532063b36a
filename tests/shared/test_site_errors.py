"""A site's error replies: fixed codes, a setting name at most, an incident id, nothing else."""

from __future__ import annotations

import pytest

from shared.site_errors import (
    SiteErrorCode,
    SiteRefusal,
    describe_site_error,
    is_site_error,
    new_incident,
    site_error_reason,
)


@pytest.mark.parametrize("code", list(SiteErrorCode), ids=lambda c: c.name)
def test_every_code_round_trips_and_is_described(code: SiteErrorCode) -> None:
    incident = new_incident()
    reason = site_error_reason(code, incident)
    assert is_site_error(int(code), reason)
    assert incident in describe_site_error(int(code), reason)
    assert describe_site_error(int(code), reason).startswith("site ")


def test_a_setting_name_is_the_only_detail_a_refusal_carries() -> None:
    reason = site_error_reason(SiteErrorCode.SITE_LIMIT, "0123456789ab", setting="privacy.epsilon")
    assert reason == "fedmm site-limit [privacy.epsilon] (incident 0123456789ab)"
    assert "(setting privacy.epsilon)" in describe_site_error(1902, reason)
    with pytest.raises(ValueError, match="dotted setting name"):
        site_error_reason(SiteErrorCode.SITE_LIMIT, "0123456789ab", setting="/data/BraTS2021_00042")
    with pytest.raises(ValueError, match="dotted setting name"):
        SiteRefusal("x", setting="epsilon = 8")
    with pytest.raises(ValueError, match="incident"):
        site_error_reason(SiteErrorCode.INTERNAL, "not-hex")


@pytest.mark.parametrize(("code", "reason"), [
    (1900, "<class 'ValueError'>:<'/data/oncology/BraTS2021_00042/t1.nii.gz is corrupt'>"),
    (1900, "fedmm internal-error (incident 0123456789ab) /data/x"),
    (1901, "fedmm internal-error (incident 0123456789ab)"),  # code and text disagree
    (2, "fedmm internal-error (incident 0123456789ab)"),     # not a fedmm code
    (1900, None),
], ids=["exception-text", "trailing-path", "code-mismatch", "flower-code", "no-reason"])
def test_anything_else_is_not_a_site_error(code: int, reason: str | None) -> None:
    assert not is_site_error(code, reason)


def test_flower_errors_are_kept_short_and_printable() -> None:
    assert describe_site_error(5, "Node Unavailable") == "Node Unavailable"
    assert describe_site_error(0, "x\x1b[31m" + "y" * 1000) == "x[31m" + "y" * 295


def test_incident_ids_are_random() -> None:
    assert len({new_incident() for _ in range(50)}) == 50
