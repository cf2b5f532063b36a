"""deploy/ stays honest: every command, flag and path in the Dockerfile, the compose file,
the demo scripts and the systemd units exists in fedmm's CLI and in the repository.

No Docker engine runs here, so the files are parsed: each `fedmm ...` invocation is parsed
by the real click command (unknown flags, missing required options and bad values fail),
every repository path they use must exist, and every file a service reads must be made by
an earlier set-up step.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest
import typer
import yaml

from client.deploy_config import load_site_config
from server.deploy_config import load_server_config
from shared.run_file import read_run_file
from simulations.cli import app

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
IMAGE_ROOT = "/opt/fedmm"  # WORKDIR of the image: the repository checkout
#: Options whose value is a file or folder a command reads.
READS = ("--config", "--server-config", "--ca-cert", "--run-file", "--data")


def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) pairs, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            pairs.append((word.upper(), rest.strip()))
    return pairs


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def script_commands(path: Path) -> list[list[str]]:
    """The `fedmm ...` and `cp ...` lines of a demo shell script, as argument lists."""
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        words = shlex.split(line, comments=True)
        if words and words[0] in ("fedmm", "cp"):
            out.append(words)
    return out


def in_repo(path: str) -> Path:
    """A path inside the image that comes from the repository, mapped to the checkout."""
    assert path.startswith(IMAGE_ROOT + "/"), f"{path} is not under {IMAGE_ROOT}"
    return ROOT / path[len(IMAGE_ROOT) + 1:]


def parse_fedmm(args: list[str]) -> tuple[click.Command, dict]:
    """Parse `fedmm ARGS` with the real CLI; return the leaf command and its parameters."""
    command: click.Command = typer.main.get_command(app)
    rest = list(args)
    while isinstance(command, click.Group):
        name, rest = rest[0], rest[1:]
        sub = command.get_command(click.Context(command), name)
        assert sub is not None, f"`fedmm {' '.join(args)}`: no command {name!r}"
        command = sub
    ctx = command.make_context("fedmm", rest)  # raises on unknown flags or bad values
    return command, ctx.params


def produced_by(steps: list[list[str]]) -> set[str]:
    """Files and folders the set-up steps create."""
    made: set[str] = set()
    for step in steps:
        if step[0] == "cp":
            assert in_repo(step[1]).is_file(), f"cp source {step[1]} is not in the repository"
            made.add(step[2])
            continue
        words = step[1:]
        out = words[words.index("--out") + 1] if "--out" in words else None
        if words[:2] == ["server", "init"]:
            made |= {f"{out}/server.toml", f"{out}/certs/ca.crt", f"{out}/certs/server.pem"}
        elif words[:2] == ["site", "init"]:
            made |= {f"{out}/site.toml", f"{out}/keys/site.key.pub"}
        elif words[0] == "phantom":
            sites = int(words[words.index("--sites") + 1])
            made |= {f"{out}/site-{k}" for k in range(sites)}
    return made


def reads(args: list[str]) -> list[str]:
    paths = [args[i + 1] for i, a in enumerate(args[:-1]) if a in READS]
    if args[:2] == ["server", "register-site"]:
        paths.append(args[2])
    return paths


SETUP = script_commands(DEPLOY / "demo" / "setup.sh")
REGISTER = script_commands(DEPLOY / "demo" / "register.sh")
MADE = produced_by(SETUP)


def test_dockerfile_copies_what_exists_and_runs_fedmm() -> None:
    pairs = dockerfile()
    assert ("WORKDIR", IMAGE_ROOT) in pairs
    for instruction, args in pairs:
        if instruction == "COPY":
            *sources, _ = args.split()
            for src in sources:
                assert (ROOT / src).exists(), f"COPY {src}: not in the repository"
    entry = [json_list for i, json_list in pairs if i == "ENTRYPOINT"]
    assert entry == ['["fedmm"]']
    run = " ".join(a for i, a in pairs if i == "RUN")
    assert "pip install -e ." in run and "useradd" in run
    assert "apt-get install -y --no-install-recommends nginx" in run  # the coordinator's proxy
    assert ("USER", "fedmm") in pairs
    assert any(i == "ENV" and "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1" in a for i, a in pairs)


def test_compose_services_run_real_commands_on_files_the_setup_makes() -> None:
    services = compose()["services"]
    assert {"superlink", "site-0", "site-1", "site-2"} <= set(services)
    for name, service in services.items():
        build = service.get("build", {})
        assert (ROOT / "deploy" / build["context"] / build["dockerfile"]).resolve().is_file()
        # The CA key's volume is mounted by the one-shot set-up only, never by a service
        # that runs.
        extra = ["ca-offline:/ca-offline"] if name == "setup" else []
        assert service["volumes"] == ["deploy-data:/deploy", *extra], name
        entry = service.get("entrypoint")
        if entry:  # a demo script from the repository
            assert entry[0] == "sh" and in_repo(entry[1]).is_file(), name
            continue
        args = service["command"]
        parse_fedmm(args)
        for path in reads(args):
            assert path in MADE, f"service {name} reads {path}, which no set-up step makes"


def test_the_federation_is_secured_and_starts_in_order() -> None:
    services = compose()["services"]
    assert services["superlink"]["command"][:2] == ["server", "start"]
    assert "--insecure" not in services["superlink"]["command"]
    for k in range(3):
        site = services[f"site-{k}"]
        assert site["command"][:2] == ["site", "start"] and "--insecure" not in site["command"]
        assert site["depends_on"]["superlink"]["condition"] == "service_healthy"
    assert "9093" in " ".join(services["superlink"]["healthcheck"]["test"])
    # The Control API is on the SuperLink's loopback: the coordinator's commands share its
    # network namespace; the SuperLink publishes nothing else.
    for name in ("register", "coordinator"):
        assert services[name]["network_mode"] == "service:superlink"
    assert services["superlink"]["expose"] == ["9093"] and "ports" not in services["superlink"]
    setup = " ".join(" ".join(step) for step in SETUP)
    assert "--ca-key-dir /ca-offline" in setup


@pytest.mark.parametrize("script", ["setup.sh", "register.sh"])
def test_demo_scripts_use_real_commands_and_existing_files(script: str) -> None:
    steps = SETUP if script == "setup.sh" else REGISTER
    assert steps, f"{script} runs no fedmm command"
    earlier: set[str] = set()
    for step in steps:
        if step[0] == "fedmm":
            parse_fedmm(step[1:])
            for path in reads(step[1:]):
                assert path in earlier | MADE, f"{script}: `{' '.join(step)}` reads {path} before it exists"
        earlier |= produced_by([step])
    names = {step[step.index("--name") + 1] for step in REGISTER if "--name" in step}
    assert names == {"site-0", "site-1", "site-2"}


@pytest.mark.parametrize("unit", sorted(p.name for p in (DEPLOY / "systemd").glob("*.service")))
def test_systemd_units_start_real_commands(unit: str) -> None:
    text = (DEPLOY / "systemd" / unit).read_text()
    (exec_start,) = re.findall(r"^ExecStart=(.+)$", text, flags=re.MULTILINE)
    words = shlex.split(exec_start.replace("%i", "hospital-a"))
    assert words[0] == f"{IMAGE_ROOT}/.venv/bin/fedmm"
    command, params = parse_fedmm(words[1:])
    assert command.name == "start" and params["insecure"] is False
    assert "KillSignal=SIGTERM" in text and re.search(r"^User=fedmm$", text, flags=re.MULTILINE)
    assert re.search(r"^UMask=0077$", text, flags=re.MULTILINE)


def test_example_configs_validate(tmp_path: Path) -> None:
    server = load_server_config(DEPLOY / "examples" / "server.toml")
    assert server.superlink.port == 9093 and server.superlink.internal_port != 9093
    site = load_site_config(DEPLOY / "examples" / "site.toml")
    assert site.server.address.endswith(":9093")
    for run in ("run.toml", "run-demo.toml"):
        read_run_file(DEPLOY / "examples" / run, owner="the test")
    assert (DEPLOY / "README.md").is_file()
