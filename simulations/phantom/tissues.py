"""Tissue relaxation table (PD, T1, T2, gadolinium uptake) loaded from packaged TOML data."""

from __future__ import annotations

import functools
import tomllib
from importlib import resources
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

#: Tissue channels of a subject's fraction volume `(T, D, H, W)`, in this order.
TISSUES: Final[tuple[str, ...]] = (
    "wm",
    "gm",
    "csf",
    "necrotic",
    "edema",
    "enhancing",
    "non_enhancing",
)
#: The tumour tissues (the last four channels of `TISSUES`).
TUMOUR_TISSUES: Final[tuple[str, ...]] = TISSUES[3:]
#: Field strengths (tesla) the table covers; a scanner profile must use one of them.
FIELD_STRENGTHS_T: Final[tuple[float, ...]] = (1.5, 3.0)


def field_key(field_strength_t: float) -> str:
    """Table key of a field strength: `1.5 -> "1.5"`, `3 -> "3.0"`."""
    return f"{float(field_strength_t):.1f}"


class TissueRelaxationConfig(BaseModel):
    """Relaxation properties of one tissue."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pd: float = Field(gt=0.0, le=1.2, description="proton density relative to CSF")
    gd_mm: float = Field(ge=0.0, le=5.0, description="gadolinium concentration (mM)")
    t1_ms: dict[str, float] = Field(description="T1 (ms) per field strength key")
    t2_ms: dict[str, float] = Field(description="T2 (ms) per field strength key")

    @model_validator(mode="after")
    def _check_fields(self) -> TissueRelaxationConfig:
        expected = {field_key(f) for f in FIELD_STRENGTHS_T}
        for name, table in (("t1_ms", self.t1_ms), ("t2_ms", self.t2_ms)):
            if set(table) != expected:
                raise ValueError(
                    f"expected {name} keys {sorted(expected)}, got {sorted(table)}; fix: give "
                    f'one value per field strength, e.g. {name} = {{ "1.5" = ..., "3.0" = ... }}'
                )
            bad = {k: v for k, v in table.items() if not v > 0}
            if bad:
                raise ValueError(f"expected positive {name}, got {bad}; fix: use milliseconds")
        return self


class ContrastAgentConfig(BaseModel):
    """Relaxivity of the gadolinium contrast agent."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    r1_per_mm_per_s: dict[str, float]


class TissueTableConfig(BaseModel):
    """All tissues' relaxation properties; the data behind the signal equations."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    contrast_agent: ContrastAgentConfig
    tissue: dict[str, TissueRelaxationConfig]

    @model_validator(mode="after")
    def _check_tissues(self) -> TissueTableConfig:
        if set(self.tissue) != set(TISSUES):
            raise ValueError(
                f"expected tissues {list(TISSUES)}, got {sorted(self.tissue)}; fix: add or "
                "rename the [tissue.<name>] tables"
            )
        expected = {field_key(f) for f in FIELD_STRENGTHS_T}
        if set(self.contrast_agent.r1_per_mm_per_s) != expected:
            raise ValueError(
                f"expected contrast_agent.r1_per_mm_per_s keys {sorted(expected)}, got "
                f"{sorted(self.contrast_agent.r1_per_mm_per_s)}"
            )
        return self

    def relaxation(self, tissue: str, field_strength_t: float) -> tuple[float, float, float]:
        """`(PD, T1 ms, T2 ms)` of `tissue` at `field_strength_t` (before contrast agent)."""
        props = self.tissue[tissue]
        key = field_key(field_strength_t)
        return props.pd, props.t1_ms[key], props.t2_ms[key]

    def relaxivity(self, field_strength_t: float) -> float:
        """r1 of the contrast agent in 1/(mM ms) at `field_strength_t`."""
        return self.contrast_agent.r1_per_mm_per_s[field_key(field_strength_t)] / 1000.0


@functools.lru_cache(maxsize=1)
def load_tissue_table() -> TissueTableConfig:
    """Load the packaged relaxation table `profiles/tissues.toml`.

    Raises:
        ValueError: when the packaged file was edited into an invalid state.
    """
    source = resources.files("simulations.phantom") / "profiles" / "tissues.toml"
    try:
        return TissueTableConfig.model_validate(tomllib.loads(source.read_text("utf-8")))
    except (tomllib.TOMLDecodeError, ValidationError) as exc:
        raise ValueError(
            f"expected a valid tissue relaxation table in {source}, got: {exc}; fix: restore "
            "the packaged file (git checkout) or correct the reported entry"
        ) from exc
