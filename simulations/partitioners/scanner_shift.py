"""The ``scanner_shift`` partitioner: IID splits of one dataset, each site seen through its own scanner."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import zlib
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np

from client.data import StudyRecord
from client.data.readers import read_volume, select_channel
from simulations.partitioners.base import (
    Partition,
    VirtualSite,
    group_by_subject,
    register_partitioner,
    safe_name,
    sites_from_groups,
)
from simulations.partitioners.config import ScannerShiftPartitionConfig
from simulations.partitioners.flower_bridge import iid_split
from simulations.phantom.acquisition import acquire, sample_site_coil
from simulations.phantom.profiles import ScannerProfileConfig, load_profiles

__all__ = ["ScannerShiftPartitioner", "shift_volume"]

#: Bump when the rendering changes: it is part of the cache key of rendered volumes.
_RENDER_VERSION = 1


def shift_volume(
    volume: np.ndarray, *, profile: ScannerProfileConfig, gamma: float, site_coil: np.ndarray,
    rng: np.random.Generator, spacing_mm: float,
) -> np.ndarray:
    """Re-acquire a real image ``(X, Y, Z)`` with another scanner's characteristics.

    The image stands in for the phantom's clean signal: its foreground (nonzero voxels)
    gets a contrast change ``x -> L * (x / L) ** gamma`` (L = the foreground's 75th
    percentile, a stand-in for white matter), then ``simulations.phantom.acquisition.acquire``
    applies the profile's point-spread function and slice thickness (resolution), bias
    field (site coil + subject part), receiver gain and Rician noise relative to L. The
    profile's sequence timings do not apply: a real image has no tissue maps to re-weight.

    Returns:
        ``(X, Y, Z)`` float32, 0 where the input was 0.
    """
    mask = volume > 0
    if not mask.any():
        return volume.astype(np.float32)
    level = float(np.percentile(volume[mask], 75))
    clean = np.zeros_like(volume, dtype=np.float32)
    clean[mask] = level * (volume[mask] / level) ** gamma
    out = acquire(clean[None], profile=profile, wm_signal=np.array([level], dtype=np.float32),
                  brain_mask=mask, site_coil=site_coil, rng=rng, spacing_mm=spacing_mm)
    return out[0]


@register_partitioner("scanner_shift")
class ScannerShiftPartitioner:
    """IID split (Flower Datasets' ``IidPartitioner``); site k gets scanner profile
    ``k mod n`` (the phantom's profiles) and contrast gamma ``k mod len(contrast_gamma)``.

    :meth:`materialize` renders every site's images through its profile into a cache
    folder (once; reused while the data, profiles and seed are unchanged) and points the
    records at the rendered NIfTI files. Labels stay as they are (same grid).
    """

    name = "scanner_shift"

    def __init__(self, *, cfg: ScannerShiftPartitionConfig, **_: object) -> None:
        self.cfg = cfg
        self.profiles = load_profiles(cfg.profiles_file)

    def split(self, studies: Sequence[StudyRecord], *, num_sites: int, seed: int) -> Partition:
        """Partition ``studies`` IID into ``num_sites`` sites and assign their profiles.

        Raises:
            ValueError: fewer subjects than sites.
        """
        groups = group_by_subject(studies)
        base = sites_from_groups(groups, iid_split(list(groups), num_sites=num_sites, seed=seed))
        return Partition(sites=tuple(
            dataclasses.replace(site, name=f"site-{k}-{self.profiles[k % len(self.profiles)].name}",
                                profile=self.profiles[k % len(self.profiles)].name)
            for k, site in enumerate(base)
        ))

    def materialize(self, partition: Partition, *, cache_dir: Path, seed: int) -> Partition:
        """Render each site's images with its profile under ``cache_dir`` (skipping done ones)."""
        by_name = {p.name: p for p in self.profiles}
        sites = []
        for k, site in enumerate(partition.sites):
            if site.profile is None:
                sites.append(site)
                continue
            gamma = self.cfg.contrast_gamma[k % len(self.cfg.contrast_gamma)]
            profile = by_name[site.profile]
            key = self._key(site, profile=profile, gamma=gamma, seed=seed)
            folder = Path(cache_dir) / "scanner_shift" / key
            studies = tuple(
                self._render(record, profile=profile, gamma=gamma, folder=folder, seed=seed, site=k)
                for record in site.studies
            )
            sites.append(dataclasses.replace(site, studies=studies))
        return dataclasses.replace(partition, sites=tuple(sites))

    @staticmethod
    def _key(site: VirtualSite, *, profile: ScannerProfileConfig, gamma: float, seed: int) -> str:
        payload = json.dumps([_RENDER_VERSION, profile.model_dump(mode="json"), gamma, seed,
                              sorted(r.study_id for r in site.studies)], sort_keys=True)
        return f"{safe_name(site.name)}-{hashlib.sha256(payload.encode()).hexdigest()[:12]}"

    @staticmethod
    def _render(
        record: StudyRecord, *, profile: ScannerProfileConfig, gamma: float, folder: Path,
        seed: int, site: int,
    ) -> StudyRecord:
        out_dir = folder / safe_name(record.study_id)
        images: dict[str, Path] = {}
        for modality, path in sorted(record.images.items()):
            target = out_dir / f"{safe_name(record.study_id)}_{modality}.nii.gz"
            images[modality] = target
            if target.is_file():
                continue
            img = read_volume(path)
            if modality in record.channels:
                img = select_channel(img, record.channels[modality])
            affine = img.affine.numpy()
            spacing = abs(float(np.linalg.det(affine[:3, :3]))) ** (1 / 3) or 1.0
            volume = img.as_tensor().numpy().astype(np.float32)
            coil = sample_site_coil(np.random.default_rng([seed, site, *volume.shape]), volume.shape,
                                    spacing_mm=spacing)
            rng = np.random.default_rng([seed, site, zlib.crc32(f"{record.study_id}/{modality}".encode())])
            shifted = shift_volume(volume, profile=profile, gamma=gamma, site_coil=coil, rng=rng,
                                   spacing_mm=spacing if math.isfinite(spacing) else 1.0)
            out_dir.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}")
            nib.save(nib.Nifti1Image(shifted, affine), str(tmp))
            tmp.replace(target)
        return dataclasses.replace(record, images=images, channels={}, meta={
            **record.meta, "scanner_profile": profile.name, "contrast_gamma": f"{gamma:g}"})
