"""The bundle's ``docs/README.md``: the model card in words, with nothing that identifies a site."""

from __future__ import annotations

from typing import Any

from server.export.bundle_metadata import intensity_scaling
from server.export.run_folder import RunFolder


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def privacy_lines(card: dict[str, Any]) -> list[str]:
    """The privacy figures of the card: statistics release epsilon and update DP, if any."""
    stats = card.get("statistics_privacy") or {}
    lines = []
    if stats:
        lines.append(f"- Image statistics (round 0): {stats.get('definition', 'epsilon-DP')} "
                     f"(privacy unit: {stats.get('unit', 'patient')}); largest epsilon of one "
                     "site's release "
                     f"{_fmt(stats.get('max_epsilon'))}, sum over sites "
                     f"{_fmt(stats.get('total_epsilon'))}.")
    update = card.get("update_privacy") or {}
    if update.get("enabled") is False or not update:
        lines.append("- Encoder updates: no differential privacy on updates (only encoder "
                     "weights left the sites).")
    else:
        lines.append(f"- Encoder updates: {update.get('mechanism', 'DP')}; epsilon "
                     f"{_fmt(update.get('epsilon'))}, delta {_fmt(update.get('delta'))}.")
    return lines


def bundle_readme(run: RunFolder) -> str:
    """Markdown model card. Only aggregate figures: no site names, paths or study counts."""
    card, data = run.card, run.data
    final = card.get("final_metrics") or {}
    mods = ", ".join(data.modalities)
    return "\n".join([
        "# fedmm federated pretrained brain-MRI segmenter",
        "",
        "A U-Net for the BraTS regions (TC, WT, ET; one sigmoid channel each) whose encoder was",
        "pretrained with federated self-supervised learning by fedmm. Only the encoder is",
        "pretrained; the decoder is freshly initialised. **Fine-tune before use**; research",
        "use only, not for diagnosis.",
        "",
        "## Pretraining",
        "",
        f"- Encoder preset: {run.preset} ({_fmt(card.get('parameters', '?'))} parameters)",
        f"- Sites: {card.get('sites', '?')}; federated rounds: {card.get('rounds', '?')}; "
        f"aggregation: {card.get('strategy', '?')}",
        f"- Pretext tasks: {card.get('pretext', '?')}",
        f"- Final self-supervised losses: train {_fmt(final.get('train_loss'))}, held-out "
        f"{_fmt(final.get('eval_loss'))}",
        f"- Site-local parameters: {card.get('site_local', 'none')}",
        "- Downstream benchmark: none was run for this export; fedmm's own "
        "`fedmm finetune` measures it (scratch vs this encoder on a held-out site).",
        "",
        "## Privacy",
        "",
        *privacy_lines(card),
        "",
        "## Input",
        "",
        f"- Channels, in this order: {mods} (one MRI modality per channel)",
        f"- Orientation RAS, isotropic spacing {data.spacing_mm:g} mm",
        f"- Intensity: {intensity_scaling(run)}",
        f"- Pretraining crops: {data.crop_size}^3 voxels; edges must be multiples of the "
        "encoder's total stride (see metadata.json `spatial_shape`)",
        "",
        "## Use",
        "",
        "```bash",
        "# fedmm must be importable (shared.model.build_segmenter builds the network):",
        "# in a fedmm checkout, pip install -e '.[export]' (the export extra adds MONAI's CLI)",
        "python -m monai.bundle verify_net_in_out network_def --meta_file configs/metadata.json "
        "--config_file configs/inference.json --n 2",
        "```",
        "",
        "```python",
        "from monai.bundle import ConfigParser",
        "parser = ConfigParser()",
        "parser.read_config('configs/inference.json')",
        "parser['bundle_root'] = '.'",
        "parser.get_parsed_content('initialize')      # loads models/model.pt",
        "net = parser.get_parsed_content('network')",
        "```",
        "",
        "Fine-tune it with MONAI's `SupervisedTrainer` or `fedmm finetune` (fedmm's "
        "docs/finetune.md).",
        "",
    ])
