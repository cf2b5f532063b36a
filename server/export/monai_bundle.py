"""Writes a MONAI bundle (MONAI Bundle Specification) around the run's pretrained encoder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from server.export.bundle_metadata import bundle_metadata
from server.export.bundle_readme import bundle_readme
from server.export.network import REGIONS, build_export_network, min_edge
from server.export.run_folder import RunFolder

LICENSE_TEXT = """\
The weights in models/ were pretrained by the fedmm consortium that ran this federation.
They are released for research use only, not for clinical or diagnostic use, under the
terms the consortium's sites agreed for the pretraining run; ask the consortium's
coordinator for those terms before redistributing the weights. The code that builds the
network is fedmm's (see its own license).
"""


def inference_config(run: RunFolder, *, roi_edge: int) -> dict[str, Any]:
    """``configs/inference.json``: the network, its weights, pretraining's preprocessing.

    ``network_def`` builds the same segmenter from scratch (``encoder: null``); the
    ``initialize`` step loads ``models/model.pt`` (pretrained encoder, initial decoder) into
    ``network``. Preprocessing repeats pretraining's recipe for one study given as one file
    per modality: ``{"t1": path, "t1ce": path, ...}``.
    """
    mods = list(run.modalities)
    data = run.data
    return {
        "imports": ["$import torch", "$import shared.model", "$import client.data.transforms"],
        "bundle_root": ".",
        "device": "$torch.device('cuda' if torch.cuda.is_available() else 'cpu')",
        "modalities": mods,
        "network_def": {
            "_target_": "shared.model.build_segmenter",
            "encoder": None,
            "in_channels": len(mods),
            "out_channels": len(REGIONS),
            "preset": run.preset,
        },
        "network": "$@network_def.to(@device)",
        "load_weights": "$@network.load_state_dict(torch.load(@bundle_root + '/models/model.pt',"
                        " map_location=@device, weights_only=True))",
        "initialize": ["$@load_weights"],
        "preprocessing": {
            "_target_": "Compose",
            "transforms": [
                {"_target_": "LoadImaged", "keys": "@modalities", "image_only": True},
                {"_target_": "EnsureChannelFirstd", "keys": "@modalities",
                 "channel_dim": "no_channel"},
                {"_target_": "Orientationd", "keys": "@modalities", "axcodes": "RAS",
                 "labels": None},
                {"_target_": "Spacingd", "keys": "@modalities",
                 "pixdim": [data.spacing_mm] * 3, "mode": "bilinear"},
                {"_target_": "ConcatItemsd", "keys": "@modalities", "name": "image", "dim": 0},
                {"_target_": "client.data.transforms.ForegroundPercentileScaled",
                 "keys": "image", "lower": data.percentile_low, "upper": data.percentile_high},
                {"_target_": "EnsureTyped", "keys": "image", "dtype": "$torch.float32"},
            ],
        },
        "inferer": {
            "_target_": "SlidingWindowInferer",
            "roi_size": [roi_edge] * 3,
            "sw_batch_size": 1,
            "overlap": 0.5,
        },
        "postprocessing": {
            "_target_": "Compose",
            "transforms": [
                {"_target_": "Activations", "sigmoid": True},
                {"_target_": "AsDiscrete", "threshold": 0.5},
            ],
        },
    }


def write_monai_bundle(run: RunFolder, out: Path) -> Path:
    """Write ``out/`` as a MONAI bundle; return the folder.

    Layout: ``configs/metadata.json``, ``configs/inference.json``, ``models/model.pt`` (the
    segmenter's state dict), ``docs/README.md`` (the model card), ``LICENSE``.
    """
    net = build_export_network(run)
    edge = min_edge(net)
    roi_edge = max(edge, -(-run.data.crop_size // edge) * edge)  # crop size, rounded up
    (out / "configs").mkdir(parents=True, exist_ok=True)
    (out / "models").mkdir(exist_ok=True)
    (out / "docs").mkdir(exist_ok=True)
    (out / "configs" / "metadata.json").write_text(
        json.dumps(bundle_metadata(run, edge_multiple=edge), indent=2) + "\n")
    (out / "configs" / "inference.json").write_text(
        json.dumps(inference_config(run, roi_edge=roi_edge), indent=2) + "\n")
    torch.save(net.state_dict(), out / "models" / "model.pt")
    (out / "docs" / "README.md").write_text(bundle_readme(run))
    (out / "LICENSE").write_text(LICENSE_TEXT)
    return out
