"""When a TLS certificate is valid: read from the file, reported in days, checked before use.

Both ends use it: the coordinator for its server certificate and CA (``fedmm server
start|sites``), a site for the consortium CA and the certificate the server presents
(``fedmm site check``, and the daemon's explanation of a refused handshake). An expired or
not-yet-valid certificate is named as such, never as "not signed by the CA".
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

#: Days before expiry from which fedmm warns about a certificate.
EXPIRY_WARNING_DAYS = 30


@dataclass(frozen=True)
class CertificateValidity:
    """A certificate's validity period (UTC) and what to call it in messages."""

    name: str
    not_before: dt.datetime
    not_after: dt.datetime

    def days_left(self, now: dt.datetime | None = None) -> int:
        """Whole days until expiry (negative once expired)."""
        return (self.not_after - (now or dt.datetime.now(dt.UTC))).days

    def problem(self, now: dt.datetime | None = None) -> str:
        """Why the certificate cannot be used now ("" when it can)."""
        now = now or dt.datetime.now(dt.UTC)
        if now < self.not_before:
            return (f"{self.name} is not valid yet: valid from {self.not_before:%Y-%m-%d %H:%M} "
                    "UTC (check this machine's clock, or the certificate was issued for later)")
        if now > self.not_after:
            return f"{self.name} expired on {self.not_after:%Y-%m-%d %H:%M} UTC"
        return ""

    def warning(self, now: dt.datetime | None = None) -> str:
        """A warning when fewer than EXPIRY_WARNING_DAYS days are left ("" otherwise)."""
        days = self.days_left(now)
        if self.problem(now) or days >= EXPIRY_WARNING_DAYS:
            return ""
        return f"{self.name} expires in {days} days ({self.not_after:%Y-%m-%d})"

    def summary(self, now: dt.datetime | None = None) -> str:
        """One line: the problem, or the days left and the date."""
        return self.problem(now) or (f"{self.name}: valid for {self.days_left(now)} more days "
                                     f"(until {self.not_after:%Y-%m-%d})")


def validity_of(cert: x509.Certificate, *, name: str) -> CertificateValidity:
    return CertificateValidity(name, cert.not_valid_before_utc, cert.not_valid_after_utc)


def certificate_validity(path: Path, *, name: str | None = None) -> CertificateValidity:
    """The validity period of a PEM certificate file.

    Raises:
        ValueError: the file is missing or not a PEM certificate.
    """
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except (ValueError, OSError) as err:
        raise ValueError(f"Expected a PEM certificate in {path}, got an unreadable file ({err}).") from err
    return validity_of(cert, name=name or str(path))
