"""A real deployment on 127.0.0.1: TLS + SuperNode auth SuperLink, three site daemons, faults.

Everything goes through fedmm's own commands (`fedmm server init|start|register-site|run`,
`fedmm site init|start`) on tiny phantom data (3 sites x 3 studies at 4 mm, 16^3 crops,
one local step). Deployment starts a fresh `flwr-clientapp` process per message (about
10-30 s per message round on two cores), so runs are short: the drop-out test continues
the end-to-end run (`--resume` with more rounds) instead of starting a new one.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from safetensors.torch import load_file

from shared.flower_cli import processes_using_home
from shared.model import load_pretrained_encoder
from simulations.phantom import PhantomConfig, generate_phantom
from tests.integration.deployment import Deployment, Site, fedmm_inline, wait_for

pytestmark = pytest.mark.integration

def deadline_for(base: TwoRoundRun) -> float:
    """A round deadline for the drop-out test, from how long the end-to-end rounds took.

    Long enough that no live site misses it on a slow or busy machine (1.5 x a whole round,
    i.e. about 3 x one message round), short enough to keep the test lean. At least 60 s,
    at most 300 s. (A killed site's round usually ends earlier: Flower answers its pending
    message with "Node Unavailable" once two 30 s heartbeats are missed.)
    """
    slowest = max(r["seconds"] for r in base.rounds)
    return float(min(300.0, max(60.0, 1.5 * slowest)))


def run_file(path: Path, *, rounds: int, round_timeout_s: float) -> Path:
    path.write_text(f"""
seed = 1
[data]
spacing_mm = 4.0
crop_size = 16
batch_size = 2
[train]
local_steps = 1
eval_batches = 1
[federation]
num_rounds = {rounds}
min_nodes = 3
quorum = 0.5
round_timeout_s = {round_timeout_s}
connect_timeout_s = 180
[privacy]
min_studies = 2
""")
    return path


def members(deployment: Deployment) -> list[Site]:
    """The three hospitals of the federation (sites added by the refusal test are not)."""
    return deployment.sites[:3]


def metrics(out: Path) -> list[dict]:
    return json.loads((out / "metrics.json").read_text())["rounds"]


def output_of(proc_out: Path) -> str:
    return proc_out.read_text(errors="replace")[-4000:] if proc_out.exists() else ""


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("deploy")
    phantom = root / "phantom"
    generate_phantom(PhantomConfig(sites=3, subjects_per_site=3, spacing_mm=4.0), phantom,
                     workers=1, progress=False)
    dep = Deployment(root=root)
    try:
        dep.init_server()
        dep.start_server()
        for k in range(3):
            dep.start_site(dep.add_site(f"site-{k}", phantom / f"site-{k}"))
        yield dep
    finally:
        dep.stop()


def test_the_server_folder_is_secured(deployment: Deployment) -> None:
    certs = deployment.server_dir / "certs"
    for key in ("ca.key", "server.key"):
        assert (certs / key).stat().st_mode & 0o777 == 0o600
    for site in members(deployment):
        assert (site.folder / "keys" / "site.key").stat().st_mode & 0o777 == 0o600
    cmdline = Path(f"/proc/{deployment.server_proc.pid}/cmdline").read_bytes().split(b"\0")
    args = [a.decode() for a in cmdline]
    for flag in ("--ssl-certfile", "--enable-supernode-auth", "--database",
                 "--disable-runtime-dependency-installation", "--log-file"):
        assert flag in args
    assert "--insecure" not in args


@dataclass(frozen=True)
class TwoRoundRun:
    """The end-to-end run, as it was when `fedmm server run` returned."""

    out: Path
    returncode: int
    output: str
    rounds: list[dict]
    site_rounds: dict[str, list[int]]


@pytest.fixture(scope="module")
def two_round_run(deployment: Deployment) -> TwoRoundRun:
    out = deployment.root / "runs" / "e2e"
    proc = deployment.run(run_file(deployment.root / "e2e.toml", rounds=2, round_timeout_s=300), out)
    code = proc.wait(timeout=900)
    return TwoRoundRun(out=out, returncode=code, output=output_of(out.parent / "e2e.out"),
                       rounds=metrics(out) if (out / "metrics.json").exists() else [],
                       site_rounds={s.name: s.rounds_trained() for s in members(deployment)})


def test_three_sites_two_rounds_end_to_end(deployment: Deployment, two_round_run: TwoRoundRun) -> None:
    run, out = two_round_run, two_round_run.out
    assert run.returncode == 0, run.output
    assert "completed" in run.output
    encoder = load_pretrained_encoder(out / "encoder.safetensors")
    assert encoder.out_dim > 0
    ids = {s.node_id for s in members(deployment)}
    assert [r["round"] for r in run.rounds] == [1, 2]
    for r in run.rounds:
        assert r["train"]["aggregated"] and set(r["train"]["sites"]) == ids
        assert r["train"]["failures"] == [] and set(r["evaluate"]["sites"]) == ids
    assert {"round_0000.safetensors", "round_0001.safetensors", "round_0002.safetensors"} <= {
        p.name for p in (out / "checkpoints").iterdir()}
    assert all(k.startswith("encoder.") for k in load_file(out / "checkpoints" / "round_0002.safetensors"))
    card = json.loads((out / "model_card.json").read_text())
    assert card["pool"]["contributors"] == 3
    # heads and optimizer state stayed on each site's own disk
    assert run.site_rounds == {s.name: [1, 2] for s in members(deployment)}
    listed = json.loads(fedmm_inline("server", "sites", "--config", str(deployment.server_config),
                                     "--json"))
    assert {(s["name"], s["status"]) for s in listed} >= {(s.name, "online") for s in members(deployment)}


def test_an_unregistered_key_a_wrong_ca_and_plain_http_are_refused(deployment: Deployment) -> None:
    other = deployment.root / "other-ca"
    fedmm_inline("server", "init", "--out", str(other), "--port", "1")
    data = deployment.sites[0].data
    intruder = deployment.add_site("intruder", data, register=False, give_up=True)
    wrong_ca = deployment.add_site("wrong-ca", data, ca_cert=other / "certs" / "ca.crt", give_up=True)
    plain = deployment.add_site("plain-http", data, give_up=True)
    procs = [deployment.start_site(intruder), deployment.start_site(wrong_ca),
             deployment.start_site(plain, "--insecure")]
    codes = [p.wait(timeout=180) for p in procs]
    assert all(code != 0 for code in codes), codes
    assert "not registered" in intruder.log.read_text()
    assert "not signed by" in wrong_ca.log.read_text()
    assert "requires TLS" in plain.log.read_text()
    conn = http.client.HTTPConnection("127.0.0.1", deployment.port, timeout=10)
    with pytest.raises((http.client.HTTPException, ConnectionError)):
        conn.request("GET", "/health")
        conn.getresponse()
    listed = json.loads(fedmm_inline("server", "sites", "--config", str(deployment.server_config),
                                     "--json"))
    status = {s["name"]: s["status"] for s in listed}
    assert "intruder" not in status
    assert status["wrong-ca"] != "online" and status["plain-http"] != "online"
    assert [processes_using_home(s.flwr_home) for s in (intruder, wrong_ca, plain)] == [[], [], []]


def test_a_site_killed_mid_round_is_dropped_then_rejoins_with_its_state(
        deployment: Deployment, two_round_run: TwoRoundRun) -> None:
    assert two_round_run.returncode == 0, two_round_run.output
    deadline = deadline_for(two_round_run)
    victim, others = members(deployment)[2], members(deployment)[:2]
    assert victim.rounds_trained() == [1, 2]  # its local state before the crash
    before = victim.log.read_text().count("Receiving: train message")
    out = two_round_run.out  # continue the end-to-end run with rounds 3 and 4
    proc = deployment.run(run_file(deployment.root / "dropout.toml", rounds=4,
                                   round_timeout_s=deadline), out, "--resume")
    wait_for(lambda: victim.log.read_text().count("Receiving: train message") > before
             or proc.poll() is not None, timeout_s=600, what="the victim to start round 3")
    assert proc.poll() is None, output_of(out.parent / "e2e.out")
    deployment.crash_site(victim)  # mid-round: its round-3 train message is being processed
    killed = time.monotonic()
    deployment.start_site(victim)  # back at once; it is admitted (same key, same node id) once
    # the SuperLink has given up on its old connection (2 missed heartbeats, about 60 s)
    wait_for(lambda: len(metrics(out)) >= 3, timeout_s=deadline + 120,
             what="round 3 to end without the victim")
    assert time.monotonic() - killed <= deadline + 30
    assert proc.wait(timeout=900) == 0, output_of(out.parent / "e2e.out")
    r3, r4 = metrics(out)[2:]
    everyone = {s.node_id for s in members(deployment)}
    assert set(r3["train"]["sites"]) == {s.node_id for s in others} and r3["train"]["aggregated"]
    assert victim.node_id in {f["node"] for f in r3["train"]["failures"]}
    assert set(r4["train"]["sites"]) == everyone and r4["train"]["aggregated"]
    assert victim.rounds_trained() == [1, 2, 4]  # rounds 1-2 restored from disk after the restart
    assert all(s.rounds_trained() == [1, 2, 3, 4] for s in others)
    assert (out / "checkpoints" / "round_0004.safetensors").exists()


@pytest.mark.slow
def test_a_killed_server_resumes_from_the_last_completed_round(deployment: Deployment) -> None:
    out = deployment.root / "runs" / "resume"
    run = run_file(deployment.root / "resume.toml", rounds=2, round_timeout_s=300)
    proc = deployment.run(run, out)
    state = out / "server_state.json"
    wait_for(lambda: (state.exists() and json.loads(state.read_text())["last_round"] == 1)
             or proc.poll() is not None, timeout_s=600, what="round 1's checkpoint")
    assert proc.poll() is None, output_of(out.parent / "resume.out")
    deployment.crash_server(proc)  # SuperLink, SuperExec, ServerApp and `fedmm server run`
    round1 = load_file(out / "checkpoints" / "round_0001.safetensors")
    deployment.start_server()  # same database: registrations and node ids survive
    again = deployment.run(run, out, "--resume")
    assert again.wait(timeout=900) == 0, output_of(out.parent / "resume.out")
    rounds = metrics(out)
    assert [r["round"] for r in rounds] == [1, 2]
    assert len(rounds[0]["train"]["sites"]) == 3  # round 1 was not lost
    assert set(rounds[1]["train"]["sites"]) == {s.node_id for s in members(deployment)}
    kept = load_file(out / "checkpoints" / "round_0001.safetensors")
    assert all((kept[k] == round1[k]).all() for k in round1)
    assert (out / "checkpoints" / "round_0002.safetensors").exists()


def test_sigterm_stops_every_process(deployment: Deployment) -> None:
    for site in members(deployment):
        assert site.proc is not None and site.proc.poll() is None
        site.proc.terminate()  # SIGTERM, as systemd and `docker stop` send
    for site in members(deployment):
        assert site.proc is not None and site.proc.wait(timeout=90) == 0
        assert "stopped (on request)" in site.log.read_text()
    deployment.server_proc.terminate()
    deployment.server_proc.wait(timeout=90)
    wait_for(lambda: deployment.leftovers() == [], timeout_s=30, what="no process left")
