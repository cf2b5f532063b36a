"""Phantom subjects: determinism, anatomical variety, tumour labels and skull-stripping."""

from __future__ import annotations

import numpy as np
import pytest

from simulations.phantom.profiles import load_profiles
from simulations.phantom.subject import SubjectVolumes, simulate_subject
from simulations.phantom.template import grid_shape, load_template
from simulations.phantom.tissues import load_tissue_table
from simulations.phantom.tumour import LABEL_ENHANCING, LABELS

SPACING = 6.0
PROFILE = load_profiles()[0]


def _subject(
    *,
    seed: int = 0,
    site: int = 0,
    subject: int = 0,
    tumour_fraction: float = 0.85,
    spacing: float = SPACING,
) -> SubjectVolumes:
    return simulate_subject(
        template=load_template(spacing),
        profile=PROFILE,
        table=load_tissue_table(),
        seed=seed,
        site=site,
        subject=subject,
        tumour_fraction=tumour_fraction,
    )


def test_template_grid_at_2mm_matches_the_documented_shape() -> None:
    assert grid_shape(2.0) == (98, 116, 94)
    template = load_template(SPACING)
    assert template.tissues.shape == (3, *grid_shape(SPACING))
    assert float(template.tissues.sum(axis=0).max()) <= 1.0 + 1e-5
    np.testing.assert_allclose(np.diag(template.affine)[:3], SPACING)
    with pytest.raises(ValueError, match="spacing_mm"):
        load_template(0.5)


def test_same_seed_gives_identical_subject() -> None:
    a, b = _subject(seed=5, subject=1), _subject(seed=5, subject=1)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.seg, b.seg)
    assert a.grade == b.grade


def test_different_seed_gives_a_different_subject() -> None:
    a, b = _subject(seed=5), _subject(seed=6)
    assert not np.array_equal(a.images, b.images)
    assert np.abs(a.fractions[:3] - b.fractions[:3]).mean() > 1e-3


def test_subjects_differ_in_anatomy() -> None:
    # No tumours: any difference comes from the random deformation alone.
    a = _subject(subject=0, tumour_fraction=0.0)
    b = _subject(subject=1, tumour_fraction=0.0)
    diff = np.abs(a.fractions[:3] - b.fractions[:3]).sum(axis=0)
    assert diff[a.brain_mask | b.brain_mask].mean() > 0.05


@pytest.mark.parametrize("spacing", [6.0, 4.0], ids=["6mm", "4mm"])
def test_labels_are_brats_values_inside_the_brain_and_match_the_grade(spacing: float) -> None:
    grades = set()
    for subject in range(16):
        vol = _subject(seed=11, subject=subject, spacing=spacing)
        grades.add(vol.grade)
        values = set(np.unique(vol.seg).tolist())
        assert values <= set(LABELS)
        assert not vol.seg[~vol.brain_mask].any(), "labels must stay inside the brain mask"
        if vol.grade == "HGG":
            assert LABEL_ENHANCING in values and 1 in values
        elif vol.grade == "LGG":
            assert LABEL_ENHANCING not in values and values & {1, 2}
        else:
            assert values == {0}
    assert grades == {"HGG", "LGG", "none"}


@pytest.mark.parametrize("fraction", [0.0, 1.0])
def test_tumour_fraction_extremes(fraction: float) -> None:
    grades = [_subject(subject=s, tumour_fraction=fraction).grade for s in range(6)]
    assert (grades.count("none") == 6) if fraction == 0.0 else ("none" not in grades)


def test_background_is_exactly_zero_and_brain_is_positive() -> None:
    vol = _subject(seed=2)
    assert np.all(vol.images[:, ~vol.brain_mask] == 0.0)
    assert np.all(vol.images[:, vol.brain_mask] > 0.0)
    assert vol.images.dtype == np.float32 and vol.seg.dtype == np.uint8


def test_tumour_replaces_tissue_without_changing_the_brain() -> None:
    healthy = _subject(seed=4, tumour_fraction=0.0)
    sick = _subject(seed=4, tumour_fraction=1.0)
    # Fractions always sum to the soft brain mask: tumour replaces tissue, never adds.
    assert float(sick.fractions.sum(axis=0).max()) <= 1.0 + 1e-4
    assert sick.fractions[3:].sum() > 0 and healthy.fractions[3:].sum() == 0
