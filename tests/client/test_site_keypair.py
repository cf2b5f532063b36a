"""A site's SuperNode key pair: EC P-384 in OpenSSH format, private key 0600, rotation."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from client.site_keypair import check_private_key, create_site_keys


def test_key_pair_is_what_supernode_auth_needs(tmp_path: Path) -> None:
    keys = create_site_keys(tmp_path / "keys" / "site.key", comment="hospital-a")
    assert keys.private_key.stat().st_mode & 0o777 == 0o600
    private = serialization.load_ssh_private_key(keys.private_key.read_bytes(), password=None)
    assert isinstance(private, ec.EllipticCurvePrivateKey) and private.curve.name == "secp384r1"
    assert keys.public_line.startswith("ecdsa-sha2-nistp384 ") and keys.public_line.endswith(" hospital-a")
    public = serialization.load_ssh_public_key(keys.public_key.read_bytes())
    assert public.public_numbers() == private.public_key().public_numbers()
    check_private_key(keys.private_key)


def test_existing_key_is_kept_unless_rotated(tmp_path: Path) -> None:
    first = create_site_keys(tmp_path / "site.key", comment="a")
    with pytest.raises(FileExistsError, match="rotate-key"):
        create_site_keys(tmp_path / "site.key", comment="a")
    second = create_site_keys(tmp_path / "site.key", comment="a", overwrite=True)
    assert second.public_line != first.public_line
    assert (tmp_path / "site.key.old").exists() and (tmp_path / "site.key.pub.old").read_text().strip() == (
        first.public_line)


def test_a_key_readable_by_others_or_missing_is_refused(tmp_path: Path) -> None:
    keys = create_site_keys(tmp_path / "site.key", comment="a")
    keys.private_key.chmod(0o644)
    with pytest.raises(ValueError, match="chmod 600"):
        check_private_key(keys.private_key)
    with pytest.raises(ValueError, match="fedmm site init"):
        check_private_key(tmp_path / "missing.key")
