"""Config validation: clear errors for bad input, aliases, JSON round trip."""

from __future__ import annotations

import pytest

from shared.config import ConfigError, RunConfig, validate_run_config
from shared.modalities import canonical_modality


def test_defaults_round_trip_through_json() -> None:
    cfg = RunConfig()
    assert RunConfig.from_json(cfg.to_json()) == cfg


def test_unknown_key_suggests_closest() -> None:
    with pytest.raises(ConfigError, match=r"federation.num_round.*Did you mean 'num_rounds'"):
        validate_run_config({"federation": {"num_round": 3}}, source="test")


def test_bad_value_names_field_and_value() -> None:
    with pytest.raises(ConfigError, match=r"train.local_steps.*got 0"):
        validate_run_config({"train": {"local_steps": 0}}, source="test")


def test_relative_out_dir_is_refused() -> None:
    with pytest.raises(ConfigError, match="absolute"):
        validate_run_config({"out_dir": "runs/x"}, source="test")


def test_modality_aliases_are_canonical() -> None:
    cfg = validate_run_config({"data": {"modalities": ["t1n", "t1c", "t2w", "t2f"]}}, source="t")
    assert cfg.data.modalities == ("t1", "t1ce", "t2", "flair")
    assert canonical_modality("T1GD") == "t1ce"
    with pytest.raises(ValueError, match="Did you mean 'flair'"):
        canonical_modality("flaire")


def test_duplicate_modalities_after_aliasing_are_refused() -> None:
    with pytest.raises(ConfigError, match="distinct"):
        validate_run_config({"data": {"modalities": ["t1", "t1n"]}}, source="t")


def test_unknown_pretext_is_refused() -> None:
    with pytest.raises(ConfigError, match="pretext"):
        validate_run_config({"pretext": {"name": "jigsaw"}}, source="t")


def test_invalid_json_names_source() -> None:
    with pytest.raises(ConfigError, match="from server: expected JSON"):
        RunConfig.from_json("{nope", source="run config from server")
