"""The coordinator's TLS material: a CA, a server certificate it signs, private keys 0600."""

from __future__ import annotations

import ipaddress
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from server.certificates import certificate_names, create_certificates, default_ca_key_dir


def test_ca_and_server_certificate_with_names_and_private_keys(tmp_path: Path) -> None:
    paths = create_certificates(tmp_path / "certs", ca_key_dir=tmp_path / "offline",
                                dns_names=("fl.example.org",), ip_addresses=("10.0.0.5",))
    for key in (paths.ca_key, paths.server_key):
        assert key.stat().st_mode & 0o777 == 0o600
    # The CA key is apart from the coordinator's files, in its own folder to take offline.
    assert paths.ca_key == tmp_path / "offline" / "ca.key" and not (tmp_path / "certs" / "ca.key").exists()
    assert (tmp_path / "offline" / "ca.crt").read_bytes() == paths.ca_cert.read_bytes()
    ca = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
    server = x509.load_pem_x509_certificate(paths.server_cert.read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    public = ca.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    server.verify_directly_issued_by(ca)
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"fl.example.org", "localhost"} <= set(san.get_values_for_type(x509.DNSName))
    assert ipaddress.ip_address("10.0.0.5") in san.get_values_for_type(x509.IPAddress)
    assert ipaddress.ip_address("127.0.0.1") in san.get_values_for_type(x509.IPAddress)
    names, _ = certificate_names(paths.server_cert)
    assert "fl.example.org" in names


def test_python_tls_accepts_the_pair(tmp_path: Path) -> None:
    paths = create_certificates(tmp_path, ca_key_dir=tmp_path / "ca", dns_names=("fl.example.org",))
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(paths.server_cert, paths.server_key)  # key matches the certificate
    client = ssl.create_default_context(cafile=str(paths.ca_cert))
    assert client.verify_mode == ssl.CERT_REQUIRED


def test_renew_keeps_the_ca_and_needs_its_key_back_from_offline(tmp_path: Path) -> None:
    certs, offline = tmp_path / "certs", tmp_path / "offline"
    first = create_certificates(certs, ca_key_dir=offline, dns_names=("a.example.org",))
    ca_before = first.ca_cert.read_bytes()
    with pytest.raises(FileExistsError, match="--renew"):
        create_certificates(certs, ca_key_dir=offline, dns_names=("a.example.org",))
    renewed = create_certificates(certs, ca_key_dir=offline, dns_names=("b.example.org",),
                                  renew_server=True)
    assert renewed.ca_cert.read_bytes() == ca_before
    assert "b.example.org" in certificate_names(renewed.server_cert)[0]
    with pytest.raises(FileNotFoundError, match="offline copy"):
        create_certificates(certs, ca_key_dir=tmp_path / "not-brought-back", renew_server=True)


def test_the_default_ca_key_folder_is_beside_the_coordinator_folder(tmp_path: Path) -> None:
    assert default_ca_key_dir(tmp_path / "server") == tmp_path / "server-ca-offline"


@pytest.mark.parametrize(("dns", "ip", "match"), [
    (("bad name",), (), "DNS name"),
    (("10.0.0.1:9093",), (), "DNS name"),
    ((), ("fl.example.org",), "IP address"),
], ids=["space", "port-in-dns", "name-as-ip"])
def test_malformed_names_are_refused(tmp_path: Path, dns: tuple[str, ...], ip: tuple[str, ...],
                                     match: str) -> None:
    with pytest.raises(ValueError, match=match):
        create_certificates(tmp_path, ca_key_dir=tmp_path / "ca", dns_names=dns, ip_addresses=ip)
