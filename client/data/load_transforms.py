"""MONAI dictionary transforms that read a study as its layout stores it: files, channels, labels, grids."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import MapTransform, ResampleToMatch, Transform

from client.data.adapter import DataProblem, DataProblemError
from client.data.readers import read_volume, select_channel
from client.data.volume_limits import VolumeLimits

__all__ = [
    "CHANNELS_KEY",
    "GRID_KEY",
    "LABEL_MAP_KEY",
    "LoadVolumesd",
    "MapLabels",
    "MapLabelsd",
    "ResampleToReferenced",
]

#: Item keys that carry a study's reading instructions (only present when needed, so the
#: items and cache keys of plain co-registered 3D layouts such as BraTS 2021 are unchanged).
CHANNELS_KEY = "channels"
LABEL_MAP_KEY = "label_map"
GRID_KEY = "grid_reference"


def _source(img: Any) -> Path:
    name = img.meta.get("filename_or_obj", "") if isinstance(img, MetaTensor) else ""
    return Path(str(name) or "<in-memory volume>")


class LoadVolumesd(MapTransform):
    """Read every volume key of a study (see ``client.data.readers``), image keys first.

    A 4D file named by several keys (MSD's four modalities) is read once; ``channels``
    (``item[CHANNELS_KEY]``: key -> index on the last axis) picks each key's channel. A
    label stored as PNG slices takes the grid of the reference image (``item[GRID_KEY]``
    when loaded, else the first image key). Each file's size is checked against ``limits``
    from its header before it is read. Read failures raise ``DataProblemError`` naming the
    file.
    """

    def __init__(
        self, keys: Sequence[str], *, label_keys: Sequence[str] = ("label",),
        channels_key: str = CHANNELS_KEY, grid_key: str = GRID_KEY,
        limits: VolumeLimits | None = None,
    ) -> None:
        super().__init__(list(keys), allow_missing_keys=True)
        self.label_keys = tuple(label_keys)
        self.channels_key = channels_key
        self.grid_key = grid_key
        self.limits = limits or VolumeLimits.default()

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        channels: Mapping[str, int] = d.get(self.channels_key) or {}
        files: dict[str, MetaTensor] = {}
        keys = list(self.key_iterator(d))
        images = [k for k in keys if k not in self.label_keys]
        for key in images:
            path = str(d[key])
            if path not in files:
                files[path] = read_volume(Path(path), limits=self.limits)
            img = files[path]
            d[key] = select_channel(img, channels[key]) if key in channels else img
        reference = d.get(self.grid_key)
        like_key = reference if reference in images else (images[0] if images else None)
        like = d[like_key] if like_key is not None else None
        for key in (k for k in keys if k in self.label_keys):
            d[key] = read_volume(Path(str(d[key])), like=like, limits=self.limits)
        return d


class MapLabels(Transform):
    """Map a dataset's label values onto fedmm's canonical scheme.

    The canonical tumour scheme is BraTS 2021's: 0 background, 1 necrotic / non-enhancing
    core, 2 edema, 4 enhancing tumour (WT = {1, 2, 4}, TC = {1, 4}, ET = {4}). Non-tumour
    datasets map to their own documented values (docs/datasets.md).
    """

    def __init__(self, mapping: Mapping[int, int]) -> None:
        self.mapping = {int(k): int(v) for k, v in mapping.items()}

    def __call__(self, label: torch.Tensor) -> torch.Tensor:
        """Return ``label`` (any shape) with every value replaced through the mapping.

        Raises:
            DataProblemError: a voxel holds a value that is neither 0 nor a mapped value.
        """
        raw = label.as_tensor() if isinstance(label, MetaTensor) else torch.as_tensor(label)
        allowed = {0, *self.mapping}
        bad = [float(v) for v in torch.unique(raw) if float(v) not in allowed]
        if bad:
            raise DataProblemError(DataProblem(
                path=_source(label),
                problem=f"expected label values {sorted(allowed)}, got also "
                f"{[int(b) if float(b).is_integer() else b for b in bad[:8]]}.",
                fix="use the dataset's original segmentation file, or remove it (the study "
                "then counts as unlabelled).",
            ))
        out = torch.zeros_like(raw)
        for src, dst in self.mapping.items():
            out[raw == src] = dst
        if isinstance(label, MetaTensor):
            return MetaTensor(out, meta=dict(label.meta))  # the meta carries the affine
        return out


class MapLabelsd(MapTransform):
    """Dictionary twin of :class:`MapLabels`; the mapping comes from ``item[LABEL_MAP_KEY]``
    (a no-op when the study has none)."""

    def __init__(self, keys: Sequence[str] | str = "label", *, map_key: str = LABEL_MAP_KEY) -> None:
        super().__init__(keys, allow_missing_keys=True)
        self.map_key = map_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        mapping = d.get(self.map_key)
        if not mapping:
            return d
        for key in self.key_iterator(d):
            d[key] = MapLabels(mapping)(d[key])
        return d


class ResampleToReferenced(MapTransform):
    """Resample a study's volumes onto one reference grid when they are not co-registered.

    Only acts on items with ``item[GRID_KEY]`` (e.g. IXI, ISLES 2022): the reference is that
    modality, or the first of ``modalities`` the study has. Images use trilinear, labels
    nearest-neighbour interpolation, through their world (RAS) coordinates; volumes
    already on the reference grid are left untouched. Expects channel-first volumes.
    """

    def __init__(
        self, modalities: Sequence[str], *, label_keys: Sequence[str] = ("label",),
        grid_key: str = GRID_KEY,
    ) -> None:
        super().__init__([*modalities, *label_keys], allow_missing_keys=True)
        self.modalities = tuple(modalities)
        self.label_keys = tuple(label_keys)
        self.grid_key = grid_key
        self.image_resampler = ResampleToMatch(mode="bilinear", padding_mode="zeros")
        self.label_resampler = ResampleToMatch(mode="nearest", padding_mode="zeros")

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        wanted = d.get(self.grid_key)
        if not wanted:
            return d
        present = [m for m in self.modalities if m in d]
        if not present:
            return d
        ref_key = wanted if wanted in present else present[0]
        ref = d[ref_key]
        for key in self.key_iterator(d):
            img = d[key]
            if key == ref_key or _same_grid(img, ref):
                continue
            resample = self.label_resampler if key in self.label_keys else self.image_resampler
            out = resample(img, img_dst=ref)
            if isinstance(out, MetaTensor):  # error messages keep naming the moved file
                out.meta["filename_or_obj"] = str(_source(img))
            d[key] = out
        return d


def _same_grid(a: Any, b: Any) -> bool:
    if tuple(a.shape[1:]) != tuple(b.shape[1:]):
        return False
    if not (isinstance(a, MetaTensor) and isinstance(b, MetaTensor)):
        return True
    return bool(np.allclose(a.affine.numpy(), b.affine.numpy(), atol=1e-4))
