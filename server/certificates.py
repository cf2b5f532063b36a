"""The coordinator's TLS material: a certificate authority and the SuperLink's certificate.

Made with ``cryptography`` (no openssl binary needed). Sites receive only ``ca.crt``. The
CA's private key signs server certificates and is written to a folder of its own, apart
from the coordinator folder, for the operator to take offline: the running coordinator
never needs it, and the compose and systemd set-ups never mount it.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_CERT = "ca.crt"
CA_KEY = "ca.key"
SERVER_CERT = "server.pem"
SERVER_KEY = "server.key"
#: Names every server certificate carries, so the coordinator's own CLI can connect locally.
LOCAL_NAMES = ("localhost",)
LOCAL_IPS = ("127.0.0.1", "::1")


@dataclass(frozen=True)
class CertificatePaths:
    """Where :func:`create_certificates` put the TLS files."""

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path


def write_private_key(path: Path, key: ec.EllipticCurvePrivateKey) -> Path:
    """Write a PEM private key readable by its owner only (0600), never via a wider mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(path, 0o600)  # the umask cannot widen it, but make the mode explicit
    return path


def _write_cert(path: Path, cert: x509.Certificate) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fedmm"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _validity(days: int) -> tuple[dt.datetime, dt.datetime]:
    if days < 1:
        raise ValueError(f"expected a validity of at least 1 day, got {days}; fix: pass e.g. 825.")
    now = dt.datetime.now(dt.UTC)
    return now - dt.timedelta(minutes=5), now + dt.timedelta(days=days)


def create_ca(*, common_name: str = "fedmm consortium CA",
              valid_days: int = 3650) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A self-signed CA (EC P-384) that may sign server certificates only (path length 0)."""
    key = ec.generate_private_key(ec.SECP384R1())
    start, end = _validity(valid_days)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name)).issuer_name(_name(common_name))
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA384())
    )
    return key, cert


def _alt_names(dns_names: tuple[str, ...], ip_addresses: tuple[str, ...]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for dns in dict.fromkeys((*dns_names, *LOCAL_NAMES)):
        if not dns or any(c.isspace() for c in dns) or "/" in dns or ":" in dns:
            raise ValueError(f"expected a DNS name such as fl.hospital.org, got {dns!r}; fix: "
                             "pass host names with --dns and addresses with --ip.")
        names.append(x509.DNSName(dns))
    for ip in dict.fromkeys((*ip_addresses, *LOCAL_IPS)):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(ip)))
        except ValueError as err:
            raise ValueError(f"expected an IP address such as 10.0.0.5, got {ip!r}; fix: pass "
                             "IP addresses with --ip and host names with --dns.") from err
    return names


def create_server_certificate(
    ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, *,
    dns_names: tuple[str, ...] = (), ip_addresses: tuple[str, ...] = (), valid_days: int = 825,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """The SuperLink's certificate: signed by the CA, valid for the given names and IPs.

    ``localhost``, ``127.0.0.1`` and ``::1`` are always added, so the coordinator's own
    ``flwr`` commands can reach the SuperLink on the same machine.
    """
    key = ec.generate_private_key(ec.SECP384R1())
    start, end = _validity(valid_days)
    alt = _alt_names(dns_names, ip_addresses)
    common = dns_names[0] if dns_names else (ip_addresses[0] if ip_addresses else "localhost")
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common)).issuer_name(ca_cert.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=True,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
                       critical=False)
        .sign(ca_key, hashes.SHA384())
    )
    return key, cert


def default_ca_key_dir(out: Path) -> Path:
    """Where ``fedmm server init --out OUT`` puts the CA key: a sibling folder, ``OUT-ca-offline``."""
    out = out.expanduser().resolve()
    return out.parent / f"{out.name}-ca-offline"


def create_certificates(cert_dir: Path, *, ca_key_dir: Path, dns_names: tuple[str, ...] = (),
                        ip_addresses: tuple[str, ...] = (), renew_server: bool = False,
                        valid_days: int = 825) -> CertificatePaths:
    """Create the CA (unless it exists) and a server certificate.

    Args:
        cert_dir: folder for ``ca.crt``, ``server.pem`` and ``server.key``.
        ca_key_dir: folder for the CA's private key ``ca.key`` (and a copy of ``ca.crt``),
            to be taken offline; with ``renew_server`` the key is read from there.
        dns_names: host names the sites use to reach the SuperLink.
        ip_addresses: IP addresses the sites use to reach the SuperLink.
        renew_server: re-issue the server certificate with the existing CA (sites keep
            their ``ca.crt``); without it an existing server certificate is an error.
        valid_days: validity of the server certificate.

    Raises:
        FileExistsError: the server certificate exists and ``renew_server`` is false.
        ValueError: a name or address is malformed.
    """
    paths = CertificatePaths(cert_dir / CA_CERT, ca_key_dir / CA_KEY, cert_dir / SERVER_CERT,
                             cert_dir / SERVER_KEY)
    if paths.server_cert.exists() and not renew_server:
        raise FileExistsError(
            f"{paths.server_cert} already exists. Expected an empty folder for a new coordinator; "
            "fix: pass --renew to re-issue the server certificate with the existing CA, or "
            "choose another --out."
        )
    if paths.ca_cert.exists() and paths.ca_key.exists():
        ca_key_any = serialization.load_pem_private_key(paths.ca_key.read_bytes(), password=None)
        if not isinstance(ca_key_any, ec.EllipticCurvePrivateKey):
            raise ValueError(f"expected an EC private key in {paths.ca_key}, got "
                             f"{type(ca_key_any).__name__}; fix: move the folder away and "
                             "start with a new CA.")
        ca_key = ca_key_any
        ca_cert = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
    elif renew_server:
        raise FileNotFoundError(
            f"--renew needs the existing CA ({paths.ca_cert} and its private key {paths.ca_key}); "
            "got no key there. Fix: bring the CA key folder back from its offline copy and pass "
            "it with --ca-key-dir, or run init without --renew."
        )
    else:
        if paths.ca_cert.exists() or paths.ca_key.exists():
            raise FileExistsError(
                f"Found only half of a CA ({paths.ca_cert} or {paths.ca_key}). Expected both or "
                "neither; fix: restore the missing file, or choose a new --out.")
        ca_key, ca_cert = create_ca()
        write_private_key(paths.ca_key, ca_key)
        _write_cert(paths.ca_cert, ca_cert)
        _write_cert(ca_key_dir / CA_CERT, ca_cert)
    key, cert = create_server_certificate(ca_key, ca_cert, dns_names=dns_names,
                                          ip_addresses=ip_addresses, valid_days=valid_days)
    write_private_key(paths.server_key, key)
    _write_cert(paths.server_cert, cert)
    return paths


def certificate_names(path: Path) -> tuple[list[str], dt.datetime]:
    """The subject alternative names of a certificate file and its expiry (UTC)."""
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [str(v) for v in san.get_values_for_type(x509.DNSName)]
        names += [str(v) for v in san.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        names = []
    return names, cert.not_valid_after_utc

