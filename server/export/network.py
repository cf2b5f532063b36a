"""The network every export format holds: fedmm's U-Net around the pretrained encoder."""

from __future__ import annotations

import torch

from server.export.run_folder import RunFolder
from shared.model import build_segmenter
from shared.model.unet import EncoderUNet

#: BraTS regions, the outputs (sigmoid, one channel each) of the exported segmenter.
REGIONS: tuple[str, ...] = ("TC (tumour core)", "WT (whole tumour)", "ET (enhancing tumour)")
#: Decoder initialisation seed, so two exports of one run are byte-identical.
DECODER_SEED = 0


def build_export_network(run: RunFolder) -> EncoderUNet:
    """``(N, M, D, H, W) -> (N, 3, D, H, W)``: M = the run's modalities, stacked in order.

    The encoder holds the pretrained weights; the modality fusion layer starts as the mean
    of the per-modality features and the decoder is freshly initialised (seeded), so the
    network must be fine-tuned on labels before its outputs mean anything.
    """
    torch.manual_seed(DECODER_SEED)
    net = build_segmenter(run.encoder_path, in_channels=len(run.modalities),
                          out_channels=len(REGIONS))
    return net.eval()


def min_edge(net: EncoderUNet) -> int:
    """Input edges must be multiples of this (every stride-2 stage halves them)."""
    return int(net.encoder.encoder.min_input_size)
