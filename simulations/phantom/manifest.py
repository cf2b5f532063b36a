"""The phantom's `manifest.json`: what was generated, from which settings, and its cache key."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from simulations.phantom.config import PhantomConfig
from simulations.phantom.profiles import ScannerProfileConfig
from simulations.phantom.signal import CONTRASTS
from simulations.phantom.tissues import TissueTableConfig

GENERATOR_NAME: Final = "fedmm.phantom"
#: Bump whenever the same config would produce different voxels: it invalidates caches.
GENERATOR_VERSION: Final = "1.0.0"
MANIFEST_NAME: Final = "manifest.json"
LABEL_NAMES: Final = {
    "1": "necrotic / non-enhancing tumour core",
    "2": "peritumoral edema",
    "4": "enhancing tumour",
}


class GeneratorInfo(BaseModel):
    """Which code produced the phantom."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = GENERATOR_NAME
    version: str = GENERATOR_VERSION


class PhantomSubjectRecord(BaseModel):
    """One subject of the manifest."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(description="BraTS 2021 id, e.g. BraTS2021_00000")
    grade: Literal["HGG", "LGG", "none"]
    tumour_voxels: int = Field(ge=0, description="voxels with any label")
    label_voxels: dict[str, int] = Field(description="voxel count per label value 1, 2, 4")
    tumour_centre_voxel: tuple[int, int, int] | None = Field(
        description="centroid voxel of the tumour core (for previews); None without tumour"
    )
    brain_voxels: int = Field(ge=0)


class PhantomSiteRecord(BaseModel):
    """One simulated hospital: its folder name, scanner profile and subjects."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    profile: ScannerProfileConfig
    subjects: list[PhantomSubjectRecord]


class PhantomManifest(BaseModel):
    """Contents of `<out_dir>/manifest.json`, written last so its presence means complete."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    generator: GeneratorInfo = GeneratorInfo()
    cache_key: str
    config: PhantomConfig
    layout: Literal["brats2021"] = "brats2021"
    modalities: tuple[str, ...] = CONTRASTS
    labels: dict[str, str] = Field(default_factory=lambda: dict(LABEL_NAMES))
    shape: tuple[int, int, int]
    spacing_mm: float
    affine: list[list[float]] = Field(description="(4, 4) voxel-to-RAS-mm matrix")
    sites: list[PhantomSiteRecord]

    def subject_files(self, root: Path) -> list[Path]:
        """Every NIfTI file the manifest promises under `root`."""
        return [
            subject_file(root, site.name, subj.id, suffix)
            for site in self.sites
            for subj in site.subjects
            for suffix in (*CONTRASTS, "seg")
        ]


def subject_id(index: int) -> str:
    """BraTS 2021 id of the `index`-th subject (global over all sites)."""
    return f"BraTS2021_{index:05d}"


def site_name(index: int) -> str:
    """Folder name of the `index`-th site."""
    return f"site-{index}"


def subject_file(root: Path, site: str, subject: str, suffix: str) -> Path:
    """`<root>/<site>/<subject>/<subject>_<suffix>.nii.gz` (BraTS 2021 layout)."""
    return root / site / subject / f"{subject}_{suffix}.nii.gz"


def compute_cache_key(
    cfg: PhantomConfig, profiles: list[ScannerProfileConfig], table: TissueTableConfig
) -> str:
    """Hash of everything that decides the voxels: settings, profile and tissue contents, and
    the generator version (not the profiles file's path: moving it changes nothing)."""
    payload = {
        "generator": [GENERATOR_NAME, GENERATOR_VERSION],
        "config": cfg.model_dump(mode="json", exclude={"profiles_file"}),
        "profiles": [p.model_dump(mode="json") for p in profiles],
        "tissues": table.model_dump(mode="json"),
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


def read_manifest(root: Path) -> PhantomManifest | None:
    """The manifest under `root`, or None if there is none or it cannot be parsed."""
    path = root / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        return PhantomManifest.model_validate_json(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None
