"""nnU-Net v2 pretrained weights: the checkpoint ``-pretrained_weights`` loads, and its plan entry.

nnU-Net's ``load_pretrained_weights`` (nnunetv2/run/load_pretrained_weights.py) requires every
entry of the network it built, except the segmentation layers, in
``torch.load(file)["network_weights"]`` with the same name and shape. So the export builds
nnU-Net's own ``ResidualEncoderUNet`` (dynamic_network_architectures, with nnU-Net's
initialisation) from the plan entry it also writes, copies the pretrained encoder into it
and saves the whole state dict; the decoder keeps nnU-Net's initial weights.

M modalities: fedmm pretrains on one modality per volume, nnU-Net stacks M as channels, so
the stem's single-channel kernel is repeated over the M channels and divided by M (the
stem's InstanceNorm makes the scale irrelevant). That is the only shape nnU-Net's loader
takes; fedmm's own fine-tuning keeps per-modality features instead (docs/finetune.md).
"""

from __future__ import annotations

import json
import pydoc
from pathlib import Path
from typing import Any

import torch
from torch import nn

from server.export.run_folder import RunFolder
from shared.model import NNUNET_PRESETS, load_pretrained_encoder
from shared.model.nnunet_encoder import NnUNetPreset

NETWORK_CLASS = "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet"
KW_REQUIRES_IMPORT = ["conv_op", "norm_op", "dropout_op", "nonlin"]
CONFIGURATION = "3d_fullres_fedmm"
CHECKPOINT_FILE = "fedmm_pretrained.pth"
PLANS_FILE = "plans_configuration.json"
STEM_WEIGHT = "stem.convs.0.conv.weight"


def plan_configuration(preset: NnUNetPreset) -> dict[str, Any]:
    """The configuration to add to the ``configurations`` of the user's nnU-Net plans."""
    return {
        "inherits_from": "3d_fullres",
        "architecture": {
            "network_class_name": NETWORK_CLASS,
            "arch_kwargs": preset.arch_kwargs(),
            "_kw_requires_import": KW_REQUIRES_IMPORT,
        },
    }


def build_nnunet_network(architecture: dict[str, Any], *, input_channels: int,
                         num_classes: int) -> nn.Module:
    """The network nnU-Net builds from ``architecture`` (as its ``get_network_from_plans``)."""
    kwargs = dict(architecture["arch_kwargs"])
    for key in architecture["_kw_requires_import"]:
        if kwargs[key] is not None:
            kwargs[key] = pydoc.locate(kwargs[key])
    network_class: Any = pydoc.locate(architecture["network_class_name"])
    if network_class is None:
        raise ValueError(
            f"Expected nnU-Net's network code ({architecture['network_class_name']}) to be "
            "importable, but it is not installed. Install it with nnU-Net (`pip install "
            "nnunetv2==2.8.1`) or alone (`pip install --no-deps "
            "dynamic-network-architectures==0.4.4`), then run the export again."
        )
    net: Any = network_class(input_channels=input_channels, num_classes=num_classes,
                             deep_supervision=True, **kwargs)
    net.apply(net.initialize)  # nnU-Net's initialisation (He, last norm of each block 0)
    module: nn.Module = net
    return module


def nnunet_encoder_state(run: RunFolder, *, input_channels: int) -> dict[str, torch.Tensor]:
    """The run's encoder under nnU-Net's names, the stem inflated to ``input_channels``."""
    state = load_pretrained_encoder(run.encoder_path).state_dict()
    stem = state[STEM_WEIGHT]
    state[STEM_WEIGHT] = stem.repeat(1, input_channels, 1, 1, 1) / input_channels
    return state


def write_nnunet(run: RunFolder, out: Path) -> Path:
    """Write ``out/fedmm_pretrained.pth`` and ``out/plans_configuration.json``; return the
    checkpoint.

    Raises:
        ValueError: the run's encoder is not one of nnU-Net's (``NNUNET_PRESETS``), or
            nnU-Net's network code is not installed.
    """
    preset = NNUNET_PRESETS.get(run.preset)
    if preset is None:
        raise ValueError(
            f"Expected a run pretrained with an nnU-Net encoder preset "
            f"({', '.join(NNUNET_PRESETS)}), got {run.preset!r}. nnU-Net builds its own "
            "network from its plans, so only its residual encoder can take the weights. "
            "Pretrain with `[model] preset = \"nnunet-resenc-m\"` in the scenario TOML (or "
            "nnunet-resenc-cpu without a GPU), or export this run as monai-bundle, "
            "torchscript or onnx."
        )
    config = plan_configuration(preset)
    channels = len(run.modalities)
    net = build_nnunet_network(config["architecture"], input_channels=channels, num_classes=2)
    encoder: nn.Module = net.encoder  # type: ignore[assignment]
    result = encoder.load_state_dict(nnunet_encoder_state(run, input_channels=channels),
                                     strict=False)
    # Only nnU-Net's second name for each conv/norm pair may be left out (same tensors).
    not_aliases = [k for k in result.missing_keys if ".all_modules." not in k]
    if not_aliases or result.unexpected_keys:
        raise ValueError(
            f"Expected the {run.preset} encoder to match nnU-Net's ResidualEncoder, but "
            f"entries are missing {not_aliases[:5]} or unexpected {result.unexpected_keys[:5]}. "
            "Use the dynamic-network-architectures version fedmm pins (0.4.4)."
        )
    out.mkdir(parents=True, exist_ok=True)
    path = out / CHECKPOINT_FILE
    torch.save({"network_weights": net.state_dict(),
                "fedmm": {"preset": run.preset, "modalities": list(run.modalities)}}, path)
    plans = {"configurations": {CONFIGURATION: config},
             "fedmm_input_channels": list(run.modalities)}
    (out / PLANS_FILE).write_text(json.dumps(plans, indent=2) + "\n")
    return path
