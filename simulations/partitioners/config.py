"""Config models of the partitioners: ``[simulation.partition]``, one model per partitioner name."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator

from shared.config import FrozenModel
from shared.modalities import canonical_modality

__all__ = [
    "DirichletPartitionConfig",
    "ModalityMissingPartitionConfig",
    "NaturalPartitionConfig",
    "PartitionConfig",
    "QuantityPartitionConfig",
    "ScannerShiftPartitionConfig",
]


class NaturalPartitionConfig(FrozenModel):
    """The dataset's own institutions are the virtual sites (FeTS partitions, IXI hospitals)."""

    name: Literal["natural"] = "natural"
    by: str = Field(
        default="site", min_length=1,
        description="What names the institution: 'site' (the record's site) or a meta key, "
        "e.g. 'partition_2' for FeTS 2022's 33-way split.",
    )
    keep_largest: int | None = Field(
        default=None, ge=1, description="Keep only the k largest institutions as sites.")
    merge_rest: bool = Field(
        default=True,
        description="With keep_largest / min_subjects: merge the other institutions into one "
        "more site named 'rest' (true) or leave them out (false).",
    )
    min_subjects: int = Field(
        default=1, ge=1, description="Institutions with fewer subjects count as the rest.")


class DirichletPartitionConfig(FrozenModel):
    """Label-skew-style split over a covariate with Dirichlet(alpha) proportions per value."""

    name: Literal["dirichlet"] = "dirichlet"
    by: str = Field(
        default="tumour_size", min_length=1,
        description="Covariate: a meta key (grade, cohort, scanner, ...), 'site', or "
        "'tumour_size' (labelled voxels in mL, read from the label files).",
    )
    alpha: float = Field(
        default=0.5, gt=0, le=1e4,
        description="Concentration: small = each site dominated by few covariate values; "
        "large = close to IID.",
    )
    bins: int = Field(
        default=3, ge=2, le=10, description="Quantile bins for numeric covariates (tumour_size).")
    min_subjects: int = Field(
        default=2, ge=1,
        description="Resample until every site has at least this many subjects (Flower "
        "Datasets' min_partition_size; it gives up after 10 tries).",
    )
    self_balancing: bool = Field(
        default=False, description="Stop filling a site once it holds more than the average.")


class QuantityPartitionConfig(FrozenModel):
    """Quantity skew: site sizes follow a power law, subjects drawn at random."""

    name: Literal["quantity"] = "quantity"
    exponent: float = Field(
        default=1.0, ge=0, le=5,
        description="Site k (0-based) gets a share proportional to (k + 1) ** -exponent; "
        "0 gives equal sizes.",
    )
    min_subjects: int = Field(default=2, ge=1, description="Smallest site size.")


class ModalityMissingPartitionConfig(FrozenModel):
    """IID split where each virtual site lacks some modalities, as real hospitals do."""

    name: Literal["modality_missing"] = "modality_missing"
    missing: tuple[tuple[str, ...], ...] | None = Field(
        default=None,
        description="Per site, the modalities it lacks (cycled over the sites), e.g. "
        "[[], ['t1ce'], ['flair', 't2']]. Default: `drop` modalities drawn per site.",
    )
    drop: int = Field(default=1, ge=0, description="Modalities each site lacks when `missing` is unset.")
    keep_at_least: int = Field(
        default=2, ge=1, description="Never leave a site fewer modalities than this.")

    @field_validator("missing")
    @classmethod
    def _canonical(cls, value: tuple[tuple[str, ...], ...] | None) -> tuple[tuple[str, ...], ...] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("missing must list at least one site's modalities, got an empty list")
        return tuple(tuple(canonical_modality(m) for m in site) for site in value)


class ScannerShiftPartitionConfig(FrozenModel):
    """IID split of a (single-site) dataset; each virtual site's images get a scanner profile."""

    name: Literal["scanner_shift"] = "scanner_shift"
    profiles_file: Path | None = Field(
        default=None,
        description="Phantom scanner profiles TOML ([[profile]] tables); None = the built-in "
        "profiles (simulations/phantom/profiles/default.toml). Site k uses profile k mod n.",
    )
    contrast_gamma: tuple[float, ...] = Field(
        default=(1.0, 0.85, 1.2, 0.95), min_length=1,
        description="Per site (cycled), a monotone contrast change x -> x ** gamma of the "
        "normalised intensities.",
    )

    @field_validator("contrast_gamma")
    @classmethod
    def _positive(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(not 0.2 <= g <= 5 for g in value):
            raise ValueError(f"contrast_gamma values must lie in [0.2, 5], got {list(value)}")
        return value


#: Discriminated union over every registered partitioner's config (a test keeps it in step
#: with the registry in simulations/partitioners/registry.py).
PartitionConfig = Annotated[
    NaturalPartitionConfig | DirichletPartitionConfig | QuantityPartitionConfig
    | ModalityMissingPartitionConfig | ScannerShiftPartitionConfig,
    Field(discriminator="name"),
]
