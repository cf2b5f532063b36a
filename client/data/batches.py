"""Seeded batches of random aligned multimodal crops from a site's cached samples."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from monai.utils import convert_to_tensor
from torch.utils.data import DataLoader, Dataset, default_collate

from client.data.transforms import BATCH_KEYS, build_crop_transforms
from shared.config import DataConfig

__all__ = ["eval_batch_list", "train_batch_iterator"]

Batch = dict[str, torch.Tensor]
# (position of the study in the split, seed of its crop)
_Index = tuple[int, int]


def _check_seed(seed: int) -> None:
    if seed < 0:
        raise ValueError(f"expected a non-negative seed, got {seed}.")


class _CropDataset(Dataset[Batch]):
    """Random aligned crops; an index carries its own crop seed.

    Seeding each crop from the index (not from a worker's RNG) makes the batches the same
    whatever ``num_workers`` is and however the workers interleave.
    """

    def __init__(self, samples: Sequence[dict[str, Any]], *, data: DataConfig) -> None:
        self.samples = samples
        self.crop = build_crop_transforms(data)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: _Index) -> Batch:
        position, crop_seed = index
        self.crop.set_random_state(seed=crop_seed)
        out = self.crop(self.samples[position])
        return {k: convert_to_tensor(out[k], track_meta=False) for k in BATCH_KEYS}


class _EndlessBatchSampler:
    """Endless batches of (study, crop seed); a fresh permutation each pass over the studies.

    A pass with a single study left over drops it (it comes back in later passes, which
    are reshuffled): a batch of one has no negatives for contrastive losses. With one
    study in total, batches of one are all there is.
    """

    def __init__(self, num_studies: int, *, batch_size: int, seed: int, shared: bool) -> None:
        self.num_studies = num_studies
        self.batch_size = min(batch_size, num_studies)
        self.seed = seed
        self.shared = shared  # one crop seed per batch: the same relative location for all

    def __iter__(self) -> Iterator[list[_Index]]:
        for epoch in itertools.count():
            rng = np.random.default_rng([self.seed, epoch])
            order = rng.permutation(self.num_studies)
            crop_seeds = rng.integers(0, 2**32, size=self.num_studies, dtype=np.uint64)
            for start in range(0, self.num_studies, self.batch_size):
                chunk = order[start : start + self.batch_size]
                if len(chunk) == 1 and self.num_studies >= 2:
                    continue
                seeds = crop_seeds[start : start + len(chunk)]
                if self.shared:
                    seeds = np.full(len(chunk), seeds[0], dtype=np.uint64)
                yield [(int(i), int(s)) for i, s in zip(chunk, seeds, strict=True)]


def train_batch_iterator(
    samples: Sequence[dict[str, Any]], *, data: DataConfig, batch_size: int, seed: int
) -> Iterator[Batch]:
    """Endless, reshuffled, seed-reproducible batches of random crops of ``samples``.

    Yields:
        dicts with ``image`` (B, M, c, c, c) float32, ``present`` (B, M), ``fg_mean``
        (B, M), ``fg_std`` (B, M), ``fg_hist`` (B, M, bins), with c = ``data.crop_size``.
    """
    if batch_size < 1:
        raise ValueError(f"expected batch_size >= 1, got {batch_size}.")
    _check_seed(seed)
    if not samples:
        raise ValueError("expected at least one training study, got none.")
    loader = DataLoader(
        _CropDataset(samples, data=data),
        batch_sampler=_EndlessBatchSampler(len(samples), batch_size=batch_size, seed=seed,
                                           shared=data.crop_alignment == "shared"),
        num_workers=data.num_workers,
        collate_fn=default_collate,
    )
    yield from loader


def eval_batch_list(
    samples: Sequence[dict[str, Any]], *, data: DataConfig, batch_size: int, num_batches: int,
    seed: int,
) -> list[Batch]:
    """``num_batches`` batches of seeded crops, cycling through ``samples`` in a seeded order.

    The same seed gives the same crops, so evaluations of successive rounds compare like
    with like. No study appears twice in one batch. Empty ``samples`` give an empty list.
    """
    if batch_size < 1 or num_batches < 0:
        raise ValueError(
            f"expected batch_size >= 1 and num_batches >= 0, got {batch_size} and {num_batches}."
        )
    _check_seed(seed)
    if not samples:
        return []
    dataset = _CropDataset(samples, data=data)
    rng = np.random.default_rng([seed, 0xE7A1])
    n = len(samples)
    order = rng.permutation(n)
    size = min(batch_size, n)
    batches: list[Batch] = []
    for b in range(num_batches):
        seeds = rng.integers(0, 2**32, size=size, dtype=np.uint64)
        if data.crop_alignment == "shared":
            seeds[:] = seeds[0]
        positions = [int(order[(b * size + k) % n]) for k in range(size)]
        batches.append(
            default_collate(
                [dataset[(p, int(s))] for p, s in zip(positions, seeds, strict=True)]
            )
        )
    return batches
