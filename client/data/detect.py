"""Which layout a dataset folder is in, judged from its names alone (``--layout auto``)."""

from __future__ import annotations

from pathlib import Path

from client.data.adapter import available_adapters, get_adapter
from client.data.scan import visible_children

__all__ = ["DETECTION_ORDER", "detect_layout", "detected_layouts"]

#: Layouts are tried in this order, the most specific first: a FeTS 2022 folder is also a
#: folder of BraTS-style cases, and a manifest may point into any layout. Registered
#: layouts not listed here (plug-ins) are tried last, in name order.
DETECTION_ORDER: tuple[str, ...] = (
    "manifest", "fets2022", "msd_task01", "chaos", "isles2022", "ucsf_pdgm", "upenn_gbm",
    "brats2023", "ixi", "brats2021",
)


def detected_layouts(root: Path) -> list[str]:
    """Every registered layout whose ``detect(root)`` accepts ``root``, in detection order."""
    root = Path(root)
    if not root.exists():
        return []
    names = [n for n in DETECTION_ORDER if n in available_adapters()]
    names += [n for n in available_adapters() if n not in names]
    found = []
    for name in names:
        detect = getattr(get_adapter(name), "detect", None)
        if detect is None or (root.is_file() and name != "manifest"):
            continue
        try:
            if detect(root):
                found.append(name)
        except OSError:
            continue  # an unreadable folder is not this layout
    return found


def detect_layout(root: Path) -> str:
    """The layout of ``root`` (the first match in :data:`DETECTION_ORDER`).

    Raises:
        ValueError: no layout recognises the folder; the message lists the layouts and,
            when a sub-folder is recognisable, suggests it.
    """
    root = Path(root)
    found = detected_layouts(root)
    if found:
        return found[0]
    if not root.exists():
        raise ValueError(f"Expected a dataset folder or manifest CSV, got nothing at {root}. "
                         "Fix: check the path.")
    hint = ""
    if root.is_dir():
        for child in (p for p in visible_children(root) if p.is_dir()):
            inner = detected_layouts(child)
            if inner:
                hint = f" {child} looks like layout {inner[0]!r}: pass that folder."
                break
    raise ValueError(
        f"Could not detect the layout of {root}: none of {list(available_adapters())} recognises "
        f"its names.{hint} Fix: pass --layout NAME (docs/datasets.md shows each layout), or "
        "describe the files in a manifest.csv (layout 'manifest')."
    )
