"""Registering sites: public keys are checked before Flower sees them; fingerprints as ssh prints."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from client.site_keypair import create_site_keys
from server.site_registry import key_fingerprint, read_public_key


def test_a_key_file_or_its_line_is_accepted(tmp_path: Path) -> None:
    keys = create_site_keys(tmp_path / "site.key", comment="site-a")
    assert read_public_key(str(keys.public_key)) == keys.public_line
    assert read_public_key(keys.public_line) == keys.public_line


@pytest.mark.parametrize("key", ["ssh-rsa AAAAB3Nza fake", "", "not-a-file.pub"],
                         ids=["rsa", "empty", "missing-file"])
def test_other_keys_are_refused_with_the_fix(key: str) -> None:
    with pytest.raises(ValueError, match="fedmm site init"):
        read_public_key(key)


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs ssh-keygen")
def test_fingerprint_matches_ssh_keygen(tmp_path: Path) -> None:
    keys = create_site_keys(tmp_path / "site.key", comment="site-a")
    out = subprocess.run(["ssh-keygen", "-lf", str(keys.public_key)], capture_output=True,
                         text=True, check=True).stdout
    assert key_fingerprint(keys.public_line) in out
