"""The MONAI bundle: MONAI's own checks, the specification's mandatory keys, ConfigParser."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser

from server.export import export_run
from server.export.bundle_metadata import MANDATORY_KEYS, TENSOR_KEYS
from shared.model import load_pretrained_encoder
from tests.server.export.conftest import MODALITIES, SECRET_PATH


@pytest.fixture(scope="module")
def bundle(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_run(run_dir, fmt="monai-bundle", out=tmp_path_factory.mktemp("bundle"))


def test_bundle_has_the_specified_layout(bundle: Path) -> None:
    for rel in ("configs/metadata.json", "configs/inference.json", "models/model.pt",
                "docs/README.md", "LICENSE"):
        assert (bundle / rel).is_file(), rel


def test_metadata_has_every_mandatory_key_of_the_specification(bundle: Path) -> None:
    # verify_metadata downloads its JSON schema (no network here), so the mandatory keys
    # of the MONAI Bundle Specification are checked directly.
    meta = json.loads((bundle / "configs/metadata.json").read_text())
    assert not set(MANDATORY_KEYS) - set(meta)
    assert isinstance(meta["optional_packages_version"], dict)
    fmt = meta["network_data_format"]
    for spec in (fmt["inputs"]["image"], fmt["outputs"]["pred"]):
        assert not set(TENSOR_KEYS) - set(spec)
    image = fmt["inputs"]["image"]
    assert image["channel_def"] == {str(i): m for i, m in enumerate(MODALITIES)}
    assert image["num_channels"] == 4
    assert image["pixdim"] == [2.0, 2.0, 2.0] and image["crop_size"] == [32, 32, 32]
    assert "99.5" in image["intensity_scaling"]


def test_monai_verify_net_in_out_passes(bundle: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "monai.bundle", "verify_net_in_out", "network_def",
         "--meta_file", str(bundle / "configs/metadata.json"),
         "--config_file", str(bundle / "configs/inference.json"), "--device", "cpu", "--n", "2"],
        capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[3],
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "data shape of network is verified with no error" in proc.stdout + proc.stderr


def test_config_parser_builds_the_pretrained_network(bundle: Path, run_dir: Path) -> None:
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs/inference.json"))
    parser["bundle_root"] = str(bundle)
    parser["device"] = "$torch.device('cpu')"
    parser.get_parsed_content("initialize")
    net = parser.get_parsed_content("network").eval()
    saved = torch.load(bundle / "models/model.pt", weights_only=True)
    pretrained = load_pretrained_encoder(run_dir / "encoder.safetensors").state_dict()
    for key, value in pretrained.items():
        torch.testing.assert_close(net.encoder.encoder.state_dict()[key], value)
        torch.testing.assert_close(saved[f"encoder.encoder.{key}"], value)
    with torch.no_grad():
        out = parser.get_parsed_content("inferer")(torch.rand(1, 4, 40, 36, 32), net)
    assert out.shape == (1, 3, 40, 36, 32) and torch.isfinite(out).all()


def test_preprocessing_repeats_pretrainings_recipe(bundle: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    study = {}
    for m in MODALITIES:
        vol = np.zeros((20, 20, 20), np.float32)
        vol[4:16, 4:16, 4:16] = rng.uniform(10, 100, (12, 12, 12))
        nib.save(nib.Nifti1Image(vol, np.diag([1.0, 1.0, 1.0, 1.0])), tmp_path / f"{m}.nii.gz")
        study[m] = str(tmp_path / f"{m}.nii.gz")
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs/inference.json"))
    image = parser.get_parsed_content("preprocessing")(study)["image"]
    assert image.shape == (4, 10, 10, 10)  # 1 mm -> 2 mm
    assert float(image.min()) == 0.0 and float(image.max()) == 1.0


def test_model_card_names_no_site_and_no_path(bundle: Path) -> None:
    text = "\n".join((bundle / rel).read_text() for rel in
                     ("docs/README.md", "configs/metadata.json", "configs/inference.json"))
    assert SECRET_PATH not in text and "hospital-secret" not in text
    readme = (bundle / "docs/README.md").read_text()
    assert "Sites: 4" in readme and "rounds: 3" in readme and "plane_intersection" in readme
    assert "epsilon" in readme


def test_export_refuses_a_folder_without_an_encoder(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"missing \['encoder.safetensors', 'model_card.json'\]"
                                         r".*simulate --resume"):
        export_run(tmp_path, fmt="monai-bundle", out=tmp_path / "out")


def test_unknown_format_lists_the_valid_ones(run_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"Unknown export format 'onx'.*Did you mean 'onnx'"):
        export_run(run_dir, fmt="onx", out=tmp_path)
