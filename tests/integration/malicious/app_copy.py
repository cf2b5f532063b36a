"""A test-only copy of fedmm's Flower app folder in which one virtual site is malicious.

fedmm's own app never carries attack code: this copies ``pyproject.toml`` and the
``client``, ``server`` and ``shared`` packages (what the app bundle holds) to a folder of
the test's, adds ``attack_mod.py`` and ``attacks.py`` as ``client/campaign_attack.py`` and
``client/campaign_attacks.py`` with a plan, and
wraps the ClientApp in that mod. ``simulations.simulate.run_simulation(app=...)`` then
submits the copy to a real Flower simulation.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

from shared.app_bundle import app_dir

ATTACK_SOURCES = {"campaign_attack.py": Path(__file__).with_name("attack_mod.py"),
                  "campaign_attacks.py": Path(__file__).with_name("attacks.py")}
#: The ClientApp line of client/app.py, and what the copy puts instead.
APP_LINE = "app = ClientApp(mods=[contain_errors, outgoing_guard, clip_updates])"
MALICIOUS_LINE = ("from client.campaign_attack import corrupt_replies\n\n"
                  "app = ClientApp(mods=[corrupt_replies, contain_errors, outgoing_guard, clip_updates])")


def malicious_app(dest: Path, *, plan: Mapping[int, str], partition: int, marker: Path,
                  signflip_scale: float) -> Path:
    """Write the app copy to ``dest`` and return it.

    Args:
        dest: an empty or missing folder.
        plan: the attack of each server round (0 is the statistics query).
        partition: the virtual site (Flower's partition-id) that attacks.
        marker: where that site writes its node id.
        signflip_scale: s in ``w_sent - s (w_site - w_sent)`` of the "signflip" attack.

    Raises:
        ValueError: fedmm's client/app.py no longer has the line the copy replaces.
    """
    source = app_dir()
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source / "pyproject.toml", dest / "pyproject.toml")
    for package in ("client", "server", "shared"):
        shutil.copytree(source / package, dest / package, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    app_py = dest / "client" / "app.py"
    text = app_py.read_text()
    if text.count(APP_LINE) != 1:
        raise ValueError(f"Expected exactly one {APP_LINE!r} in {source / 'client' / 'app.py'}; "
                         "update tests/integration/malicious/app_copy.py to the new ClientApp line.")
    app_py.write_text(text.replace(APP_LINE, MALICIOUS_LINE))
    for name, path in ATTACK_SOURCES.items():
        shutil.copy2(path, dest / "client" / name)
    (dest / "client" / "campaign_plan.py").write_text(
        '"""The malicious site\'s plan (written by tests/integration/malicious/app_copy.py)."""\n\n'
        f"PLAN = {dict(plan)!r}\nPARTITION = {partition!r}\nMARKER = {str(marker)!r}\n"
        f"SIGNFLIP_SCALE = {float(signflip_scale)!r}\n")
    return dest
