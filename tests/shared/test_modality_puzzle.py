"""modality_puzzle specifics: the class table, the block assembly, skipping, the loss."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from shared.config import ModalityPuzzleConfig
from shared.model import build_encoder
from shared.pretext import PretextMixture, TaskContext, build_pretext
from shared.pretext.modality_puzzle import ModalityPuzzleTask, block_slices
from tests.shared.fitting import fit

MODS = ("t1", "t1ce", "t2", "flair")


def make_task(*, repetition: bool, blocks: str = "quadrants",
              modalities: tuple[str, ...] = MODS) -> ModalityPuzzleTask:
    cfg = ModalityPuzzleConfig.model_validate({"repetition": repetition, "blocks": blocks})
    task = build_pretext(cfg, context=TaskContext(modalities=modalities, crop_size=16))
    assert isinstance(task, ModalityPuzzleTask)
    return task


def batch(b: int = 3, size: int = 16, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random voxels, so each voxel of a puzzle identifies the modality it came from."""
    g = torch.Generator().manual_seed(seed)
    return {"image": torch.rand(b, len(MODS), size, size, size, generator=g),
            "present": torch.ones(b, len(MODS))}


@pytest.mark.parametrize(("repetition", "count"), [(False, 24), (True, 256)],
                         ids=["distinct-24", "repeated-256"])
def test_class_table_is_deterministic_itertools_order(repetition: bool, count: int) -> None:
    task = make_task(repetition=repetition)
    table = [tuple(int(v) for v in row) for row in task.assignments]
    assert task.num_classes == count == len(set(table))
    expected = (itertools.product(range(4), repeat=4) if repetition
                else itertools.permutations(range(4), 4))
    assert table == list(expected)
    assert table == [tuple(int(v) for v in row) for row in make_task(repetition=repetition).assignments]
    assert all(task.label_of(a) == i for i, a in enumerate(table))
    if not repetition:
        assert table[0] == (0, 1, 2, 3) and table[-1] == (3, 2, 1, 0)


def test_unknown_assignment_is_refused() -> None:
    with pytest.raises(ValueError, match=r"got \(0, 0, 1, 2\)"):
        make_task(repetition=False).label_of((0, 0, 1, 2))


def test_too_few_run_modalities_without_repetition_is_refused() -> None:
    with pytest.raises(ValueError, match="set repetition = true"):
        make_task(repetition=False, modalities=("t1", "t2"))


@pytest.mark.parametrize(("layout", "expected"), [
    ("quadrants", [(slice(None), slice(0, 3), slice(0, 4)), (slice(None), slice(0, 3), slice(4, 8)),
                   (slice(None), slice(3, 7), slice(0, 4)), (slice(None), slice(3, 7), slice(4, 8))]),
    ("octant_pairs", [(slice(0, 2), slice(0, 3), slice(None)), (slice(0, 2), slice(3, 7), slice(None)),
                      (slice(2, 5), slice(0, 3), slice(None)), (slice(2, 5), slice(3, 7), slice(None))]),
])
def test_block_layouts(layout: str, expected: list[tuple[slice, ...]]) -> None:
    assert block_slices((5, 7, 8), layout=layout) == expected


@pytest.mark.parametrize("repetition", [False, True], ids=["distinct", "repeated"])
@pytest.mark.parametrize("layout", ["quadrants", "octant_pairs"])
def test_block_i_holds_modality_pi_i_of_the_same_study(repetition: bool, layout: str) -> None:
    task = make_task(repetition=repetition, blocks=layout)
    data = batch()
    views = task.make_views(data, torch.Generator().manual_seed(3))
    puzzle, label = views.tensors["puzzle"], views.tensors["label"]
    assert puzzle.shape == (3, 1, 16, 16, 16) and puzzle.dtype == torch.float32
    assert label.dtype == torch.long and views.num_studies == 3 and views.skipped_studies == 0
    for n in range(3):
        pi = task.assignments[label[n]].tolist()
        if not repetition:
            assert len(set(pi)) == 4
        for i, sl in enumerate(block_slices((16, 16, 16), layout=layout)):
            torch.testing.assert_close(puzzle[n, 0][sl], data["image"][n, pi[i]][sl], rtol=0, atol=0)


def test_study_missing_a_needed_modality_is_skipped_and_counted() -> None:
    data = batch(b=4)
    data["present"] = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0], [1, 0, 0, 0], [0, 1, 0, 1.0]])
    distinct = make_task(repetition=False)
    views = distinct.make_views(data, torch.Generator().manual_seed(0))
    assert views.num_studies == 1 and views.skipped_studies == 3
    assert distinct.requirements.min_modalities == 4
    repeated = make_task(repetition=True)
    views = repeated.make_views(data, torch.Generator().manual_seed(0))
    assert views.num_studies == 3 and views.skipped_studies == 1
    # Only present modalities fill blocks: study 3 has t1ce and flair only.
    assert set(repeated.assignments[views.tensors["label"][2]].tolist()) <= {1, 3}
    data["present"] = torch.zeros(4, 4)
    empty = repeated.make_views(data, torch.Generator().manual_seed(0))
    assert empty.empty and empty.skipped_studies == 4


def test_skip_warning_names_the_configured_need() -> None:
    encoder = build_encoder("cpu-small")
    mixture = PretextMixture.build([ModalityPuzzleConfig(repetition=False)],
                                   context=TaskContext(modalities=MODS), encoder=encoder, seed=0)
    warning = mixture.skip_warning({"modality_puzzle": 2})
    assert warning is not None and ">= 4 present modalities" in warning


def test_views_replay_for_a_seed() -> None:
    task = make_task(repetition=True)
    data = batch(b=6)
    a = task.make_views(data, torch.Generator().manual_seed(11))
    b = task.make_views(data, torch.Generator().manual_seed(11))
    c = task.make_views(data, torch.Generator().manual_seed(12))
    for key in ("puzzle", "label"):
        torch.testing.assert_close(a.tensors[key], b.tensors[key])
    assert not torch.equal(a.tensors["label"], c.tensors["label"])


@pytest.mark.parametrize("repetition", [False, True], ids=["distinct", "repeated"])
def test_loss_is_reference_cross_entropy(repetition: bool) -> None:
    task = make_task(repetition=repetition)
    torch.manual_seed(0)
    encoder = build_encoder("cpu-small")
    head = task.build_head(encoder)
    views = task.make_views(batch(), torch.Generator().manual_seed(0))
    logits = head(encoder.forward_features(views.tensors["puzzle"])[-1])
    assert logits.shape == (3, task.num_classes)
    labels = views.tensors["label"]
    reference = -F.log_softmax(logits, dim=1)[torch.arange(3), labels].mean()
    torch.testing.assert_close(task.loss(views, encoder=encoder, head=head), reference)


def test_loss_falls_when_learning_the_assignment() -> None:
    """Modalities with distinct contrasts: the puzzles of 4 studies are learnt in a few steps."""
    task = make_task(repetition=False)
    g = torch.Generator().manual_seed(1)
    anatomy = torch.rand(4, 1, 16, 16, 16, generator=g)
    image = anatomy * torch.tensor([1.0, 0.7, 0.4, 0.1]).view(1, 4, 1, 1, 1)
    views = task.make_views({"image": image, "present": torch.ones(4, 4)},
                            torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    encoder = build_encoder("cpu-small")
    head = task.build_head(encoder)
    first, last = fit(task, views, encoder=encoder, head=head, steps=10)
    assert last < 0.3 * first
