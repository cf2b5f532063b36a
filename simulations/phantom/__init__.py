"""Realistic multi-site brain-tumour MRI phantom built from nilearn's MNI152 template."""

from __future__ import annotations

from simulations.phantom.config import PhantomConfig
from simulations.phantom.generate import generate_phantom
from simulations.phantom.manifest import PhantomManifest
from simulations.phantom.preview import write_preview

__all__ = ["PhantomConfig", "PhantomManifest", "generate_phantom", "write_preview"]
