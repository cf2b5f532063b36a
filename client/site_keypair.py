"""A site's SuperNode authentication key pair: EC P-384, OpenSSH format, private key 0600.

The private key never leaves the site; the coordinator registers the public key
(``fedmm server register-site``), and the SuperLink then admits only that key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

PRIVATE_KEY_FILE = "site.key"
PUBLIC_KEY_SUFFIX = ".pub"


@dataclass(frozen=True)
class SiteKeyPair:
    """Where the key pair lives and the public key line to send to the coordinator."""

    private_key: Path
    public_key: Path
    public_line: str


def public_key_path(private_key: Path) -> Path:
    """``site.key`` -> ``site.key.pub`` (the ssh-keygen convention)."""
    return private_key.with_name(private_key.name + PUBLIC_KEY_SUFFIX)


def create_site_keys(private_key: Path, *, comment: str, overwrite: bool = False) -> SiteKeyPair:
    """Write a new EC P-384 key pair in OpenSSH format (as Flower's SuperNode auth needs).

    Args:
        private_key: path of the private key; the public key goes beside it with ``.pub``.
        comment: appended to the public key line (e.g. the site name), to recognise it.
        overwrite: replace an existing pair (key rotation); the old pair is kept as
            ``*.old``.

    Raises:
        FileExistsError: a key exists and ``overwrite`` is false.
    """
    public_key = public_key_path(private_key)
    if private_key.exists() and not overwrite:
        raise FileExistsError(
            f"{private_key} already exists. Expected no key for a new site; fix: keep using it, "
            "or rotate it with `fedmm site rotate-key` (then have the coordinator register the "
            "new public key)."
        )
    key = ec.generate_private_key(ec.SECP384R1())
    private_bytes = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                      serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH).decode()
    line = f"{public} {comment}".strip() if comment and not any(c.isspace() for c in comment) else public
    private_key.parent.mkdir(parents=True, exist_ok=True)
    if private_key.exists():
        os.replace(private_key, private_key.with_name(private_key.name + ".old"))
        if public_key.exists():
            os.replace(public_key, public_key.with_name(public_key.name + ".old"))
    fd = os.open(private_key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(private_bytes)
    os.chmod(private_key, 0o600)
    public_key.write_text(line + "\n")
    return SiteKeyPair(private_key=private_key, public_key=public_key, public_line=line)


def check_private_key(private_key: Path) -> None:
    """Check that a site key exists, is private to its owner and is an EC key.

    Raises:
        ValueError: missing, readable by others, or not an EC key in OpenSSH format.
    """
    if not private_key.is_file():
        raise ValueError(f"Expected the site's private key at {private_key}, found nothing. Fix: "
                         "run `fedmm site init` or correct [keys].private_key in the site config.")
    mode = private_key.stat().st_mode & 0o777
    if mode & 0o077:
        raise ValueError(f"Expected {private_key} to be readable by its owner only (0600), got "
                         f"{mode:04o}. Fix: chmod 600 {private_key}")
    try:
        key = serialization.load_ssh_private_key(private_key.read_bytes(), password=None)
    except ValueError as err:
        raise ValueError(f"Expected an OpenSSH private key in {private_key}, got unreadable "
                         f"content ({err}). Fix: re-create it with `fedmm site rotate-key`.") from err
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"Expected an EC (ECDSA) key in {private_key} as Flower's SuperNode "
                         f"authentication needs, got {type(key).__name__}. Fix: re-create it "
                         "with `fedmm site rotate-key`.")
