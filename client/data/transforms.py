"""MONAI dictionary transforms that turn a study's NIfTI files into aligned multimodal crops."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import (
    CastToTyped,
    Compose,
    CropForegroundd,
    EnsureChannelFirstd,
    EnsureTyped,
    MapTransform,
    Orientationd,
    Randomizable,
    SelectItemsd,
    Spacingd,
    SpatialCrop,
    SpatialPadd,
    Transform,
)
from monai.utils import convert_to_tensor

from client.data.adapter import DataProblem, DataProblemError
from client.data.load_transforms import LoadVolumesd, MapLabelsd, ResampleToReferenced
from client.data.pipeline_version import pipeline_code_hash
from client.data.volume_limits import VolumeLimits
from shared.config import DataConfig

__all__ = [
    "BATCH_KEYS",
    "BOX_KEY",
    "FOREGROUND_MARGIN",
    "IMAGE_KEY",
    "LABEL_KEY",
    "PRESENT_KEY",
    "STUDY_KEY",
    "CheckVolume",
    "CheckVolumed",
    "ForegroundPercentileScale",
    "ForegroundPercentileScaled",
    "ForegroundStats",
    "ForegroundStatsd",
    "StackModalities",
    "StackModalitiesd",
    "build_crop_transforms",
    "build_deterministic_transforms",
    "preprocessing_fingerprint",
]

IMAGE_KEY = "image"
PRESENT_KEY = "present"
LABEL_KEY = "label"
STUDY_KEY = "study_id"
STATS_KEYS = ("fg_mean", "fg_std", "fg_hist")
#: Where a crop lies in its (brain-cropped) volume: ``(2, 3)`` = relative start and end
#: per axis in [0, 1]; anatomy-aware pretext tasks (slice position) read it.
BOX_KEY = "crop_box"
#: What a training / evaluation batch holds (labels and ids stay out of it).
BATCH_KEYS = (IMAGE_KEY, PRESENT_KEY, *STATS_KEYS, BOX_KEY)
#: Voxels kept around the union foreground when cropping to the brain.
FOREGROUND_MARGIN = 2


def preprocessing_fingerprint(data: DataConfig) -> str:
    """Hash of everything that changes a cached deterministic sample: the settings that
    shape it and the code that computes it (``client.data.pipeline_version``).

    ``data.max_voxels`` is not part of it: the cap decides which studies are valid, never
    what a valid study's sample holds (the study index keys its verdicts by it instead).
    """
    fields = data.model_dump(
        include={"modalities", "spacing_mm", "percentile_low", "percentile_high", "hist_bins"}
    )
    fields |= {"pipeline": pipeline_code_hash(), "margin": FOREGROUND_MARGIN}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def _source(img: Any) -> Path:
    """The file a loaded volume came from (MONAI keeps it in the MetaTensor's meta)."""
    name = img.meta.get("filename_or_obj", "") if isinstance(img, MetaTensor) else ""
    return Path(str(name) or "<in-memory volume>")


def _nonzero(img: torch.Tensor) -> torch.Tensor:
    # Module-level (not a lambda) so the pipeline pickles into DataLoader workers.
    return img != 0


# --------------------------------------------------------------------------- checks


class CheckVolume(Transform):
    """Reject a freshly loaded volume that cannot be a usable modality or label.

    Raises ``DataProblemError`` (naming the file) for: not 3D, NaN/inf voxels, and, when
    ``require_nonzero``, an all-zero volume. Runs before resampling, which would smear NaNs.
    """

    def __init__(self, *, require_nonzero: bool = True) -> None:
        self.require_nonzero = require_nonzero

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        """Return ``img`` (D, H, W) unchanged, or raise DataProblemError."""
        path = _source(img)
        if img.ndim != 3:
            raise DataProblemError(
                DataProblem(
                    path=path,
                    problem=f"expected a 3D volume, got shape {tuple(img.shape)}.",
                    fix="store one 3D volume per modality (split 4D files, squeeze "
                    "singleton axes) or remove the file.",
                )
            )
        finite = torch.isfinite(img)
        if not bool(finite.all()):
            bad = int((~finite).sum())
            raise DataProblemError(
                DataProblem(
                    path=path,
                    problem=f"expected finite intensities, got {bad} NaN/inf voxels.",
                    fix="re-export the volume from its source (or replace NaNs with 0).",
                )
            )
        if self.require_nonzero and not bool((img != 0).any()):
            raise DataProblemError(
                DataProblem(
                    path=path,
                    problem="expected an image with a nonzero foreground, got an all-zero "
                    "volume.",
                    fix="re-export the volume or remove the file (the modality then "
                    "counts as missing).",
                )
            )
        return img


class CheckVolumed(MapTransform):
    """Dictionary twin of :class:`CheckVolume`."""

    def __init__(
        self, keys: Sequence[str] | str, *, require_nonzero: bool = True,
        allow_missing_keys: bool = True,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.check = CheckVolume(require_nonzero=require_nonzero)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            self.check(d[key])
        return d


# --------------------------------------------------------------------------- stacking


class StackModalities(Transform):
    """Stack single-channel volumes into one multimodal image, zeros where one is missing."""

    def __call__(
        self, volumes: Sequence[torch.Tensor | None]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Stack ``M`` volumes of shape (1, D, H, W), or None for a missing modality.

        Returns:
            ``image`` (M, D, H, W) float32 and ``present`` (M,) float32 0/1.

        Raises:
            ValueError: no volume at all, or volumes on different grids.
        """
        given = [v for v in volumes if v is not None]
        if not given:
            raise ValueError("expected at least one modality volume to stack, got none.")
        shape = tuple(given[0].shape[1:])
        for v in given:
            if tuple(v.shape) != (1, *shape):
                raise ValueError(
                    f"expected volumes of shape (1, {shape}), got {tuple(v.shape)}."
                )
        zeros = torch.zeros((1, *shape), dtype=torch.float32)
        channels = [
            zeros if v is None else convert_to_tensor(v, track_meta=False).float() for v in volumes
        ]
        image = torch.cat(channels, dim=0)
        present = torch.tensor([0.0 if v is None else 1.0 for v in volumes])
        return image, present


class StackModalitiesd(MapTransform):
    """Build ``image`` (M, D, H, W) in ``modalities`` order and ``present`` (M,) from
    per-modality keys, then drop those keys.

    ``grid_keys`` (e.g. the label) must share the image grid too. A study whose volumes
    disagree raises ``DataProblemError`` naming the odd file: co-registered data is a
    precondition of aligned multimodal crops.
    """

    def __init__(
        self, modalities: Sequence[str], *, image_key: str = IMAGE_KEY,
        present_key: str = PRESENT_KEY, grid_keys: Sequence[str] = (LABEL_KEY,),
    ) -> None:
        super().__init__(list(modalities), allow_missing_keys=True)
        self.modalities = tuple(modalities)
        self.image_key = image_key
        self.present_key = present_key
        self.grid_keys = tuple(grid_keys)
        self.stack = StackModalities()

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        volumes = [d.pop(m, None) for m in self.modalities]
        given = [(m, v) for m, v in zip(self.modalities, volumes, strict=True) if v is not None]
        if not given:
            raise ValueError(
                f"expected at least one of the modalities {list(self.modalities)}, got none."
            )
        ref_name, ref = given[0]
        others = given[1:] + [(k, d[k]) for k in self.grid_keys if k in d]
        for name, vol in others:
            if tuple(vol.shape[1:]) != tuple(ref.shape[1:]):
                raise DataProblemError(
                    DataProblem(
                        path=_source(vol),
                        problem=f"expected the grid of {ref_name} ({_source(ref).name}), "
                        f"shape {tuple(ref.shape[1:])} after resampling; got {name} with "
                        f"shape {tuple(vol.shape[1:])}.",
                        fix="co-register all volumes of a study to one grid, or remove "
                        "the odd file.",
                    )
                )
        image, present = self.stack(volumes)
        # Keep the reference affine so later spatial transforms (crop) stay meaningful.
        affine = ref.affine if isinstance(ref, MetaTensor) else None
        d[self.image_key] = MetaTensor(image, affine=affine) if affine is not None else image
        d[self.present_key] = present
        return d


# --------------------------------------------------------------------------- intensity


class ForegroundPercentileScale(Transform):
    """Map each present modality's foreground percentiles ``lower``..``upper`` to 0..1.

    Percentiles are taken over the nonzero (foreground) voxels of each channel only.
    MONAI's ``ScaleIntensityRangePercentiles`` would count the zero background, which
    fills most of a brain volume, so its "0.5th percentile" would be 0 and its upper
    percentile would move with the field of view rather than with the tissue. Background
    stays exactly 0; foreground is clipped to [0, 1] (so foreground voxels at or below
    the lower percentile also become 0). A channel whose foreground is constant maps to 1.
    BrainMVP scales between the 5th and 95th percentile per channel (docs/methods.md).
    """

    def __init__(self, *, lower: float, upper: float) -> None:
        if not 0 <= lower < upper <= 100:
            raise ValueError(
                f"expected 0 <= lower < upper <= 100 percentiles, got lower={lower}, "
                f"upper={upper}."
            )
        self.lower = lower
        self.upper = upper

    def __call__(self, img: torch.Tensor, present: torch.Tensor | None = None) -> torch.Tensor:
        """Scale ``img`` (M, D, H, W); channels with ``present[m] == 0`` become zeros."""
        out = torch.zeros_like(torch.as_tensor(img), dtype=torch.float32)
        for m in range(img.shape[0]):
            if present is not None and float(present[m]) == 0:
                continue
            x = torch.as_tensor(img[m]).float()
            mask = x != 0
            if not bool(mask.any()):
                continue
            # numpy, not torch.quantile: the latter refuses inputs over 16M elements.
            lo, hi = np.percentile(x[mask].numpy(), [self.lower, self.upper])
            scaled = ((x - lo) / (hi - lo)).clamp(0, 1) if hi > lo else torch.ones_like(x)
            out[m] = torch.where(mask, scaled, torch.zeros_like(x))
        return out


class ForegroundPercentileScaled(MapTransform):
    """Dictionary twin of :class:`ForegroundPercentileScale` (reads ``present_key``)."""

    def __init__(
        self, keys: Sequence[str] | str = IMAGE_KEY, *, lower: float, upper: float,
        present_key: str = PRESENT_KEY,
    ) -> None:
        super().__init__(keys)
        self.scale = ForegroundPercentileScale(lower=lower, upper=upper)
        self.present_key = present_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        present = d.get(self.present_key)
        for key in self.key_iterator(d):
            d[key] = self.scale(d[key], present)
        return d


class ForegroundStats(Transform):
    """Per-modality foreground statistics of a scaled image (AdaDN's moments, docs/methods.md).

    Foreground is ``image[m] > 0`` per modality: after percentile scaling this is the
    modality's own nonzero voxels minus those clipped to 0 at the lower percentile (a
    ``percentile_low`` fraction, negligible). ``fg_std`` is the population std (ddof=0);
    ``fg_hist`` is the histogram over [0, 1] normalized to sum 1. Missing modalities get zeros.
    """

    def __init__(self, *, bins: int) -> None:
        if bins < 1:
            raise ValueError(f"expected bins >= 1, got {bins}.")
        self.bins = bins

    def __call__(
        self, img: torch.Tensor, present: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Return ``fg_mean`` (M,), ``fg_std`` (M,) and ``fg_hist`` (M, bins) for ``img``
        (M, D, H, W)."""
        num = img.shape[0]
        mean = np.zeros(num, dtype=np.float64)
        std = np.zeros(num, dtype=np.float64)
        hist = np.zeros((num, self.bins), dtype=np.float64)
        for m in range(num):
            if present is not None and float(present[m]) == 0:
                continue
            x = torch.as_tensor(img[m]).numpy()
            fg = x[x > 0].astype(np.float64)
            if fg.size == 0:
                continue
            mean[m], std[m] = fg.mean(), fg.std()
            counts, _ = np.histogram(fg, bins=self.bins, range=(0.0, 1.0))
            hist[m] = counts / counts.sum()
        return {
            "fg_mean": torch.from_numpy(mean).float(),
            "fg_std": torch.from_numpy(std).float(),
            "fg_hist": torch.from_numpy(hist).float(),
        }


class ForegroundStatsd(MapTransform):
    """Dictionary twin of :class:`ForegroundStats`: adds ``fg_mean``, ``fg_std``, ``fg_hist``.

    No foreground mask is stored (derive it as ``image.sum(0) > 0``) to keep the cache small.
    """

    def __init__(
        self, keys: Sequence[str] | str = IMAGE_KEY, *, bins: int, present_key: str = PRESENT_KEY,
    ) -> None:
        super().__init__(keys)
        self.stats = ForegroundStats(bins=bins)
        self.present_key = present_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d.update(self.stats(d[key], d.get(self.present_key)))
        return d


# --------------------------------------------------------------------------- pipelines


def build_deterministic_transforms(data: DataConfig) -> Compose:
    """The cached part: files -> ``image`` (M, D, H, W) in [0, 1], ``present`` (M,),
    ``fg_mean`` / ``fg_std`` (M,), ``fg_hist`` (M, bins) and, if the study has one,
    ``label`` (1, D, H, W) uint8; ``study_id`` passes through.

    Input: a dict with ``study_id``, one path per available run modality (canonical names
    as keys; NIfTI file, DICOM series folder) and optionally ``label`` (NIfTI file or PNG
    slice folder), plus the reading instructions of ``client.data.load_transforms`` when
    the study needs them (``channels`` of a 4D file, ``label_map`` to the canonical
    labels, ``grid_reference`` for volumes that are not co-registered). Bad files raise
    ``DataProblemError``.
    """
    mods = list(data.modalities)
    volumes = [*mods, LABEL_KEY]
    spacing = (data.spacing_mm,) * 3
    return Compose(
        [
            LoadVolumesd(volumes, label_keys=(LABEL_KEY,), limits=VolumeLimits.from_config(data)),
            CheckVolumed(mods, require_nonzero=True),
            CheckVolumed(LABEL_KEY, require_nonzero=False),
            MapLabelsd(LABEL_KEY),
            EnsureChannelFirstd(volumes, channel_dim="no_channel", allow_missing_keys=True),
            # labels=None: read the axis convention from the MetaTensor (RAS for NIfTI).
            Orientationd(volumes, axcodes="RAS", labels=None, allow_missing_keys=True),
            # Before Spacingd: volumes on one grid then get identical output shapes.
            ResampleToReferenced(mods, label_keys=(LABEL_KEY,)),
            Spacingd(
                volumes,
                pixdim=spacing,
                mode=["bilinear"] * len(mods) + ["nearest"],
                dtype=np.float32,
                allow_missing_keys=True,
            ),
            StackModalitiesd(mods),
            # Crop to the union of every modality's nonzero voxels: the background is
            # useless for pretraining and would dominate random crops and the cache.
            CropForegroundd(
                [IMAGE_KEY, LABEL_KEY],
                source_key=IMAGE_KEY,
                select_fn=_nonzero,
                margin=FOREGROUND_MARGIN,
                allow_smaller=True,
                start_coord_key=None,
                end_coord_key=None,
                allow_missing_keys=True,
            ),
            ForegroundPercentileScaled(
                IMAGE_KEY, lower=data.percentile_low, upper=data.percentile_high
            ),
            ForegroundStatsd(IMAGE_KEY, bins=data.hist_bins),
            CastToTyped(LABEL_KEY, dtype=torch.uint8, allow_missing_keys=True),
            # Plain tensors: the cache then holds no MetaTensor metadata (file paths,
            # transform traces) and loads with torch.load(weights_only=True).
            EnsureTyped(
                [IMAGE_KEY, LABEL_KEY], track_meta=False, allow_missing_keys=True
            ),
            SelectItemsd(
                [STUDY_KEY, IMAGE_KEY, PRESENT_KEY, *STATS_KEYS, LABEL_KEY],
                allow_missing_keys=True,
            ),
        ]
    )


class RelativeCropd(MapTransform, Randomizable):
    """A cubic crop at a random *relative* position: start = floor(u * (size - roi + 1)).

    ``u ~ U(0, 1)^3`` is drawn from the transform's random state, so two volumes of
    different sizes given the same seed are cropped at the same relative location (the
    same anatomy in roughly aligned brains); that is how a batch shares one location.
    The crop's relative box (start and end / size per axis, ``(2, 3)`` float32) is stored
    under ``box_key``.
    """

    def __init__(self, keys: Sequence[str], *, roi_size: int, box_key: str = BOX_KEY,
                 allow_missing_keys: bool = False) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        self.roi_size = roi_size
        self.box_key = box_key
        self._u = np.zeros(3)

    def randomize(self, data: Any = None) -> None:
        self._u = self.R.random(3)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        self.randomize()
        ref = d[self.first_key(d)]
        shape = ref.shape[1:]
        start = [int(min(u * (s - self.roi_size + 1), s - self.roi_size))
                 for u, s in zip(self._u, shape, strict=True)]
        crop = SpatialCrop(roi_start=start, roi_end=[b + self.roi_size for b in start])
        for key in self.key_iterator(d):
            d[key] = crop(d[key])
        d[self.box_key] = np.array(
            [[b / s for b, s in zip(start, shape, strict=True)],
             [(b + self.roi_size) / s for b, s in zip(start, shape, strict=True)]], dtype=np.float32
        )
        return d


def build_crop_transforms(data: DataConfig) -> Compose:
    """The random part: pad to at least ``crop_size`` and take one cubic crop.

    All modalities of ``image`` (and the label, when present) are cropped at the same
    location ("aligned multimodal crops"). Call ``set_random_state(seed=...)`` on the
    result before each sample to replay a crop; the same seed on two studies crops both at
    the same relative location (``data.crop_alignment = "shared"`` uses that per batch).
    """
    size = (data.crop_size,) * 3
    keys = [IMAGE_KEY, LABEL_KEY]
    return Compose(
        [
            SpatialPadd(keys, spatial_size=size, allow_missing_keys=True),
            RelativeCropd(keys, roi_size=data.crop_size, allow_missing_keys=True),
        ]
    )
