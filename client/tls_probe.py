"""The certificate the coordinator presents, as the site sees it: a TLS handshake, checked against ca.crt.

``fedmm site check`` uses it to show the server certificate's days to expiry and to say
exactly why a handshake would fail: expired, not yet valid, or not signed by the
consortium CA. Nothing is sent but a TLS handshake.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from shared.cert_validity import CertificateValidity, validity_of


@dataclass(frozen=True)
class ServerCertificate:
    """What a handshake with the coordinator showed.

    Attributes:
        validity: the presented certificate's validity (None when none was received).
        verified: it is signed by the site's CA, valid now and names the address.
        error: why it is not (or why no handshake happened); "" when verified.
    """

    validity: CertificateValidity | None
    verified: bool
    error: str = ""


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def _peer_certificate(host: str, port: int, context: ssl.SSLContext, timeout: float) -> bytes:
    with socket.create_connection((host, port), timeout=timeout) as raw, \
            context.wrap_socket(raw, server_hostname=host) as tls:
        der = tls.getpeercert(binary_form=True)
    if der is None:
        raise ssl.SSLError("the server sent no certificate")
    return der


def probe_server_certificate(address: str, ca_cert: Path, *, timeout: float = 5.0) -> ServerCertificate:
    """Handshake with ``address`` (host:port) trusting only ``ca_cert``; never raises."""
    host, port = _split(address)
    verifying = ssl.create_default_context(cafile=str(ca_cert))
    name = f"The server certificate of {address}"
    try:
        der = _peer_certificate(host, port, verifying, timeout)
        return ServerCertificate(validity_of(x509.load_der_x509_certificate(der), name=name),
                                 verified=True)
    except ssl.SSLCertVerificationError as err:
        reason = err.verify_message or str(err)
    except (OSError, ssl.SSLError, ValueError) as err:
        return ServerCertificate(None, verified=False,
                                 error=f"no TLS handshake with {address}: {err}")
    lenient = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    lenient.check_hostname = False
    lenient.verify_mode = ssl.CERT_NONE
    try:
        validity = validity_of(x509.load_der_x509_certificate(
            _peer_certificate(host, port, lenient, timeout)), name=name)
    except (OSError, ssl.SSLError, ValueError):
        validity = None
    return ServerCertificate(validity, verified=False,
                             error=f"{name} is refused: {reason} (checked against {ca_cert})")
