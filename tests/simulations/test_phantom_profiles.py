"""Scanner profiles: the packaged defaults, user files that replace them, helpful errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulations.phantom import PhantomConfig, generate_phantom
from simulations.phantom.profiles import ScannerProfileConfig, load_profiles

GOOD = """
[[profile]]
name = "site-a"
field_strength_t = 3.0
intensity_scale = 500.0
noise_rel_wm = 0.03
bias_field_amplitude = 0.1
blur_sigma_mm = 0.5
t1 = { tr_ms = 600.0, te_ms = 10.0 }
t2 = { tr_ms = 4500.0, te_ms = 95.0 }
flair = { tr_ms = 9000.0, te_ms = 120.0, ti_ms = 2500.0 }

[[profile]]
name = "site-b"
field_strength_t = 1.5
intensity_scale = 90.0
noise_rel_wm = 0.08
bias_field_amplitude = 0.3
blur_sigma_mm = 1.0
slice_thickness_mm = 5.0
t1 = { tr_ms = 500.0, te_ms = 15.0 }
t1ce = { tr_ms = 550.0, te_ms = 15.0 }
t2 = { tr_ms = 3500.0, te_ms = 100.0 }
flair = { tr_ms = 8000.0, te_ms = 110.0, ti_ms = 2000.0 }
"""


def test_defaults_are_at_least_four_different_hospitals() -> None:
    profiles = load_profiles()
    assert len(profiles) >= 4
    assert len({p.name for p in profiles}) == len(profiles)
    assert {p.field_strength_t for p in profiles} == {1.5, 3.0}
    assert len({p.intensity_scale for p in profiles}) == len(profiles)
    assert len({p.noise_rel_wm for p in profiles}) > 1
    assert any(p.slice_thickness_mm for p in profiles)
    assert max(p.bias_field_amplitude for p in profiles) >= 0.3


def test_user_file_replaces_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "scanners.toml"
    path.write_text(GOOD)
    profiles = load_profiles(path)
    assert [p.name for p in profiles] == ["site-a", "site-b"]
    assert profiles[0].t1ce_sequence == profiles[0].t1
    assert profiles[1].t1ce_sequence.tr_ms == 550.0


def test_sites_cycle_through_user_profiles(tmp_path: Path) -> None:
    path = tmp_path / "scanners.toml"
    path.write_text(GOOD)
    cfg = PhantomConfig(sites=3, subjects_per_site=1, spacing_mm=8.0, profiles_file=path)
    manifest = generate_phantom(cfg, tmp_path / "out", workers=1, progress=False)
    assert [s.profile.name for s in manifest.sites] == ["site-a", "site-b", "site-a"]


BAD_FILES = {
    "syntax": ("[[profile]\nname = 'x'", "TOML syntax"),
    "empty": ("", "an empty file"),
    "unknown-top-level": (GOOD + "\n[extra]\nx = 1\n", "extra"),
    "te-after-tr": (
        GOOD.replace("tr_ms = 600.0, te_ms = 10.0", "tr_ms = 8.0, te_ms = 10.0"),
        "te_ms < tr_ms",
    ),
    "unknown-field": (GOOD.replace('name = "site-a"', 'name = "site-a"\ncolour = 1'), "colour"),
    "field-strength": (
        GOOD.replace("field_strength_t = 3.0", "field_strength_t = 7.0"),
        "1.5 or 3.0",
    ),
    "duplicate-names": (GOOD.replace("site-b", "site-a"), "duplicates"),
    "missing-flair": (
        GOOD.replace("flair = { tr_ms = 9000.0, te_ms = 120.0, ti_ms = 2500.0 }", ""),
        "flair",
    ),
}


@pytest.mark.parametrize("case", list(BAD_FILES), ids=list(BAD_FILES))
def test_bad_file_error_names_file_and_problem(tmp_path: Path, case: str) -> None:
    text, expected = BAD_FILES[case]
    path = tmp_path / "my_scanners.toml"
    path.write_text(text)
    with pytest.raises(ValueError) as err:
        load_profiles(path)
    message = str(err.value)
    assert str(path) in message
    assert expected in message
    assert "fix" in message


def test_missing_file_says_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="leave out --profiles"):
        load_profiles(tmp_path / "nope.toml")


def test_profile_model_is_frozen_and_strict() -> None:
    profile = load_profiles()[0]
    with pytest.raises(ValueError):
        ScannerProfileConfig.model_validate({**profile.model_dump(), "gain": 2})
    with pytest.raises(ValueError):
        profile.name = "changed"
