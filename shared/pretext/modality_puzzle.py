"""SLeM modality-block recombination: classify which modality fills each block (docs/methods.md).

Wang, Lin, Qi, Chen, Li, Shen, Ma. "SLeM: self-supervised learning of multimodal brain
images by modality-block recombination" (in Chinese), Journal of Computer-Aided Design &
Computer Graphics 37(3):474-483, 2025.

From the paper: a co-registered multimodal image is divided uniformly into four blocks,
each block is filled from a randomly chosen modality, and the encoder learns by
classifying which combination built the synthetic image (cross-entropy).

Our reconstruction (each is a config option or stated in docs/methods.md):

* the four blocks of a 3D crop are ``blocks="quadrants"`` (2x2 in the H-W plane through
  the whole depth) or ``"octant_pairs"`` (2x2 in the D-H plane through the whole width);
  block ``i = 2 * row + col`` with row along the first split axis (H, resp. D) and col
  along the second (W, resp. H); an odd edge puts the extra voxel in the second half;
* the label is the index of the assignment ``(pi(0), pi(1), pi(2), pi(3))`` in a fixed
  table in ``itertools`` order: ``itertools.permutations(range(M), 4)`` without
  repetition (24 classes for M = 4 run modalities), ``itertools.product(range(M),
  repeat=4)`` with repetition (M^4 = 256 classes);
* a study may only take classes whose modalities are all present, and draws uniformly
  among them: without repetition it needs four present modalities, with repetition two
  (one present modality would give a puzzle without blocks); other studies are skipped;
* the classifier reads the deepest feature map pooled to 2x2x2 (not the globally pooled
  embedding, which would discard the block layout the label is about).
"""

from __future__ import annotations

import itertools
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from shared.config import ModalityPuzzleConfig
from shared.model.encoder import MultiModalEncoder
from shared.pretext.base import Batch, TaskContext, TaskRequirements, Views
from shared.pretext.registry import register_pretext

#: Blocks per puzzle (the paper's "four blocks").
NUM_BLOCKS = 4

#: Which two axes of ``(D, H, W)`` each layout splits in half (row axis, col axis).
_SPLIT_AXES: dict[str, tuple[int, int]] = {"quadrants": (1, 2), "octant_pairs": (0, 1)}

_WITH_REPETITION = TaskRequirements(
    min_modalities=2, notes="each of the four blocks takes one of its present modalities")
_WITHOUT_REPETITION = TaskRequirements(
    min_modalities=NUM_BLOCKS, notes="the four blocks take four distinct present modalities")

Slices = tuple[slice, slice, slice]


def block_slices(size: tuple[int, int, int], *, layout: str) -> list[Slices]:
    """The four blocks of a ``(D, H, W)`` crop, in label order (``i = 2 * row + col``).

    Args:
        size: the crop's voxel shape (D, H, W).
        layout: ``"quadrants"`` or ``"octant_pairs"`` (see the module docstring).
    """
    if layout not in _SPLIT_AXES:
        raise ValueError(f"Expected layout in {sorted(_SPLIT_AXES)}, got {layout!r}")
    row_axis, col_axis = _SPLIT_AXES[layout]
    out: list[Slices] = []
    for row, col in itertools.product(range(2), repeat=2):
        sl = [slice(None)] * 3
        for axis, half in ((row_axis, row), (col_axis, col)):
            mid = size[axis] // 2
            sl[axis] = slice(0, mid) if half == 0 else slice(mid, size[axis])
        out.append((sl[0], sl[1], sl[2]))
    return out


def assignment_table(num_modalities: int, *, repetition: bool) -> tuple[tuple[int, ...], ...]:
    """Every class's modality per block, in ``itertools`` order (label = row index)."""
    mods = range(num_modalities)
    if repetition:
        return tuple(itertools.product(mods, repeat=NUM_BLOCKS))
    return tuple(itertools.permutations(mods, NUM_BLOCKS))


class PuzzleHead(nn.Module):
    """Spatially aware classifier: ``(N, C, d, h, w)`` deepest map -> ``(N, num_classes)``.

    The map is average-pooled to 2x2x2 (one cell per block side) and flattened, so the
    MLP knows *where* each modality's features lie; a global average would not.
    """

    def __init__(self, in_channels: int, *, num_classes: int, hidden: int | None = None) -> None:
        super().__init__()
        hidden = hidden or in_channels
        self.pool = nn.AdaptiveAvgPool3d(2)
        self.mlp = nn.Sequential(
            nn.Flatten(),
            nn.Linear(in_channels * 8, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.pool(features))


@register_pretext("modality_puzzle")
class ModalityPuzzleTask:
    """Four blocks from four (possibly repeated) modalities; classify the assignment.

    Attributes:
        assignments: ``(K, 4)`` long, the modality index (in ``context.modalities``
            order) of each block for each class label.
        requirements: what a study needs under this instance's config (four present
            modalities without repetition, two with); the class default is the looser one.
    """

    name: ClassVar[str]
    requirements: ClassVar[TaskRequirements] = _WITH_REPETITION

    def __init__(self, *, cfg: ModalityPuzzleConfig, context: TaskContext) -> None:
        m = len(context.modalities)
        need = _WITH_REPETITION if cfg.repetition else _WITHOUT_REPETITION
        if m < need.min_modalities:
            fix = "" if cfg.repetition else "; set repetition = true to allow repeated modalities"
            raise ValueError(
                f"modality_puzzle with repetition={cfg.repetition} needs >= {need.min_modalities} "
                f"run modalities, got {m} {list(context.modalities)}{fix}"
            )
        self.cfg = cfg
        self.context = context
        # The requirement depends on the config; an instance attribute shadows the class
        # default so that skip warnings (PretextMixture.skip_warning) name the real need.
        self.requirements = need  # type: ignore[misc]
        table = assignment_table(m, repetition=cfg.repetition)
        self.assignments = torch.tensor(table, dtype=torch.long)
        self._label_of = {a: i for i, a in enumerate(table)}

    @property
    def num_classes(self) -> int:
        return int(self.assignments.shape[0])

    def label_of(self, assignment: tuple[int, ...]) -> int:
        """The class label of a per-block modality assignment."""
        if assignment not in self._label_of:
            raise ValueError(f"Expected {NUM_BLOCKS} modality indices in [0, "
                             f"{len(self.context.modalities)}) (distinct unless repetition), "
                             f"got {assignment}")
        return self._label_of[assignment]

    def build_head(self, encoder: MultiModalEncoder) -> nn.Module:
        """A :class:`PuzzleHead` on the encoder's deepest feature map."""
        return PuzzleHead(encoder.channels[-1], num_classes=self.num_classes)

    def make_views(self, batch: Batch, generator: torch.Generator) -> Views:
        """Draw one assignment per usable study and assemble its puzzle.

        Returns views ``puzzle (N, 1, D, H, W)`` (block i copied from modality
        ``assignments[label, i]`` of the same study) and ``label (N,)`` long, N the number
        of studies with enough present modalities (the others are counted as skipped).
        """
        image, present = batch["image"], batch["present"] > 0.5
        need = self.requirements.min_modalities
        rows: list[int] = []
        picks: list[torch.Tensor] = []
        for b in range(image.shape[0]):
            idx = present[b].nonzero().flatten()
            if idx.numel() < need:
                continue
            if self.cfg.repetition:  # uniform over present^4 = over the usable classes
                choice = torch.randint(idx.numel(), (NUM_BLOCKS,), generator=generator)
            else:  # uniform over ordered selections of 4 distinct present modalities
                choice = torch.randperm(idx.numel(), generator=generator)[:NUM_BLOCKS]
            rows.append(b)
            picks.append(idx[choice])
        skipped = image.shape[0] - len(rows)
        if not rows:
            return Views({}, num_studies=0, skipped_studies=skipped)
        r = torch.tensor(rows)
        assign = torch.stack(picks)  # (N, 4)
        labels = torch.tensor([self._label_of[tuple(int(v) for v in a)] for a in assign])
        size = (int(image.shape[2]), int(image.shape[3]), int(image.shape[4]))
        puzzle = torch.empty(len(rows), 1, *size, dtype=torch.float32)
        for i, (sd, sh, sw) in enumerate(block_slices(size, layout=self.cfg.blocks)):
            puzzle[:, 0, sd, sh, sw] = image[r, assign[:, i], sd, sh, sw].float()
        return Views({"puzzle": puzzle, "label": labels}, num_studies=len(rows),
                     skipped_studies=skipped)

    def loss(self, views: Views, *, encoder: MultiModalEncoder, head: nn.Module) -> torch.Tensor:
        """Cross-entropy of the assignment class, mean over the puzzles."""
        logits = head(encoder.forward_features(views.tensors["puzzle"])[-1])
        return F.cross_entropy(logits.float(), views.tensors["label"])
