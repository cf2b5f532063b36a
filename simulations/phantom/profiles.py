"""Scanner profiles: what makes one simulated hospital's images differ from another's."""

from __future__ import annotations

import math
import tomllib
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from simulations.phantom.tissues import FIELD_STRENGTHS_T

_EXAMPLE = (
    "[[profile]]\n"
    'name = "my-3T"\n'
    "field_strength_t = 3.0\n"
    "intensity_scale = 1000.0\n"
    "noise_rel_wm = 0.03\n"
    "bias_field_amplitude = 0.1\n"
    "blur_sigma_mm = 0.5\n"
    "t1 = { tr_ms = 600.0, te_ms = 10.0 }\n"
    "t2 = { tr_ms = 4500.0, te_ms = 95.0 }\n"
    "flair = { tr_ms = 9000.0, te_ms = 120.0, ti_ms = 2500.0 }"
)


class SpinEchoConfig(BaseModel):
    """Timing of a spin-echo sequence (T1- or T2-weighted)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tr_ms: float = Field(gt=0.0, le=20000.0, description="repetition time (ms)")
    te_ms: float = Field(gt=0.0, le=500.0, description="echo time (ms)")

    @model_validator(mode="after")
    def _te_below_tr(self) -> SpinEchoConfig:
        if self.te_ms >= self.tr_ms:
            raise ValueError(
                f"expected te_ms < tr_ms, got te_ms={self.te_ms} and tr_ms={self.tr_ms}; fix: "
                "the echo comes within one repetition"
            )
        return self


class InversionRecoveryConfig(BaseModel):
    """Timing of an inversion-recovery sequence (FLAIR)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tr_ms: float = Field(gt=0.0, le=30000.0, description="repetition time (ms)")
    te_ms: float = Field(gt=0.0, le=500.0, description="echo time (ms)")
    ti_ms: float = Field(gt=0.0, le=10000.0, description="inversion time (ms)")

    @model_validator(mode="after")
    def _times_ordered(self) -> InversionRecoveryConfig:
        if not (self.ti_ms < self.tr_ms and self.te_ms < self.tr_ms):
            raise ValueError(
                f"expected ti_ms < tr_ms and te_ms < tr_ms, got ti_ms={self.ti_ms}, "
                f"te_ms={self.te_ms}, tr_ms={self.tr_ms}; fix: FLAIR uses e.g. TR 9000, "
                "TI 2500, TE 120"
            )
        return self


class ScannerProfileConfig(BaseModel):
    """One hospital's scanner: field strength, sequence timings and image degradations."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._+-]+$")
    description: str = ""
    field_strength_t: float = Field(description="main field in tesla (1.5 or 3.0)")
    t1: SpinEchoConfig
    t1ce: SpinEchoConfig | None = Field(
        default=None, description="post-contrast T1 timing; None reuses the T1 sequence"
    )
    t2: SpinEchoConfig
    flair: InversionRecoveryConfig
    intensity_scale: float = Field(gt=0.0, le=1e6, description="receiver gain (a.u.)")
    noise_rel_wm: float = Field(ge=0.0, le=0.5, description="Rician sigma / WM signal")
    bias_field_amplitude: float = Field(ge=0.0, le=1.0, description="std of log bias field")
    blur_sigma_mm: float = Field(ge=0.0, le=5.0, description="in-plane PSF sigma (mm)")
    slice_thickness_mm: float | None = Field(
        default=None, gt=0.0, le=12.0, description="2D slice thickness (mm); None = 3D"
    )
    slice_axis: Literal[0, 1, 2] = 2
    gd_dose_scale: float = Field(default=1.0, ge=0.0, le=3.0)

    @field_validator("field_strength_t")
    @classmethod
    def _known_field(cls, value: float) -> float:
        if not any(math.isclose(value, f) for f in FIELD_STRENGTHS_T):
            raise ValueError(
                f"expected field_strength_t in {list(FIELD_STRENGTHS_T)} (the relaxation "
                f"table covers these), got {value}; fix: use 1.5 or 3.0"
            )
        return float(value)

    @property
    def t1ce_sequence(self) -> SpinEchoConfig:
        """Timing used for T1ce (the T1 sequence unless overridden)."""
        return self.t1ce if self.t1ce is not None else self.t1


def _format_errors(exc: ValidationError) -> str:
    """One line per pydantic error: location, message and the offending value."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(part) for part in err["loc"]) or "(top level)"
        lines.append(f"  {loc}: {err['msg']} (got {err.get('input')!r})")
    return "\n".join(lines)


def _parse(text: str, origin: str) -> list[ScannerProfileConfig]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(
            f"expected a TOML file of [[profile]] tables in {origin}, got a TOML syntax "
            f"error: {exc}; fix: correct the syntax (see the example below)\n{_EXAMPLE}"
        ) from exc
    extra = sorted(set(data) - {"profile"})
    profiles = data.get("profile")
    if extra or not isinstance(profiles, list) or not profiles:
        found = f"top-level keys {sorted(data)}" if data else "an empty file"
        raise ValueError(
            f"expected one or more [[profile]] tables (and nothing else) in {origin}, got "
            f"{found}; fix: write each scanner as a [[profile]] table, e.g.\n{_EXAMPLE}"
        )
    out: list[ScannerProfileConfig] = []
    for index, raw in enumerate(profiles):
        label = raw.get("name", "?") if isinstance(raw, dict) else "?"
        try:
            out.append(ScannerProfileConfig.model_validate(raw))
        except ValidationError as exc:
            raise ValueError(
                f"invalid scanner profile #{index} ({label!r}) in {origin}:\n"
                f"{_format_errors(exc)}\nfix: correct these entries; every profile needs "
                "name, field_strength_t, intensity_scale, noise_rel_wm, "
                "bias_field_amplitude, blur_sigma_mm, t1, t2 and flair"
            ) from exc
    names = [p.name for p in out]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(
            f"expected unique profile names in {origin}, got duplicates {duplicates}; fix: rename them"
        )
    return out


def default_profiles_text() -> str:
    """Text of the packaged `profiles/default.toml`."""
    return (resources.files("simulations.phantom") / "profiles" / "default.toml").read_text("utf-8")


def load_profiles(path: Path | None = None) -> list[ScannerProfileConfig]:
    """Load scanner profiles: the packaged defaults, or a user file that replaces them.

    Args:
        path: a TOML file of `[[profile]]` tables (same schema as the packaged
            `profiles/default.toml`); None for the defaults.

    Returns:
        The profiles in file order; site k uses profile `k % len(profiles)`.

    Raises:
        ValueError: naming the file, for a missing or unreadable file, bad TOML, unknown
            keys, invalid values or duplicate names.
    """
    if path is None:
        return _parse(default_profiles_text(), "the packaged profiles/default.toml")
    path = Path(path)
    if not path.is_file():
        what = "a folder" if path.is_dir() else "nothing"
        raise ValueError(
            f"expected a scanner profiles TOML file at {path}, got {what}; fix: check the "
            "path, or leave out --profiles to use the built-in profiles"
        )
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(
            f"expected a readable UTF-8 TOML file at {path}, got {exc}; fix: check the file"
        ) from exc
    return _parse(text, str(path))
