"""benchmarks/throughput.py: its refusal on a busy machine and its statistics (no timing asserted)."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest

from simulations import benchmark_provenance
from simulations.benchmark_provenance import BusyMachineError, require_idle


def test_a_busy_machine_is_refused_unless_allowed() -> None:
    with pytest.raises(BusyMachineError, match=r"load average is 9 on 2 cores.*--allow-busy"):
        require_idle(allow_busy=False, load_1min=9.0, cores=2)
    state = require_idle(allow_busy=True, load_1min=9.0, cores=2)
    assert state == {"load_1min": 9.0, "cores": 2, "busy": True, "allowed_busy": True}
    idle = require_idle(allow_busy=False, load_1min=2.0, cores=2)  # at the core count: not busy
    assert idle["busy"] is False and idle["allowed_busy"] is False


def test_main_writes_nothing_on_a_busy_machine(throughput: ModuleType, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(benchmark_provenance.os, "getloadavg", lambda: (99.0, 0.0, 0.0))
    out = tmp_path / "throughput.json"
    assert throughput.main(["--out", str(out)]) == 3
    assert not out.exists() and "nothing was measured or written" in capsys.readouterr().err


def test_spread_and_ratio_of_medians(throughput: ModuleType) -> None:
    plain, fed = [2.0, 1.0, 3.0, 10.0, 2.5], [1.8, 2.4, 0.5, 2.0, 2.2]
    assert throughput.spread(plain) == {"min": 1.0, "median": 2.5, "max": 10.0, "values": plain}
    assert throughput.ratio_of_medians(fed, plain) == pytest.approx(2.0 / 2.5)
    with pytest.raises(ValueError, match="at least one"):
        throughput.spread([])


def test_loops_alternate_which_goes_first(throughput: ModuleType) -> None:
    order: list[str] = []
    a, b = throughput.interleave(4, lambda r: order.append(f"a{r}") or 1.0,
                                 lambda r: order.append(f"b{r}") or 2.0)
    assert order == ["a0", "b0", "b1", "a1", "a2", "b2", "b3", "a3"]
    assert a == [1.0] * 4 and b == [2.0] * 4


def test_fewer_than_five_repeats_are_refused(throughput: ModuleType) -> None:
    with pytest.raises(SystemExit):
        throughput.parse_args(["--repeats", "3"])


def test_both_loops_train_the_default_mixture(throughput: ModuleType) -> None:
    cfg = throughput.run_config(throughput.parse_args([]))
    from shared.config import RunConfig

    assert cfg.pretext == RunConfig().pretext and len(cfg.pretext) == 2
    assert cfg.data.crop_size == RunConfig().data.crop_size


def test_channels_last_and_compile_reach_both_loops_config(throughput: ModuleType) -> None:
    plain = throughput.run_config(throughput.parse_args([]))
    assert not plain.train.channels_last and not plain.train.compile
    both = throughput.run_config(throughput.parse_args(["--channels-last", "--compile"]))
    assert both.train.channels_last and both.train.compile
    assert plain.train.prefetch == "auto"
    assert throughput.run_config(throughput.parse_args(["--prefetch", "off"])).train.prefetch == "off"


def test_a_copy_without_git_names_the_given_commit_as_given(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(benchmark_provenance, "ROOT", tmp_path)  # no repository here
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    monkeypatch.delenv(benchmark_provenance.COMMIT_ENV, raising=False)
    assert benchmark_provenance.code_commit() == "unknown"
    monkeypatch.setenv(benchmark_provenance.COMMIT_ENV, "abc123")
    assert benchmark_provenance.code_commit() == "abc123 (given by FEDMM_CODE_COMMIT: no git checkout)"


def test_a_git_checkout_ignores_the_given_commit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(benchmark_provenance.COMMIT_ENV, "abc123")
    assert "abc123" not in benchmark_provenance.code_commit()
