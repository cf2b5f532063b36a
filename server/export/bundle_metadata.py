"""``configs/metadata.json`` of the MONAI bundle (MONAI Bundle Specification, metadata.json)."""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

import monai
import numpy as np
import torch

from server.export.network import REGIONS
from server.export.run_folder import RunFolder

#: The keys the specification makes mandatory in metadata.json, and in every tensor format
#: specifier of ``network_data_format`` (https://docs.monai.io/en/latest/mb_specification.html).
MANDATORY_KEYS: tuple[str, ...] = (
    "version", "monai_version", "pytorch_version", "numpy_version", "optional_packages_version",
    "task", "description", "authors", "copyright", "network_data_format",
)
TENSOR_KEYS: tuple[str, ...] = (
    "type", "format", "modality", "num_channels", "spatial_shape", "dtype", "value_range",
    "is_patch_data", "channel_def",
)
BUNDLE_VERSION = "0.1.0"


def intensity_scaling(run: RunFolder) -> str:
    """How pretraining scaled each modality, in words (client/data/transforms.py)."""
    return (f"per modality, the {run.data.percentile_low:g}th..{run.data.percentile_high:g}th "
            "percentiles of its nonzero (foreground) voxels map to 0..1, clipped; background "
            "stays 0 (fedmm's ForegroundPercentileScaled)")


def bundle_metadata(run: RunFolder, *, edge_multiple: int) -> dict[str, Any]:
    """metadata.json for the exported segmenter; nothing identifying (no sites, paths, counts).

    Args:
        run: the run folder being exported.
        edge_multiple: input edges must be multiples of this (``"16*n"`` in the shape).
    """
    shape = [f"{edge_multiple}*n"] * 3
    data = run.data
    return {
        "version": BUNDLE_VERSION,
        "changelog": {BUNDLE_VERSION: "exported by fedmm export from a federated pretraining run"},
        "monai_version": monai.__version__,
        "pytorch_version": torch.__version__.split("+")[0],
        "numpy_version": np.__version__,
        "optional_packages_version": {"nibabel": version("nibabel")},
        "required_packages_version": {"fedmm": version("fedmm")},
        "task": "Brain tumour segmentation (BraTS regions TC, WT, ET) from multimodal MRI",
        "description": (
            f"A U-Net whose encoder ({run.preset}) was pretrained with federated "
            f"self-supervised learning ({run.card.get('pretext', 'unknown pretext')}) by fedmm. "
            "Only the encoder is pretrained: the modality fusion layer starts as the mean of "
            "the per-modality features and the decoder is freshly initialised, so fine-tune "
            "the network on labelled data before using its predictions (docs/README.md)."
        ),
        "authors": "fedmm federated pretraining consortium",
        "copyright": "Copyright (c) the fedmm pretraining consortium",
        "intended_use": "Research only: initialisation for fine-tuning, not for diagnostic use",
        "data_type": "nibabel",
        "image_classes": f"{len(data.modalities)} MRI channels ({', '.join(data.modalities)})",
        "pred_classes": f"{len(REGIONS)} sigmoid channels: {', '.join(REGIONS)}",
        "network_data_format": {
            "inputs": {
                "image": {
                    "type": "image",
                    "format": "magnitude",
                    "modality": "MR",
                    "num_channels": len(data.modalities),
                    "spatial_shape": shape,
                    "dtype": "float32",
                    "value_range": [0, 1],
                    "is_patch_data": True,
                    "channel_def": {str(i): m for i, m in enumerate(data.modalities)},
                    # What pretraining used: fine-tune and infer with the same recipe.
                    "orientation": "RAS",
                    "pixdim": [data.spacing_mm] * 3,
                    "crop_size": [data.crop_size] * 3,
                    "intensity_scaling": intensity_scaling(run),
                },
            },
            "outputs": {
                "pred": {
                    "type": "image",
                    "format": "classes",
                    "modality": "n/a",
                    "num_channels": len(REGIONS),
                    "spatial_shape": shape,
                    "dtype": "float32",
                    "value_range": [],
                    "is_patch_data": True,
                    "channel_def": {str(i): r for i, r in enumerate(REGIONS)},
                },
            },
        },
    }
