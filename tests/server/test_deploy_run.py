"""`fedmm server run` before anything is submitted: the run file, the output folder, resume."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.checkpoints import CheckpointStore
from server.deploy_config import ServerDeployConfig, ServerPaths
from server.deploy_run import describe_round, output_dir, prepare_run_config
from shared.config import ConfigError

RUN = """
seed = 3
[data]
crop_size = 16
[federation]
num_rounds = 2
"""


@pytest.fixture
def run_toml(tmp_path: Path) -> Path:
    path = tmp_path / "pretrain.toml"
    path.write_text(RUN)
    return path


def test_output_folder_defaults_to_runs_dir_and_file_name(run_toml: Path, tmp_path: Path) -> None:
    server = ServerDeployConfig(paths=ServerPaths(runs_dir=tmp_path / "runs"))
    assert output_dir(server, run_toml, None) == (tmp_path / "runs" / "pretrain").resolve()
    assert output_dir(server, run_toml, tmp_path / "x") == (tmp_path / "x").resolve()


def test_the_run_file_is_a_run_config(run_toml: Path, tmp_path: Path) -> None:
    cfg = prepare_run_config(run_toml, out_dir=tmp_path / "out", resume=False)
    assert cfg.seed == 3 and cfg.data.crop_size == 16 and cfg.federation.num_rounds == 2
    assert cfg.out_dir == tmp_path / "out" and not cfg.resume and cfg.sites is None


@pytest.mark.parametrize(("extra", "match"), [
    ('out_dir = "/x"\n', "set by `fedmm server run`"),
    ("[simulation]\nsites = 2\n", r"\[simulation\] table"),
    ("[federation.extra]\nx = 1\n", "federation.extra"),
], ids=["owned-field", "simulation-table", "unknown-setting"])
def test_bad_run_files_are_refused(tmp_path: Path, extra: str, match: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(extra + RUN if not extra.startswith("[") else RUN + extra)
    with pytest.raises(ConfigError, match=match):
        prepare_run_config(path, out_dir=tmp_path / "out", resume=False)


def test_resume_needs_a_checkpoint_and_a_new_run_needs_an_empty_folder(run_toml: Path,
                                                                       tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match="--resume"):
        prepare_run_config(run_toml, out_dir=out, resume=True)
    cfg = prepare_run_config(run_toml, out_dir=out, resume=False)
    CheckpointStore(out).save_round(0, {}, None, config_json=cfg.to_json())
    with pytest.raises(ConfigError, match="already holds a run"):
        prepare_run_config(run_toml, out_dir=out, resume=False)
    assert prepare_run_config(run_toml, out_dir=out, resume=True).resume
    run_toml.write_text(RUN.replace("num_rounds = 2", "num_rounds = 4"))  # more rounds: fine
    assert prepare_run_config(run_toml, out_dir=out, resume=True).federation.num_rounds == 4
    run_toml.write_text(RUN.replace("crop_size = 16", "crop_size = 32"))
    with pytest.raises(ConfigError, match=r"changes \['data'\]"):
        prepare_run_config(run_toml, out_dir=out, resume=True)


def test_round_lines_name_missing_sites() -> None:
    line = describe_round({"round": 2, "seconds": 80.0, "train": {
        "aggregated": True, "loss": 0.5, "sites": {"1": {}, "2": {}},
        "failures": [{"node": "3", "reason": "no reply before the round deadline"}]},
        "evaluate": {"loss": None}})
    assert "round 2" in line and "2 sites" in line and "0.5000" in line
    assert "without a usable reply: ['3: no reply before the round deadline']" in line
    kept = describe_round({"round": 3, "train": {"aggregated": False, "reason": "the aggregate has NaN",
                                                 "sites": {}, "failures": []}, "evaluate": {}})
    assert "(not aggregated: the aggregate has NaN)" in kept
