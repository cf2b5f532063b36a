"""The fedmm ServerApp: validate the run config once, then run the round protocol."""

from __future__ import annotations

import logging

import torch
from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from server.protocol import run_pretraining
from shared.config import ModelConfig, RunConfig
from shared.model import check_crop_size, resolve_preset
from shared.wire_keys import RUN_CONFIG_KEY

log = logging.getLogger("flwr.fedmm.server")

app = ServerApp()


def resolve_run_config(run_config: dict[str, object]) -> tuple[RunConfig, str]:
    """Validate Flower's run_config and fix the encoder preset for every site.

    ``model.preset = "auto"`` is resolved here, once, so that all sites build the same
    encoder whatever hardware each one has.
    """
    cfg = RunConfig.from_json(str(run_config.get(RUN_CONFIG_KEY, "")),
                              source=f"run_config[{RUN_CONFIG_KEY!r}]")
    preset = resolve_preset(cfg.model, cuda_available=torch.cuda.is_available())
    check_crop_size(preset, cfg.data.crop_size)
    cfg = cfg.model_copy(update={"model": ModelConfig(**{**cfg.model.model_dump(), "preset": preset})})
    return cfg, preset


@app.main()
def main(grid: Grid, context: Context) -> None:
    cfg, preset = resolve_run_config(dict(context.run_config))
    log.info("fedmm run: %d rounds, pretext %s, encoder %s, out %s", cfg.federation.num_rounds,
             "+".join(cfg.pretext_names), preset, cfg.out_dir)
    path = run_pretraining(grid, cfg, preset=preset)
    log.info("Exported the pretrained encoder to %s", path)
