"""Phantom on disk: BraTS 2021 layout, manifest, cache reuse, safety, sites and workers."""

from __future__ import annotations

import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from simulations.phantom import PhantomConfig, PhantomManifest, generate_phantom
from simulations.phantom.generate import MARKER_NAME, PhantomOutputError
from simulations.phantom.manifest import GENERATOR_NAME, GENERATOR_VERSION, read_manifest
from simulations.phantom.profiles import load_profiles
from simulations.phantom.template import grid_shape

TINY = PhantomConfig(sites=2, subjects_per_site=2, seed=7, spacing_mm=6.0, tumour_fraction=1.0)
SUFFIXES = ("t1", "t1ce", "t2", "flair", "seg")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, PhantomManifest]:
    root = tmp_path_factory.mktemp("phantom")
    return root, generate_phantom(TINY, root, workers=1, progress=False)


def _mtimes(root: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in sorted(root.rglob("*")) if p.is_file()}


def _load(path: Path) -> np.ndarray:
    return np.asarray(nib.Nifti1Image.from_filename(path).dataobj)


def test_layout_is_brats2021_one_folder_per_site(tiny: tuple[Path, PhantomManifest]) -> None:
    root, _ = tiny
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == ["site-0", "site-1"]
    expected_ids = {
        "site-0": ["BraTS2021_00000", "BraTS2021_00001"],
        "site-1": ["BraTS2021_00002", "BraTS2021_00003"],
    }
    for site, ids in expected_ids.items():
        assert sorted(p.name for p in (root / site).iterdir()) == ids
        for sid in ids:
            names = sorted(p.name for p in (root / site / sid).iterdir())
            assert names == sorted(f"{sid}_{s}.nii.gz" for s in SUFFIXES)


def test_nifti_types_affine_and_background(tiny: tuple[Path, PhantomManifest]) -> None:
    root, _ = tiny
    folder = root / "site-0" / "BraTS2021_00000"
    images = {s: nib.Nifti1Image.from_filename(folder / f"BraTS2021_00000_{s}.nii.gz") for s in SUFFIXES}
    for suffix, img in images.items():
        assert img.shape == grid_shape(6.0)
        assert img.get_data_dtype() == (np.uint8 if suffix == "seg" else np.float32)
        np.testing.assert_allclose(np.diag(img.affine)[:3], 6.0)
        assert nib.aff2axcodes(img.affine) == ("R", "A", "S")
    brain = _load(folder / "BraTS2021_00000_t1.nii.gz") > 0
    for suffix in ("t1ce", "t2", "flair"):
        # Skull-stripped like BraTS: the same brain in every contrast, exactly 0 elsewhere.
        np.testing.assert_array_equal(_load(folder / f"BraTS2021_00000_{suffix}.nii.gz") > 0, brain)
    seg = _load(folder / "BraTS2021_00000_seg.nii.gz")
    assert not seg[~brain].any()


def test_manifest_describes_what_is_on_disk(tiny: tuple[Path, PhantomManifest]) -> None:
    root, manifest = tiny
    on_disk = read_manifest(root)
    assert on_disk == manifest
    assert manifest.generator.name == GENERATOR_NAME
    assert manifest.generator.version == GENERATOR_VERSION
    assert manifest.config == TINY and len(manifest.cache_key) == 64
    assert [s.name for s in manifest.sites] == ["site-0", "site-1"]
    profiles = load_profiles()
    assert [s.profile for s in manifest.sites] == profiles[:2]
    for site in manifest.sites:
        for subj in site.subjects:
            seg = _load(root / site.name / subj.id / f"{subj.id}_seg.nii.gz")
            assert subj.tumour_voxels == int((seg > 0).sum()) > 0
            assert subj.label_voxels == {k: int((seg == int(k)).sum()) for k in ("1", "2", "4")}
            assert subj.grade in ("HGG", "LGG")
            assert subj.tumour_centre_voxel is not None


def test_sites_with_different_profiles_differ_in_intensity(
    tiny: tuple[Path, PhantomManifest],
) -> None:
    root, _ = tiny
    medians = []
    for site, sid in (("site-0", "BraTS2021_00000"), ("site-1", "BraTS2021_00002")):
        t1 = _load(root / site / sid / f"{sid}_t1.nii.gz")
        medians.append(float(np.median(t1[t1 > 0])))
    assert max(medians) / min(medians) > 1.5


def test_second_call_reuses_the_cache_without_rewriting(
    tiny: tuple[Path, PhantomManifest],
) -> None:
    root, manifest = tiny
    before = _mtimes(root)
    start = time.perf_counter()
    again = generate_phantom(TINY, root, workers=1, progress=False)
    assert time.perf_counter() - start < 1.0
    assert again == manifest
    assert _mtimes(root) == before


def test_workers_do_not_change_the_output(tiny: tuple[Path, PhantomManifest], tmp_path: Path) -> None:
    root, manifest = tiny
    parallel = generate_phantom(TINY, tmp_path, workers=2, progress=False)
    assert parallel == manifest
    for a in sorted(root.rglob("*.nii.gz")):
        b = tmp_path / a.relative_to(root)
        np.testing.assert_array_equal(_load(a), _load(b))


def test_changed_config_regenerates_and_drops_stale_sites(tmp_path: Path) -> None:
    generate_phantom(TINY, tmp_path, workers=1, progress=False)
    smaller = TINY.model_copy(update={"sites": 1, "seed": 8})
    manifest = generate_phantom(smaller, tmp_path, workers=1, progress=False)
    assert manifest.config == smaller
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["site-0"]
    assert read_manifest(tmp_path) == manifest


def test_missing_file_invalidates_the_cache(tmp_path: Path) -> None:
    cfg = TINY.model_copy(update={"sites": 1, "subjects_per_site": 1})
    generate_phantom(cfg, tmp_path, workers=1, progress=False)
    victim = tmp_path / "site-0" / "BraTS2021_00000" / "BraTS2021_00000_flair.nii.gz"
    victim.unlink()
    generate_phantom(cfg, tmp_path, workers=1, progress=False)
    assert victim.is_file()
    assert not list(tmp_path.rglob(".*tmp*")), "no temporary files may be left behind"


def test_refuses_to_overwrite_a_folder_that_is_not_a_phantom(tmp_path: Path) -> None:
    keep = tmp_path / "notes.txt"
    keep.write_text("precious")
    with pytest.raises(PhantomOutputError, match=r"notes\.txt") as err:
        generate_phantom(TINY, tmp_path, workers=1, progress=False)
    assert str(tmp_path) in str(err.value)
    assert keep.read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_interrupted_phantom_is_regenerated(tmp_path: Path) -> None:
    # A marker without a manifest is what an interrupted run leaves behind.
    (tmp_path / MARKER_NAME).write_text("old\n")
    (tmp_path / "site-0").mkdir()
    cfg = TINY.model_copy(update={"sites": 1, "subjects_per_site": 1})
    manifest = generate_phantom(cfg, tmp_path, workers=1, progress=False)
    assert read_manifest(tmp_path) == manifest


def test_bad_profiles_file_names_the_file_before_any_work(tmp_path: Path) -> None:
    bad = tmp_path / "scanners.toml"
    bad.write_text('[[profile]]\nname = "x"\nfield_strength_t = 7.0\n')
    out = tmp_path / "out"
    cfg = TINY.model_copy(update={"profiles_file": bad})
    with pytest.raises(ValueError, match=r"scanners\.toml"):
        generate_phantom(cfg, out, workers=1, progress=False)
    assert not out.exists()


@pytest.mark.parametrize(
    ("update", "field"),
    [
        ({"sites": 0}, "sites"),
        ({"spacing_mm": 0.5}, "spacing_mm"),
        ({"tumour_fraction": 1.5}, "tumour_fraction"),
        ({"unknown": 1}, "unknown"),
    ],
    ids=["no-sites", "spacing", "fraction", "extra-key"],
)
def test_config_rejects_bad_values(update: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        PhantomConfig.model_validate({**TINY.model_dump(), **update})


def test_bad_workers_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="workers"):
        generate_phantom(TINY, tmp_path, workers=0, progress=False)
