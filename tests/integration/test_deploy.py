"""A real deployment on 127.0.0.1: TLS + SuperNode auth SuperLink, three site daemons, faults.

Everything goes through fedmm's own commands (`fedmm server init|start|register-site|run`,
`fedmm site init|start`) on tiny phantom data (3 sites x 3 studies at 4 mm, 16^3 crops,
one local step). Each message still runs in a process of its own at each site (forked
from the executor's warm parent), so runs are short: the drop-out test continues the
end-to-end run (`--resume` with more rounds) instead of starting a new one.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import tomli_w
from safetensors.torch import load_file

from client.site_keypair import create_site_keys
from shared.app_bundle import app_dir, app_sha256
from shared.config import PrivacyConfig
from shared.flower_cli import flower_bin, flower_env, processes_using_home
from shared.model import load_pretrained_encoder
from simulations.phantom import PhantomConfig, generate_phantom
from tests.integration.deployment import Deployment, Site, fedmm_inline, wait_for
from tests.shared.certs import make_ca, make_leaf, write_pem

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
            # Three studies per site: their own k must allow the run's min_studies = 2.
            dep.start_site(dep.add_site(f"site-{k}", phantom / f"site-{k}", limits={"min_k": 2}))
        yield dep
    finally:
        dep.stop()


def private_tree_problems(*roots: Path) -> list[str]:
    """Folders not 0700 and files not 0600 under ``roots`` (each root itself included)."""
    bad = []
    for root in roots:
        for path in [root, *root.rglob("*")]:
            if path.is_symlink() or not path.exists():
                continue
            want = 0o700 if path.is_dir() else 0o600
            mode = path.stat().st_mode & 0o777
            if mode != want:
                bad.append(f"{path} {mode:04o}")
    return bad


def flower_process_args(home: Path, program: str) -> list[str]:
    """The command line of the process running ``program`` with ``FLWR_HOME=home``."""
    for pid in processes_using_home(home):
        args = [a.decode() for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
        if any(Path(a).name == program for a in args[:2]):
            return args
    raise AssertionError(f"no {program} process with FLWR_HOME={home}")


def test_the_coordinator_is_secured(deployment: Deployment) -> None:
    server = deployment.server_dir
    # The CA key went to its own folder beside the coordinator's, to be taken offline.
    assert not list(server.rglob("ca.key"))
    assert (deployment.root / "server-ca-offline" / "ca.key").stat().st_mode & 0o777 == 0o600
    assert private_tree_problems(server / "state", server / "logs") == []
    assert (server / "certs" / "server.key").stat().st_mode & 0o777 == 0o600
    for site in members(deployment):
        assert (site.folder / "keys" / "site.key").stat().st_mode & 0o777 == 0o600
    args = flower_process_args(deployment.server_home, "flower-superlink")
    for flag in ("--ssl-certfile", "--enable-supernode-auth", "--database",
                 "--disable-runtime-dependency-installation", "--log-file",
                 "--superexec-auth-secret-file"):
        assert flag in args
    assert "--insecure" not in args
    assert args[args.index("--host") + 1] == "127.0.0.1"  # the SuperLink is on loopback only
    assert args[args.index("--isolation") + 1] == "process"
    assert "--superexec-auth-secret-file" in flower_process_args(deployment.server_home, "flower-superexec")
    # nginx rewrites its process title (and with it the environment fedmm finds others by).
    pid = int((server / "state" / "proxy" / "nginx.pid").read_text())
    title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    assert "nginx: master process" in title and str(server / "nginx.conf") in title


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
    # Each site released (three patients each: under the default epsilon most likely
    # withheld, by a noisy count), and the card lists every release's epsilon.
    assert card["pool"]["contributors"] + card["pool"]["withheld"] == 3
    assert card["statistics_privacy"]["release_epsilons"] == [PrivacyConfig().epsilon] * 3
    # heads and optimizer state stayed on each site's own disk
    assert run.site_rounds == {s.name: [1, 2] for s in members(deployment)}
    listed = json.loads(fedmm_inline("server", "sites", "--config", str(deployment.server_config),
                                     "--json"))
    assert {(s["name"], s["status"]) for s in listed} >= {(s.name, "online") for s in members(deployment)}
    table = " ".join(fedmm_inline("server", "sites", "--config", str(deployment.server_config)).split())
    assert "The server certificate: valid for" in table and "The CA certificate: valid for" in table
    # What each site keeps (cached patient volumes, state, logs) is private to it.
    for site in members(deployment):
        assert private_tree_problems(site.state_dir, site.log.parent) == []
        # its log says what the tasks did, without a line per local Runtime API request
        log = site.log.read_text()
        assert "Running approved app bundle" in log and "HTTP Request:" not in log
    # and the coordinator's, after a run (the app sources `flwr run` built from included)
    assert (deployment.server_home / "app-sources").is_dir()
    assert private_tree_problems(deployment.server_dir / "state") == []


def test_an_expired_server_certificate_is_named_as_such_at_the_site(
        deployment: Deployment, tmp_path: Path) -> None:
    ca = make_ca("expired-test CA")
    now = dt.datetime.now(dt.UTC)
    key, cert = make_leaf(ca, not_before=now - dt.timedelta(days=400), not_after=now - dt.timedelta(days=2))
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(write_pem(tmp_path / "server.pem", cert, key), tmp_path / "server.key")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()

        def serve() -> None:  # a coordinator whose certificate has expired
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                with contextlib.suppress(ssl.SSLError, OSError), tls.wrap_socket(conn, server_side=True):
                    pass
        threading.Thread(target=serve, daemon=True).start()
        site = deployment.add_site("expired", deployment.sites[0].data, register=False, give_up=True,
                                   ca_cert=write_pem(tmp_path / "ca.crt", ca[1]))
        raw = tomllib.loads(site.config.read_text())
        raw["server"]["address"] = f"127.0.0.1:{listener.getsockname()[1]}"
        site.config.write_text(tomli_w.dumps(raw))
        assert deployment.start_site(site).wait(timeout=180) != 0
    log = site.log.read_text()
    assert "certificate has expired" in log and "not signed by" not in log.split("SuperNode stopped")[-1]


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
    conn.request("GET", "/health")  # plain HTTP on the TLS port: nginx answers 400, nothing forwarded
    assert conn.getresponse().status == 400
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


def test_an_outsider_with_only_the_ca_and_a_fresh_key_is_refused(
        deployment: Deployment, tmp_path: Path) -> None:
    home = tmp_path / "outsider-home"
    home.mkdir()
    (home / "config.toml").write_text(tomli_w.dumps({"superlink": {"default": "c", "c": {
        "address": deployment.address, "root-certificates": str(deployment.ca_cert)}}}))
    evil = create_site_keys(tmp_path / "evil.key", comment="evil")
    registered_before = len(json.loads(fedmm_inline(
        "server", "sites", "--config", str(deployment.server_config), "--json")))

    def flwr(*args: str) -> str:
        proc = subprocess.run([flower_bin("flwr"), *args], env=flower_env(home), capture_output=True,
                              text=True, timeout=180, check=False)
        return proc.stdout + proc.stderr

    # The Control API (flwr supernode register|ls, flwr ls, flwr run) is not reachable.
    for args in (("supernode", "register", str(evil.public_key), "c", "--format", "json"),
                 ("supernode", "ls", "c", "--format", "json"), ("ls", "c", "--format", "json")):
        out = flwr(*args)
        assert '"success": true' not in out and "403" in out, (args, out)
    out = flwr("run", str(app_dir()), "c")
    assert "Successfully started run" not in out and "403" in out, out
    with httpx.Client(verify=str(deployment.ca_cert), timeout=30) as client:
        base = f"https://{deployment.address}"
        for path in ("/openapi.json", "/docs", "/health"):
            assert client.get(base + path).status_code == 403, path
        for path in ("/v1/runtime/acquire-task", "/v1/runtime/pull-task-input", "/v1/control/start-run",
                     "/v1/control/register-node", "/v1/control/list-runs"):
            assert client.post(base + path, json={}).status_code == 403, path
        # Only the Fleet API is forwarded (a JSON body gets the SuperLink's own 415), POST only.
        assert client.post(base + "/v1/fleet/get-run", json={}).status_code == 415
        assert client.get(base + "/v1/fleet/get-run").status_code == 403
    listed = json.loads(fedmm_inline("server", "sites", "--config", str(deployment.server_config), "--json"))
    assert len(listed) == registered_before and "evil" not in {s["name"] for s in listed}


def state_snapshot(site: Site) -> dict[str, tuple[int, int]]:
    """Every file under a site's state folder with its size and modification time."""
    return {str(p.relative_to(site.state_dir)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(site.state_dir.rglob("*")) if p.is_file()}


def altered_app(folder: Path) -> Path:
    """A copy of fedmm's app folder with one line of the ClientApp changed."""
    for name in ("client", "server", "shared"):
        shutil.copytree(app_dir() / name, folder / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(app_dir() / "pyproject.toml", folder / "pyproject.toml")
    app = folder / "client" / "app.py"
    app.write_text(app.read_text().replace(
        "app = ClientApp(mods=[contain_errors, outgoing_guard, clip_updates])",
        "app = ClientApp(mods=[outgoing_guard, clip_updates])  # the error mod dropped", 1))
    return folder


def test_an_app_altered_by_one_line_is_refused_at_every_site_and_changes_nothing(
        deployment: Deployment, two_round_run: TwoRoundRun, tmp_path: Path) -> None:
    assert two_round_run.returncode == 0, two_round_run.output
    app = altered_app(tmp_path / "app")
    digest, approved = app_sha256(app), app_sha256()
    assert digest != approved
    before = {s.name: state_snapshot(s) for s in members(deployment)}
    logs = {s.name: len(s.log.read_text()) for s in members(deployment)}
    out = deployment.root / "runs" / "altered"
    proc = deployment.run(run_file(deployment.root / "altered.toml", rounds=1, round_timeout_s=120),
                          out, "--app", str(app))
    assert proc.wait(timeout=600) == 1
    doc = json.loads((out / "metrics.json").read_text())
    ids = {s.node_id for s in members(deployment)}
    for failures in (doc["meta"]["statistics_failures"], doc["rounds"][0]["train"]["failures"]):
        assert {f["node"] for f in failures} == ids
        assert all(f["code"] == 1901 and "not one this site approved" in f["reason"] for f in failures)
    assert not doc["rounds"][0]["train"]["aggregated"]
    for site in members(deployment):
        refusal = site.log.read_text()[logs[site.name]:]
        assert f"REFUSED a task: its app bundle has sha256 {digest}" in refusal
        assert approved in refusal  # both hashes, at the site
        assert "Running approved app bundle" not in refusal
    assert {s.name: state_snapshot(s) for s in members(deployment)} == before


def test_site_limits_are_the_sites_and_nothing_identifying_leaves_on_failure(
        deployment: Deployment, two_round_run: TwoRoundRun) -> None:
    assert two_round_run.returncode == 0, two_round_run.output
    # A fourth site whose only study is corrupt: its error names the study, the file and
    # its data folder (a node-config value). It allows a large epsilon; the others do not.
    ward = deployment.root / "oncology-ward-7" / "brats"
    study = ward / "BraTS2021_00042"
    study.mkdir(parents=True)
    for modality in ("t1", "t1ce", "t2", "flair"):
        (study / f"BraTS2021_00042_{modality}.nii.gz").write_bytes(b"not a volume" * 8)
    leaky = deployment.add_site("leaky", ward, limits={"min_k": 2, "max_epsilon_per_release": 100.0,
                                                       "max_epsilon_total": 1000.0})
    deployment.start_site(leaky)
    wait_for(lambda: any(s["name"] == "leaky" and s["status"] == "online" for s in json.loads(
        fedmm_inline("server", "sites", "--config", str(deployment.server_config), "--json"))),
        timeout_s=120, what="the fourth site to come online")
    run = run_file(deployment.root / "greedy.toml", rounds=1, round_timeout_s=120)
    run.write_text(run.read_text().replace("min_studies = 2", "min_studies = 2\nepsilon = 50.0")
                   .replace("min_nodes = 3", "min_nodes = 4"))
    out = deployment.root / "runs" / "greedy"
    proc = deployment.run(run, out)
    assert proc.wait(timeout=600) == 1
    doc = json.loads((out / "metrics.json").read_text())
    failures = {f["node"]: f for f in doc["meta"]["statistics_failures"]}
    for site in members(deployment):
        assert failures[site.node_id]["code"] == 1902
        assert "(setting privacy.epsilon)" in failures[site.node_id]["reason"]
        assert "[limits].max_epsilon_per_release" in site.log.read_text()  # the site says which limit
    assert failures[leaky.node_id]["code"] == 1904
    planted = ("BraTS2021_00042", "oncology-ward-7", str(ward))
    site_log = leaky.log.read_text()
    assert all(p in site_log for p in planted)  # the failure did name them, at the site
    server_side = [out / "metrics.json", out / "flower.log", out / "progress.json",
                   out.parent / "greedy.out", *(deployment.server_dir / "logs").glob("*.log")]
    for path in server_side:
        text = path.read_text(errors="replace")
        assert not [p for p in planted if p in text], path

    # The daemon killed outright (SIGKILL, as the OOM killer does) takes its SuperNode
    # and task executor with it.
    assert processes_using_home(leaky.flwr_home)
    os.kill(leaky.proc.pid, signal.SIGKILL)
    leaky.proc.wait(timeout=10)
    wait_for(lambda: processes_using_home(leaky.flwr_home) == [], timeout_s=30,
             what="the killed daemon's SuperNode and executor to end")


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
