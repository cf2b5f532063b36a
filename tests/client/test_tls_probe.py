"""`fedmm site check` tells why the server's certificate would be refused: expired, early, or another CA."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from client.tls_probe import probe_server_certificate
from tests.shared.certs import make_ca, make_leaf, write_pem

NOW = dt.datetime.now(dt.UTC)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator:
    servers: list[socket.socket] = []

    def start(cert: Path) -> str:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, cert.with_suffix(".key"))
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        servers.append(listener)

        def loop() -> None:
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                try:
                    with context.wrap_socket(conn, server_side=True):
                        pass
                except (ssl.SSLError, OSError):
                    pass
        threading.Thread(target=loop, daemon=True).start()
        return f"127.0.0.1:{listener.getsockname()[1]}"
    yield start
    for listener in servers:
        listener.close()


@pytest.mark.parametrize(("days", "verified", "says"), [
    ((-1, 60), True, ""),
    ((-400, -2), False, "certificate has expired"),
    ((3, 400), False, "not yet valid"),
], ids=["valid", "expired", "early"])
def test_the_probe_reports_the_true_reason(tmp_path: Path, serve, days: tuple[int, int], verified: bool,
                                           says: str) -> None:
    ca = make_ca()
    key, cert = make_leaf(ca, not_before=NOW + dt.timedelta(days=days[0]),
                          not_after=NOW + dt.timedelta(days=days[1]))
    address = serve(write_pem(tmp_path / "server.pem", cert, key))
    result = probe_server_certificate(address, write_pem(tmp_path / "ca.crt", ca[1]))
    assert result.verified is verified and says in result.error
    assert result.validity is not None and (result.validity.days_left() < 0) == (days[1] < 0)


def test_another_ca_is_named_as_such(tmp_path: Path, serve) -> None:
    key, cert = make_leaf(make_ca(), not_before=NOW - dt.timedelta(days=1),
                          not_after=NOW + dt.timedelta(days=9))
    address = serve(write_pem(tmp_path / "server.pem", cert, key))
    result = probe_server_certificate(address, write_pem(tmp_path / "ca.crt", make_ca("other CA")[1]))
    assert not result.verified and "unable to get local issuer certificate" in result.error


def test_no_server_is_not_an_exception(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = probe_server_certificate(f"127.0.0.1:{port}", write_pem(tmp_path / "ca.crt", make_ca()[1]))
    assert result.validity is None and "no TLS handshake" in result.error
