"""Downstream networks from an exported encoder: fusion stem, U-Net, classifier, MONAI loop."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from monai.engines import SupervisedTrainer
from monai.losses import DiceCELoss

from server.checkpoints import export_encoder
from shared.model import build_classifier, build_encoder, build_segmenter
from shared.model.fusion import ModalityFusionEncoder


@pytest.fixture
def exported(tmp_path: Path) -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(0)
    enc = build_encoder("cpu-small")
    path, _ = export_encoder(tmp_path, enc.state_dict(), preset="cpu-small", card={})
    return path, enc


def test_fusion_starts_as_the_mean_of_pretrained_per_modality_features(exported) -> None:
    path, enc = exported
    fused = build_segmenter(path, in_channels=3, out_channels=2).encoder
    assert isinstance(fused, ModalityFusionEncoder)
    x = torch.rand(2, 3, 32, 32, 32)
    per_mod = torch.stack([enc.stages[0](x[:, m:m + 1]) for m in range(3)]).mean(0)
    torch.testing.assert_close(fused.forward_features(x)[0], per_mod)


def test_pretrained_weights_are_loaded(exported) -> None:
    path, enc = exported
    net = build_segmenter(path, in_channels=4, out_channels=3)
    for k, v in enc.state_dict().items():
        torch.testing.assert_close(net.encoder.encoder.state_dict()[k], v)


def test_shapes_and_fusion_learns(exported) -> None:
    path, _ = exported
    net = build_segmenter(path, in_channels=4, out_channels=3)
    out = net(torch.rand(1, 4, 32, 32, 32))
    assert out.shape == (1, 3, 32, 32, 32)
    out.mean().backward()
    assert net.encoder.fuse.weight.grad is not None and net.encoder.fuse.weight.grad.abs().sum() > 0
    clf = build_classifier(path, in_channels=4, num_classes=2)
    assert clf(torch.rand(2, 4, 32, 32, 32)).shape == (2, 2)


@pytest.mark.parametrize(("preset", "multiple", "size"), [("cpu-small", 16, (24, 20, 17)),
                                                         ("gpu-base", 32, (48, 48, 48))])
def test_any_crop_size_works_edges_off_the_multiple_are_padded(preset: str, multiple: int,
                                                               size: tuple[int, int, int]) -> None:
    """gpu-base halves each edge 5 times: fedmm finetune's default crop (48) once failed on
    CUDA with a size mismatch in the up path."""
    torch.manual_seed(0)
    net = build_segmenter(None, in_channels=2, out_channels=3, preset=preset)
    assert net.size_multiple == multiple
    x = torch.rand(1, 2, *size, requires_grad=True)
    out = net(x)
    assert out.shape == (1, 3, *size)
    out.mean().backward()
    assert x.grad is not None and bool((x.grad != 0).all())  # every input voxel reaches the logits


def test_an_edge_off_the_multiple_sees_zeros_on_both_sides(exported) -> None:
    path, _ = exported
    net = build_segmenter(path, in_channels=1, out_channels=1).eval()
    x = torch.rand(1, 1, 40, 40, 40)  # cpu-small: padded to 48, 4 voxels on each side
    with torch.no_grad():
        by_hand = net(torch.nn.functional.pad(x, [4] * 6))[..., 4:44, 4:44, 4:44]
        torch.testing.assert_close(net(x), by_hand)


def test_wrong_modality_count_is_refused(exported) -> None:
    path, _ = exported
    with pytest.raises(ValueError, match=r"expected \(N, 4, D, H, W\)"):
        build_segmenter(path, in_channels=4, out_channels=3)(torch.rand(1, 2, 32, 32, 32))


def test_fine_tune_with_monais_own_training_loop(exported) -> None:
    """The README's recipe: load in three lines, then MONAI's SupervisedTrainer."""
    path, _ = exported
    from shared.model import build_segmenter as build  # line 1

    net = build(path, in_channels=4, out_channels=3)  # line 2 (line 3: use it)
    data = [{"image": torch.rand(4, 32, 32, 32), "label": (torch.rand(3, 32, 32, 32) > 0.7).float()}
            for _ in range(2)]
    loader = torch.utils.data.DataLoader(data, batch_size=2)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    trainer = SupervisedTrainer(
        device=torch.device("cpu"), max_epochs=2, train_data_loader=loader, network=net,
        optimizer=torch.optim.Adam(net.parameters(), 1e-3), loss_function=DiceCELoss(sigmoid=True),
    )
    trainer.run()
    assert any(not torch.equal(before[k], v) for k, v in net.state_dict().items())
