"""PhantomConfig: the settings of a generated phantom dataset (validated once, at the edge)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from simulations.phantom.template import MAX_SPACING_MM, MIN_SPACING_MM

#: BraTS 2021 subject ids have five digits.
MAX_SUBJECTS: Final = 100_000


class PhantomConfig(BaseModel):
    """What phantom dataset to generate."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sites: int = Field(default=4, ge=1, le=1000, description="number of simulated hospitals")
    subjects_per_site: int = Field(default=12, ge=1, description="subjects in each site")
    seed: int = Field(default=0, ge=0, lt=2**63, description="dataset seed")
    spacing_mm: float = Field(default=2.0, description="isotropic voxel size (mm)")
    tumour_fraction: float = Field(default=0.85, ge=0.0, le=1.0)
    profiles_file: Path | None = Field(
        default=None, description="TOML file of [[profile]] tables replacing the defaults"
    )

    @field_validator("spacing_mm")
    @classmethod
    def _spacing_in_range(cls, value: float) -> float:
        if not (math.isfinite(value) and MIN_SPACING_MM <= value <= MAX_SPACING_MM):
            raise ValueError(
                f"expected spacing_mm in [{MIN_SPACING_MM}, {MAX_SPACING_MM}] (the template "
                f"is 1 mm), got {value}; fix: use 2.0 for CPU runs, 1.0 for full resolution"
            )
        return value

    @model_validator(mode="after")
    def _ids_fit(self) -> PhantomConfig:
        total = self.sites * self.subjects_per_site
        if total > MAX_SUBJECTS:
            raise ValueError(
                f"expected at most {MAX_SUBJECTS} subjects in all (BraTS ids have five "
                f"digits), got sites * subjects_per_site = {total}; fix: lower one of them"
            )
        return self
