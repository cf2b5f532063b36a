"""A malicious site in real Flower simulations: the run survives it, and metrics.json names it.

The fast case (CI) runs the clean and the attacked simulation of FedAvg with three sites
side by side; the full campaign (``slow``: every robust strategy at three and five sites)
is what docs/privacy.md's table shows (tests/integration/malicious/campaign.py).
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from server.update_checks import Candidate, screen_round
from tests.integration.malicious.app_copy import APP_LINE, MALICIOUS_LINE, malicious_app
from tests.integration.malicious.attacks import TRAIN_ATTACKS, corrupt_stats, corrupt_train
from tests.integration.malicious.campaign import (
    ATTACKS,
    CASES,
    DOC,
    EXPECTED_CHECK,
    FAST_CASE,
    PLAN,
    RESULTS,
    SIGNFLIP_SCALE,
    UNPAIRED_BOUND,
    evaluate_case,
    prepare_phantom,
    render_table,
    run_campaign,
    run_case_process,
)
from tests.integration.test_simulate import leftover_processes

# ------------------------------------------------------------------ the campaign's parts


def test_every_training_attack_fails_the_server_check_the_campaign_expects() -> None:
    rng = np.random.default_rng(0)
    sent = {"encoder.w": rng.normal(size=(4, 4)).astype(np.float32), "encoder.b": np.zeros(4, np.float32)}
    honest = [{k: v + 0.01 * rng.normal(size=v.shape).astype(np.float32) for k, v in sent.items()}
              for _ in range(3)]
    for attack in TRAIN_ATTACKS:
        bad, metrics = corrupt_train(attack, sent, honest[2], {"num-examples": 10},
                                     signflip_scale=SIGNFLIP_SCALE)
        verdicts = screen_round([Candidate("1", honest[0], 10), Candidate("2", honest[1], 10),
                                 Candidate("3", bad, metrics["num-examples"])],
                                sent=sent, max_update_norm_ratio=10.0, max_weight_ratio=2.0)
        assert [str(v.rejected) for v in verdicts] == ["None", "None", EXPECTED_CHECK[attack]], attack


def test_the_statistics_attack_writes_a_nan_into_a_histogram_or_the_epsilon() -> None:
    text = json.dumps({"epsilon": 2.0, "modalities": {"t1": {"histogram": [0.5, 0.5]}}})
    assert json.loads(corrupt_stats("stats-nan", text))["modalities"]["t1"]["histogram"][0] != 0.5
    assert "NaN" in corrupt_stats("stats-nan", text)
    withheld = json.loads(corrupt_stats("stats-nan", json.dumps({"epsilon": 2.0, "modalities": {}})))
    assert withheld["epsilon"] != withheld["epsilon"] and withheld["modalities"] == {}


def test_the_plan_has_one_attack_per_round() -> None:
    assert list(PLAN.values()) == list(ATTACKS) and PLAN[0] == "stats-nan"
    assert set(EXPECTED_CHECK) == set(ATTACKS)


def test_the_app_copy_wraps_the_client_app_and_leaves_the_installed_app_alone(tmp_path: Path) -> None:
    from shared.app_bundle import app_dir

    app = malicious_app(tmp_path / "app", plan={1: "nan"}, partition=2, marker=tmp_path / "m",
                        signflip_scale=SIGNFLIP_SCALE)
    text = (app / "client" / "app.py").read_text()
    assert MALICIOUS_LINE in text and APP_LINE not in text
    assert (app / "client" / "campaign_attack.py").is_file()
    assert (app / "client" / "campaign_attacks.py").is_file()
    assert "PARTITION = 2" in (app / "client" / "campaign_plan.py").read_text()
    installed = app_dir()
    assert APP_LINE in (installed / "client" / "app.py").read_text()
    assert not list(installed.glob("client/campaign_*.py"))


def test_the_docs_table_is_the_committed_campaign_result() -> None:
    doc = json.loads(RESULTS.read_text())
    assert render_table(doc["results"]) in DOC.read_text(), (
        "docs/privacy.md's campaign table differs from benchmarks/results/malicious_campaign.json; "
        "regenerate both with `python -m tests.integration.malicious.campaign full --work DIR --write`")
    assert {r["case"] for r in doc["results"]} == {c.name for c in CASES}
    assert all(not r["problems"] for r in doc["results"])


# ------------------------------------------------------------------- real simulations


@pytest.fixture(scope="module")
def fast_campaign(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list, float]:
    work = tmp_path_factory.mktemp("malicious") / FAST_CASE.name
    prepare_phantom(FAST_CASE)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=2) as pool:
        procs = list(pool.map(lambda role: run_case_process(FAST_CASE, work, role=role),
                              ["clean", "attacked"]))
    return work, procs, time.monotonic() - started


@pytest.mark.integration
def test_one_site_changing_attack_every_round_is_rejected_and_the_run_completes(fast_campaign) -> None:
    work, procs, seconds = fast_campaign
    for proc in procs:
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    result = evaluate_case(FAST_CASE, work, bound=UNPAIRED_BOUND)
    assert result.problems == [], result.problems
    assert set(result.rejected) == set(ATTACKS) and result.finite
    print(f"fast campaign: {seconds:.0f} s, distance to clean {result.distance_ratio:.2f}")


@pytest.mark.integration
def test_the_campaign_leaves_no_process_behind(fast_campaign) -> None:
    work, _, _ = fast_campaign
    for role in ("clean", "attacked"):
        assert leftover_processes(work / role / ".flwr") == []


@pytest.mark.integration
@pytest.mark.slow
def test_the_full_campaign(tmp_path: Path) -> None:
    results = run_campaign(CASES, tmp_path, jobs=2)
    problems = {r.case: r.problems for r in results if r.problems}
    assert not problems, problems
