"""Registering hospitals' public keys with the SuperLink, and listing the sites' status.

Thin wrappers over ``flwr supernode register|unregister|ls`` on the coordinator's
connection: the SuperLink (with ``--enable-supernode-auth``) admits only registered keys.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from server.atomic_files import write_atomic
from server.deploy_config import CONNECTION, ServerDeployConfig
from server.superlink_daemon import write_connection
from shared.flower_cli import flower_bin, flower_env

#: Key types Flower's SuperNode authentication accepts (EC keys on NIST curves).
KEY_TYPES = ("ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521")


class SiteRegistryError(RuntimeError):
    """The SuperLink refused or could not be reached; the message holds Flower's answer."""


@dataclass(frozen=True)
class SiteEntry:
    """One registered site as the SuperLink sees it, with the name it was registered under."""

    node_id: str
    name: str
    status: str
    fingerprint: str
    details: dict[str, Any]


def key_fingerprint(line: str) -> str:
    """``SHA256:...`` of an OpenSSH public key line, as ``ssh-keygen -lf`` prints it."""
    blob = base64.b64decode(line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def _read_book(cfg: ServerDeployConfig) -> dict[str, dict[str, str]]:
    # Flower keeps the registration name but `flwr supernode ls` does not show it, so the
    # coordinator keeps its own small book: node id -> name, key fingerprint, dates.
    try:
        book: dict[str, dict[str, str]] = json.loads(cfg.paths.sites_file.read_text())
        return book
    except (OSError, json.JSONDecodeError):
        return {}


def _write_book(cfg: ServerDeployConfig, book: dict[str, dict[str, str]]) -> None:
    write_atomic(cfg.paths.sites_file, json.dumps(book, indent=2, sort_keys=True).encode())


def _flwr(cfg: ServerDeployConfig, args: list[str], *, insecure: bool) -> str:
    write_connection(cfg, insecure=insecure)
    proc = subprocess.run([flower_bin("flwr"), *args], capture_output=True, text=True,
                          env=flower_env(cfg.paths.flwr_home), timeout=120, check=False)
    return proc.stdout + proc.stderr


def _json_answer(text: str, *, what: str, cfg: ServerDeployConfig) -> dict[str, Any]:
    start = text.find("{")
    try:
        doc: dict[str, Any] = json.loads(text[start:]) if start >= 0 else {}
    except json.JSONDecodeError:
        doc = {}
    if not doc.get("success", False):
        raise SiteRegistryError(
            f"{what} failed. Flower answered: {(doc.get('error-message') or text).strip()[-800:]}\n"
            f"Check that the SuperLink runs (`fedmm server start`) and is reachable at "
            f"{cfg.superlink.control_address} with the CA {cfg.tls.ca_cert}."
        )
    return doc


def read_public_key(key: str) -> str:
    """The OpenSSH public-key line from a file path or from the line itself.

    Raises:
        ValueError: neither a readable file nor a supported key line.
    """
    path = Path(key).expanduser()
    text = path.read_text().strip() if path.is_file() else key.strip()
    kind = text.split(maxsplit=1)[0] if text else ""
    if kind not in KEY_TYPES:
        raise ValueError(
            f"Expected a site's public key (a file or a line starting with one of {KEY_TYPES}), "
            f"got {text[:40]!r}{'...' if len(text) > 40 else ''}. Fix: pass the .pub file that "
            "`fedmm site init` wrote (or the line it printed)."
        )
    return text


def register_site(cfg: ServerDeployConfig, public_key: str, *, name: str) -> str:
    """Register a site's public key under ``name``; return the node id it will have."""
    line = read_public_key(public_key)
    with tempfile.TemporaryDirectory(prefix="fedmm-key-") as tmp:
        key_file = Path(tmp) / "site.pub"
        key_file.write_text(line + "\n")
        out = _flwr(cfg, ["supernode", "register", str(key_file), CONNECTION, "--name", name,
                          "--format", "json"], insecure=False)
    node_id = str(_json_answer(out, what=f"Registering site {name!r}", cfg=cfg)["node-id"])
    book = _read_book(cfg)
    book[node_id] = {"name": name, "fingerprint": key_fingerprint(line),
                     "registered": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    _write_book(cfg, book)
    return node_id


def unregister_site(cfg: ServerDeployConfig, node_id: str) -> None:
    """Remove a site's registration (its key is refused from then on)."""
    out = _flwr(cfg, ["supernode", "unregister", node_id, CONNECTION, "--format", "json"],
                insecure=False)
    _json_answer(out, what=f"Unregistering node {node_id}", cfg=cfg)
    book = _read_book(cfg)
    if node_id in book:
        book[node_id]["unregistered"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        _write_book(cfg, book)


def list_sites(cfg: ServerDeployConfig, *, insecure: bool = False) -> list[SiteEntry]:
    """Registered (and connected) sites with their status, as the SuperLink reports them."""
    out = _flwr(cfg, ["supernode", "ls", CONNECTION, "--format", "json"], insecure=insecure)
    doc = _json_answer(out, what="Listing sites", cfg=cfg)
    book = _read_book(cfg)
    entries = []
    for node in doc.get("nodes", []):
        node_id = str(node.get("node-id", ""))
        mine = book.get(node_id, {})
        entries.append(SiteEntry(node_id=node_id, name=mine.get("name", "?"),
                                 status=str(node.get("status", "")),
                                 fingerprint=mine.get("fingerprint", ""), details=node))
    return entries
