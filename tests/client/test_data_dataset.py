"""A site's dataset: validation, the persistent cache, the split and seeded batches."""

from __future__ import annotations

import logging
import os
from itertools import islice
from pathlib import Path

import nibabel
import numpy as np
import pytest
import torch

from client.data import BATCH_KEYS, SiteDataset, load_site_dataset, split_studies
from client.data.adapter import StudyRecord
from tests.client.site_data import (
    SHAPE,
    brain,
    small_config,
    study_id,
    write_nifti,
    write_site,
    write_study,
)


def _open(root: Path, cache: Path, *, seed: int = 0, **overrides: object) -> SiteDataset:
    return load_site_dataset(root, data=small_config(**overrides), cache_dir=cache, seed=seed)


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    write_site(root, num_studies=5)
    return root


def test_opens_a_site_and_splits_it(site: Path, tmp_path: Path) -> None:
    ds = _open(site, tmp_path / "cache")
    assert ds.num_studies == 5 and ds.problems == ()
    assert len(ds.eval_ids) == 2 and len(ds.train_ids) == 3
    assert set(ds.train_ids).isdisjoint(ds.eval_ids)
    assert set(ds.train_ids) | set(ds.eval_ids) == {study_id(i) for i in range(5)}
    sample = ds.preprocessed("train")[0]
    assert sample["study_id"] == ds.train_ids[0]
    assert sample["image"].shape[0] == 4 and sample["present"].tolist() == [1, 1, 1, 1]
    with pytest.raises(ValueError, match="one of"):
        ds.preprocessed("test")  # type: ignore[arg-type]


def test_missing_modality_is_zero_and_absent(tmp_path: Path) -> None:
    root = tmp_path / "site"
    write_site(root, num_studies=2)
    write_study(root, 2, modalities=("flair", "t1", "t2"))  # no t1ce
    ds = _open(root, tmp_path / "cache", eval_fraction=0.0)
    by_id = {s["study_id"]: s for s in ds.preprocessed("train")}
    sample = by_id[study_id(2)]
    t1ce = list(small_config().modalities).index("t1ce")
    assert sample["present"].tolist() == [1.0 if m != t1ce else 0.0 for m in range(4)]
    assert torch.all(sample["image"][t1ce] == 0)
    assert float(sample["fg_mean"][t1ce]) == 0 and torch.all(sample["fg_hist"][t1ce] == 0)
    assert float(sample["image"][0].max()) == 1.0


def test_bad_files_are_reported_and_the_rest_load(
    site: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    corrupt = site / study_id(1) / f"{study_id(1)}_t2.nii.gz"
    corrupt.write_bytes(os.urandom(300))
    nan_volume = brain(2)
    nan_volume[10, 12, 10] = np.nan
    nan_file = write_nifti(site / study_id(2) / f"{study_id(2)}_t1.nii.gz", nan_volume)
    odd_grid = write_nifti(
        site / study_id(3) / f"{study_id(3)}_flair.nii.gz", np.ones((20, 24, 12), np.float32)
    )

    with caplog.at_level(logging.WARNING, logger="client.data"):
        ds = _open(site, tmp_path / "cache")

    assert set(ds.train_ids) | set(ds.eval_ids) == {study_id(0), study_id(4)}
    by_path = {p.path: p for p in ds.problems}
    assert set(by_path) == {corrupt, nan_file, odd_grid}
    assert "readable NIfTI" in by_path[corrupt].problem
    assert "NaN" in by_path[nan_file].problem
    assert "grid" in by_path[odd_grid].problem
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3 and all("\n" not in w for w in warnings)
    assert any(str(corrupt) in w for w in warnings)
    # The problems are remembered: re-opening reports them without re-reading anything.
    assert _open(site, tmp_path / "cache").problems == ds.problems


def test_a_study_without_any_run_modality_is_skipped(tmp_path: Path) -> None:
    root = tmp_path / "site"
    write_site(root, num_studies=2)
    write_study(root, 2, modalities=("pd",))
    ds = _open(root, tmp_path / "cache")
    assert ds.num_studies == 2
    (problem,) = ds.problems
    assert problem.path == root / study_id(2) and "data.modalities" in problem.fix


def test_a_site_with_no_usable_study_raises(tmp_path: Path) -> None:
    root = tmp_path / "site"
    write_study(root, 0, modalities=("t1",))
    (root / study_id(0) / f"{study_id(0)}_t1.nii.gz").write_bytes(b"not a nifti")
    with pytest.raises(ValueError, match="at least one readable study") as err:
        _open(root, tmp_path / "cache")
    assert f"{study_id(0)}_t1.nii.gz" in str(err.value)


def test_second_open_reads_the_cache_not_nifti(
    site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _open(site, tmp_path / "cache")
    expected = [dict(s) for s in first.preprocessed("train")]
    batch = next(first.train_batches(batch_size=2, seed=3))

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("NIfTI was read although the cache is warm")

    monkeypatch.setattr(nibabel, "load", refuse)
    again = _open(site, tmp_path / "cache")
    assert again.problems == () and again.train_ids == first.train_ids
    for a, b in zip(again.preprocessed("train"), expected, strict=True):
        assert torch.equal(a["image"], b["image"])
    assert _equal(next(again.train_batches(batch_size=2, seed=3)), batch)
    assert again.study_stats()[0]["fg_hist"].shape == (4, 8)


def test_changed_files_are_validated_again(
    site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _open(site, tmp_path / "cache")
    changed = site / study_id(0) / f"{study_id(0)}_t2.nii.gz"
    write_nifti(changed, np.zeros(SHAPE, np.float32))  # now all-zero
    reads: list[str] = []
    real_load = nibabel.load

    def counting_load(filename: str, *args: object, **kwargs: object) -> object:
        reads.append(str(filename))
        return real_load(filename, *args, **kwargs)

    monkeypatch.setattr(nibabel, "load", counting_load)
    ds = _open(site, tmp_path / "cache")
    assert {Path(r).parent.name for r in reads} == {study_id(0)}  # only the changed study
    (problem,) = ds.problems
    assert problem.path == changed and "all-zero" in problem.problem
    assert ds.num_studies == 4


def test_a_shared_samples_folder_serves_another_run_without_preprocessing(
    site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Runs with their own cache folders (their study index) share the preprocessed studies."""
    shared = tmp_path / "preprocessed"
    data = small_config()
    first = load_site_dataset(site, data=data, cache_dir=tmp_path / "run-1", seed=0, samples_dir=shared)
    expected = {s["study_id"]: s["image"] for s in first.preprocessed("train")}
    assert not (tmp_path / "run-1" / "samples").exists() and len(list(shared.glob("*.pt"))) == 5
    from monai.data import PersistentDataset

    # Headers are read again (the size check), the volumes are not preprocessed again.
    monkeypatch.setattr(PersistentDataset, "_pre_transform",
                        lambda *a, **k: pytest.fail("preprocessed again, although the samples are shared"))
    again = load_site_dataset(site, data=data, cache_dir=tmp_path / "run-2", seed=0, samples_dir=shared)
    assert again.num_studies == 5 and (tmp_path / "run-2" / "study_index.json").is_file()
    for sample in again.preprocessed("train"):
        assert torch.equal(sample["image"], expected[sample["study_id"]])


def test_a_shared_samples_folder_keeps_other_settings_apart(site: Path, tmp_path: Path) -> None:
    shared = tmp_path / "preprocessed"
    coarse = load_site_dataset(site, data=small_config(spacing_mm=4.0), cache_dir=tmp_path / "a",
                               seed=0, samples_dir=shared).preprocessed("train")[0]
    fine = load_site_dataset(site, data=small_config(), cache_dir=tmp_path / "b", seed=0,
                             samples_dir=shared).preprocessed("train")[0]
    assert coarse["image"].shape[1:] != fine["image"].shape[1:] and len(list(shared.glob("*.pt"))) == 10


def test_other_preprocessing_settings_do_not_reuse_the_cache(site: Path, tmp_path: Path) -> None:
    coarse = _open(site, tmp_path / "cache", spacing_mm=4.0).preprocessed("train")[0]
    fine = _open(site, tmp_path / "cache").preprocessed("train")[0]
    assert coarse["image"].shape[1:] != fine["image"].shape[1:]


def test_split_is_deterministic_and_disjoint() -> None:
    ids = [study_id(i) for i in range(10)]
    train, held = split_studies(ids, eval_fraction=0.3, seed=1)
    assert len(held) == 3 and set(train).isdisjoint(held) and set(train) | set(held) == set(ids)
    assert split_studies(list(reversed(ids)), eval_fraction=0.3, seed=1) == (train, held)
    assert any(split_studies(ids, eval_fraction=0.3, seed=s)[1] != held for s in range(2, 6))


@pytest.mark.parametrize(
    ("n", "fraction", "n_eval"),
    [(1, 0.5, 0), (2, 0.01, 1), (2, 0.9, 1), (4, 0.0, 0), (5, 0.25, 2), (12, 0.25, 3),
     (4, 0.9, 2)],
    ids=["one-study", "tiny-fraction", "keeps-a-train-study", "no-eval",
         "two-for-a-negative", "rounds", "keeps-two-train-studies"],
)
def test_split_sizes(n: int, fraction: float, n_eval: int) -> None:
    train, held = split_studies([study_id(i) for i in range(n)], eval_fraction=fraction, seed=0)
    assert len(held) == n_eval and len(train) == n - n_eval


def test_train_batches_shapes_and_reproducibility(site: Path, tmp_path: Path) -> None:
    ds = _open(site, tmp_path / "cache", eval_fraction=0.0)
    batches = list(islice(ds.train_batches(batch_size=2, seed=7), 6))
    batch = batches[0]
    assert tuple(batch) == BATCH_KEYS
    assert batch["image"].shape == (2, 4, 8, 8, 8) and batch["image"].dtype == torch.float32
    assert batch["present"].shape == (2, 4) and batch["fg_mean"].shape == (2, 4)
    assert batch["fg_std"].shape == (2, 4) and batch["fg_hist"].shape == (2, 4, 8)
    # 5 studies in batches of 2: the lone fifth is left out of its pass, never alone.
    assert all(b["image"].shape[0] == 2 for b in batches)
    # Aligned crops: the modalities of a study are the same brain, equal after scaling.
    torch.testing.assert_close(batch["image"][:, 1], batch["image"][:, 0], atol=1e-5, rtol=0)
    again = list(islice(ds.train_batches(batch_size=2, seed=7), 6))
    assert all(_equal(a, b) for a, b in zip(batches, again, strict=True))
    other = list(islice(ds.train_batches(batch_size=2, seed=8), 6))
    assert not all(_equal(a, b) for a, b in zip(batches, other, strict=True))
    # Passes are reshuffled: the first two passes (2 batches each) differ.
    assert not all(torch.equal(batches[i]["image"], batches[i + 2]["image"]) for i in (0, 1))


def test_batches_use_what_there_is(tmp_path: Path) -> None:
    root = tmp_path / "site"
    write_site(root, num_studies=3)
    ds = _open(root, tmp_path / "cache", eval_fraction=0.0)
    sizes = [b["image"].shape[0] for b in islice(ds.train_batches(batch_size=8, seed=0), 3)]
    assert sizes == [3, 3, 3]


def test_batches_do_not_depend_on_num_workers(site: Path, tmp_path: Path) -> None:
    serial = _open(site, tmp_path / "cache", eval_fraction=0.0)
    parallel = _open(site, tmp_path / "cache", eval_fraction=0.0, num_workers=2)
    a = list(islice(serial.train_batches(batch_size=2, seed=1), 3))
    b = list(islice(parallel.train_batches(batch_size=2, seed=1), 3))
    assert all(_equal(x, y) for x, y in zip(a, b, strict=True))


def test_eval_batches_are_deterministic(tmp_path: Path) -> None:
    root = tmp_path / "site"
    write_site(root, num_studies=6)
    ds = _open(root, tmp_path / "cache", eval_fraction=0.5)
    assert len(ds.eval_ids) == 3
    first = ds.eval_batches(batch_size=2, num_batches=3, seed=0)
    assert len(first) == 3 and first[0]["image"].shape == (2, 4, 8, 8, 8)
    again = ds.eval_batches(batch_size=2, num_batches=3, seed=0)
    assert all(_equal(a, b) for a, b in zip(first, again, strict=True))
    other = ds.eval_batches(batch_size=2, num_batches=3, seed=1)
    assert not all(_equal(a, b) for a, b in zip(first, other, strict=True))
    no_eval = _open(root, tmp_path / "cache", eval_fraction=0.0)
    assert no_eval.eval_batches(batch_size=2, num_batches=2, seed=0) == []


def test_study_stats_are_per_study_arrays_without_ids(site: Path, tmp_path: Path) -> None:
    ds = _open(site, tmp_path / "cache")
    stats = ds.study_stats()
    assert len(stats) == len(ds.train_ids) and len(ds.study_stats("eval")) == len(ds.eval_ids) == 2
    for entry, sample in zip(stats, ds.preprocessed("train"), strict=True):
        assert set(entry) == {"present", "fg_mean", "fg_std", "fg_hist"}
        assert all(isinstance(v, np.ndarray) and v.dtype == np.float32 for v in entry.values())
        for key, value in entry.items():
            np.testing.assert_array_equal(value, sample[key].numpy())


def test_study_records_are_immutable() -> None:
    record = StudyRecord(study_id="s", images={"t1": Path("s_t1.nii.gz")}, label=None)
    with pytest.raises(AttributeError):
        record.study_id = "t"  # type: ignore[misc]



def test_shared_alignment_uses_one_crop_seed_per_batch() -> None:
    from client.data.batches import _EndlessBatchSampler

    shared = next(iter(_EndlessBatchSampler(6, batch_size=3, seed=0, shared=True)))
    independent = next(iter(_EndlessBatchSampler(6, batch_size=3, seed=0, shared=False)))
    assert len({s for _, s in shared}) == 1
    assert len({s for _, s in independent}) == 3


def test_relative_crop_takes_the_same_relative_location_in_different_sizes() -> None:
    from client.data.transforms import RelativeCropd

    starts = []
    for size in (40, 80):
        # each voxel holds its own index along axis 0, so the crop reveals where it started
        vol = torch.arange(size, dtype=torch.float32).view(1, size, 1, 1).expand(1, size, 20, 20)
        crop = RelativeCropd(["image"], roi_size=8)
        crop.set_random_state(seed=11)
        starts.append(float(crop({"image": vol.clone()})["image"][0, 0, 0, 0]))
    assert abs(starts[0] / (40 - 8) - starts[1] / (80 - 8)) < 0.05


# --------------------------------------------------------------------------- data errors only


def test_a_full_disk_fails_loudly_and_is_not_remembered(
    site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    import monai.data.dataset

    real_save = monai.data.dataset.torch.save

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(monai.data.dataset.torch, "save", disk_full)
    with pytest.raises(OSError, match="No space left"):
        _open(site, tmp_path / "cache")
    monkeypatch.setattr(monai.data.dataset.torch, "save", real_save)
    ds = _open(site, tmp_path / "cache")  # space freed: every study is valid, none remembered bad
    assert ds.num_studies == 5 and ds.problems == ()


@pytest.mark.parametrize("error", [MemoryError(), TypeError("a bug in a transform")], ids=["memory", "bug"])
def test_memory_and_programming_errors_propagate(
    site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    from client.data import transforms

    def broken(self: object, img: object, present: object = None) -> object:
        raise error

    monkeypatch.setattr(transforms.ForegroundStats, "__call__", broken)
    with pytest.raises(RuntimeError) as raised:  # MONAI's wrapper, with the error as its cause
        _open(site, tmp_path / "cache")
    cause = raised.value
    while cause.__cause__ is not None:
        cause = cause.__cause__
    assert cause is error
    monkeypatch.undo()
    assert _open(site, tmp_path / "cache").problems == ()


def test_a_change_to_the_pipeline_code_changes_the_cache_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    from client.data import pipeline_version
    from client.data.transforms import preprocessing_fingerprint

    modules = pipeline_version.pipeline_modules()
    for module in ("client.data.readers", "client.data.nibabel_volumes", "client.data.dicom_series",
                   "client.data.volume_limits", "client.data.read_errors", "client.data.dataset",
                   "client.data.transforms", "client.data.load_transforms"):
        assert module in modules
    before = preprocessing_fingerprint(small_config())
    real_source = pipeline_version._source_file
    edited = Path(os.environ.get("TMPDIR", "/tmp")) / f"edited_readers_{os.getpid()}.py"
    edited.write_bytes(real_source("client.data.readers").read_bytes() + b"\n# an edit\n")

    def source(module: str) -> Path:
        return edited if module == "client.data.readers" else real_source(module)

    monkeypatch.setattr(pipeline_version, "_source_file", source)
    pipeline_version.pipeline_code_hash.cache_clear()
    try:
        assert preprocessing_fingerprint(small_config()) != before
    finally:
        monkeypatch.undo()
        pipeline_version.pipeline_code_hash.cache_clear()
        edited.unlink()
    assert preprocessing_fingerprint(small_config()) == before
    # The cap is not part of a sample's key (it decides validity, see test_data_volume_limits).
    assert preprocessing_fingerprint(small_config(max_voxels=10**6)) == before
