"""The dataset-adapter registry and the records every adapter returns."""

from __future__ import annotations

from pathlib import Path

import pytest

import client.data.adapter as adapter_module
from client.data import (
    DataProblem,
    DatasetAdapter,
    Discovery,
    available_adapters,
    get_adapter,
    register_adapter,
)


@pytest.fixture
def isolated_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let a test register adapters without leaking them into the real registry."""
    monkeypatch.setattr(adapter_module._REGISTRY, "_items", dict(adapter_module._REGISTRY._items))


def test_brats2021_is_registered() -> None:
    assert "brats2021" in available_adapters()
    adapter = get_adapter("brats2021")
    assert isinstance(adapter, DatasetAdapter)
    assert adapter.name == "brats2021"


def test_unknown_name_lists_available_and_suggests_closest() -> None:
    with pytest.raises(ValueError, match="brats2021") as err:
        get_adapter("brats_2021")  # a typo close to one layout only
    message = str(err.value)
    assert "Did you mean 'brats2021'" in message
    assert "data.layout" in message


@pytest.mark.usefixtures("isolated_registry")
def test_register_refuses_duplicates() -> None:
    @register_adapter("toy")
    class ToyAdapter:
        name = "toy"

        def discover(self, root: Path) -> Discovery:
            return Discovery(studies=())

    assert "toy" in available_adapters()
    assert isinstance(get_adapter("toy"), ToyAdapter)
    with pytest.raises(ValueError, match="already registered"):
        register_adapter("toy")(ToyAdapter)


@pytest.mark.usefixtures("isolated_registry")
def test_register_refuses_a_mismatched_name() -> None:
    class Misnamed:
        name = "other"

        def discover(self, root: Path) -> Discovery:
            return Discovery(studies=())

    with pytest.raises(ValueError, match="name = 'toy2'"):
        register_adapter("toy2")(Misnamed)


def test_data_problem_is_one_readable_line() -> None:
    problem = DataProblem(
        path=Path("/site/BraTS2021_00001/x.nii.gz"),
        problem="expected a readable NIfTI volume,\ngot an error: bad gzip",
        fix="re-export it.",
    )
    text = str(problem)
    assert "\n" not in text
    assert text.startswith("/site/BraTS2021_00001/x.nii.gz: expected")
    assert text.endswith("Fix: re-export it.")


@pytest.mark.parametrize("name", available_adapters())
def test_every_adapter_rejects_missing_and_empty_roots(name: str, tmp_path: Path) -> None:
    adapter = get_adapter(name)
    with pytest.raises(ValueError, match="Fix"):
        adapter.discover(tmp_path / "does-not-exist")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="Fix"):
        adapter.discover(tmp_path / "empty")
