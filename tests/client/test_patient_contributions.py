"""One bounded row per patient and modality, whatever the number of studies per patient."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from client.data.adapter import StudyRecord
from client.data.dataset import load_site_dataset
from client.data.study_list import write_study_list
from client.patient_contributions import bound_contributions, contributions_fingerprint
from tests.client.site_data import small_config, study_id, write_site

MODS = ("t1", "t2")


def stats(mean: float, *, present: tuple[float, float] = (1.0, 1.0), std: float = 0.1,
          hist: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0)) -> dict[str, np.ndarray]:
    h = np.array(hist, dtype=np.float64)
    return {"present": np.array(present), "fg_mean": np.full(2, mean), "fg_std": np.full(2, std),
            "fg_hist": np.stack([h, h])}


def test_a_patient_with_several_studies_contributes_one_row_per_modality() -> None:
    studies = [("p1", "s3", stats(0.9)), ("p1", "s1", stats(0.1, present=(0.0, 1.0))),
               ("p1", "s2", stats(0.5)), ("p2", "s4", stats(0.3))]
    cols = bound_contributions(studies, modalities=MODS, bins=4)
    assert cols["t1"].patients == 2 and cols["t2"].patients == 2
    # t1: p1's first study with t1 is s2 (s1 lacks it); t2: p1's first study is s1
    assert sorted(cols["t1"].means) == [0.3, 0.5] and sorted(cols["t2"].means) == [0.1, 0.3]


def test_values_are_clamped_to_public_bounds_and_broken_rows_skipped() -> None:
    studies = [("p1", "a", stats(1.7, std=0.9, hist=(-1.0, 2.0, 0.0, 0.0))),
               ("p2", "b", stats(float("nan"))), ("p2", "c", stats(0.2)),
               ("p3", "d", stats(0.4, hist=(0.0, 0.0, 0.0, 0.0)))]
    col = bound_contributions(studies, modalities=MODS, bins=4)["t1"]
    assert list(col.means) == [1.0, 0.2, 0.4]  # p2's NaN study skipped, its next one used
    assert list(col.stds) == [0.5, 0.1, 0.1]
    assert np.allclose(col.histograms.sum(axis=1), 1.0) and (col.histograms >= 0).all()
    assert list(col.histograms[0]) == [0.0, 1.0, 0.0, 0.0]
    assert list(col.histograms[2]) == [0.25] * 4  # an empty histogram counts as uniform


def test_every_requested_modality_has_columns_even_when_no_patient_has_it() -> None:
    cols = bound_contributions([("p", "s", stats(0.4, present=(1.0, 0.0)))], modalities=MODS, bins=4)
    assert cols["t2"].patients == 0 and cols["t2"].histograms.shape == (0, 4)


def test_wrong_shapes_are_refused_with_what_was_expected() -> None:
    with pytest.raises(ValueError, match=r"expected per-study statistics of shapes .* got"):
        bound_contributions([("p", "s", stats(0.4))], modalities=MODS, bins=8)


def test_fingerprint_follows_exactly_the_covered_values() -> None:
    base = [("p1", "s1", stats(0.3)), ("p2", "s2", stats(0.4))]
    fp = contributions_fingerprint(bound_contributions(base, modalities=MODS, bins=4))
    shuffled = list(reversed(base))
    assert contributions_fingerprint(bound_contributions(shuffled, modalities=MODS, bins=4)) == fp
    later_study = [*base, ("p1", "s9", stats(0.8))]  # not p1's first: the release is the same
    assert contributions_fingerprint(bound_contributions(later_study, modalities=MODS, bins=4)) == fp
    new_patient = [*base, ("p3", "s3", stats(0.8))]
    assert contributions_fingerprint(bound_contributions(new_patient, modalities=MODS, bins=4)) != fp
    changed = [("p1", "s1", stats(0.31)), base[1]]
    assert contributions_fingerprint(bound_contributions(changed, modalities=MODS, bins=4)) != fp


def test_the_site_dataset_knows_each_studys_patient(tmp_path: Path) -> None:
    data = tmp_path / "data"
    ids = write_site(data, num_studies=3)
    records = [StudyRecord(study_id=sid, images={m: data / sid / f"{sid}_{m}.nii.gz"
                                                 for m in ("t1", "t1ce", "t2", "flair")},
                           subject_id="patient-a" if i < 2 else None)
               for i, sid in enumerate(ids)]
    write_study_list(data / "fedmm-studies.json", records, layout="brats2021")
    dataset = load_site_dataset(data, data=small_config(), cache_dir=tmp_path / "cache", seed=0)
    rows = dataset.patient_study_stats()
    assert [(subject, sid) for subject, sid, _ in rows] == [  # sorted by patient, then study
        (study_id(2), study_id(2)), ("patient-a", study_id(0)), ("patient-a", study_id(1))]
    cols = bound_contributions(rows, modalities=small_config().modalities, bins=8)
    assert {m: c.patients for m, c in cols.items()} == dict.fromkeys(small_config().modalities, 2)
