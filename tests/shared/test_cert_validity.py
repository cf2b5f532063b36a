"""Certificates are reported as expired, not yet valid, or valid for N days (with a warning under 30)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from shared.cert_validity import EXPIRY_WARNING_DAYS, CertificateValidity, certificate_validity
from tests.shared.certs import write_certificate

NOW = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)


def validity(start_days: float, end_days: float) -> CertificateValidity:
    return CertificateValidity("The server certificate", NOW + dt.timedelta(days=start_days),
                               NOW + dt.timedelta(days=end_days))


def test_an_expired_certificate_says_so() -> None:
    v = validity(-400, -1)
    assert "expired on 2026-12-01" in v.problem(NOW) and v.warning(NOW) == ""
    assert v.days_left(NOW) < 0 and v.summary(NOW) == v.problem(NOW)


def test_a_certificate_not_yet_valid_says_so() -> None:
    assert "not valid yet" in validity(2, 400).problem(NOW)


def test_fewer_than_thirty_days_left_warns() -> None:
    soon = validity(-300, EXPIRY_WARNING_DAYS - 1)
    assert soon.problem(NOW) == "" and f"expires in {EXPIRY_WARNING_DAYS - 1} days" in soon.warning(NOW)
    later = validity(-300, EXPIRY_WARNING_DAYS + 1)
    assert later.warning(NOW) == "" and f"valid for {EXPIRY_WARNING_DAYS + 1} more days" in later.summary(NOW)


def test_read_from_a_file(tmp_path: Path) -> None:
    path = write_certificate(tmp_path / "c.pem", not_before=NOW - dt.timedelta(days=1),
                             not_after=NOW + dt.timedelta(days=10))
    v = certificate_validity(path)
    assert v.days_left(NOW) == 10 and v.name == str(path)
    (tmp_path / "bad.pem").write_text("not a certificate")
    with pytest.raises(ValueError, match="Expected a PEM certificate"):
        certificate_validity(tmp_path / "bad.pem")
