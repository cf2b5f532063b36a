"""The `fedmm` command starts without the training stack: `fedmm --help`, `fedmm site ...` and
`fedmm server ...` (hospital IT's and the coordinator's everyday commands) import torch, MONAI,
OpenDP and Ray only in the commands that use them (a few seconds each on a small machine)."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("torch", "monai", "opendp", "ray", "scipy", "mlflow")


def loaded_heavy_packages(statement: str) -> list[str]:
    """The packages of HEAVY that a fresh interpreter has loaded after ``statement``."""
    code = (f"import json, sys\n{statement}\n"
            f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return list(json.loads(out.stdout.strip().splitlines()[-1]))


def test_importing_the_fedmm_command_loads_no_training_package() -> None:
    assert loaded_heavy_packages("import simulations.cli") == []


def test_simulate_help_loads_no_training_package() -> None:
    """`simulate --help` builds the whole option list, the pretext tasks' names included."""
    statement = ("import typer, typer.testing\n"
                 "from simulations.simulate_cli import simulate_command\n"
                 "app = typer.Typer()\n"
                 "app.command()(simulate_command)\n"
                 "result = typer.testing.CliRunner().invoke(app, ['--help'])\n"
                 "assert result.exit_code == 0 and 'plane_intersection' in result.output, result.output")
    assert loaded_heavy_packages(statement) == []


def test_the_heavy_commands_still_load_what_they_need() -> None:
    """The check above can fail: the site's data check does load torch and MONAI."""
    assert {"torch", "monai"} <= set(loaded_heavy_packages("import client.site_check"))


def test_simulate_refuses_a_wrong_option_without_the_training_stack() -> None:
    """A misspelt task, a bad value, or an unknown key in a scenario file: refused (exit 2, the
    message names the fix) before torch, MONAI or Ray load."""
    statement = ("import typer, typer.testing\n"
                 "from simulations.simulate_cli import simulate_command\n"
                 "app = typer.Typer()\n"
                 "app.command()(simulate_command)\n"
                 "run = typer.testing.CliRunner().invoke\n"
                 "for argv, says in ((['--pretext', 'plane_intersektion'], 'plane_intersection'),\n"
                 "                   (['--sites', '0'], 'greater than or equal to 1'),\n"
                 "                   (['--pretext', 'plane_intersection:-1'], 'positive number')):\n"
                 "    result = run(app, argv)\n"
                 "    assert result.exit_code == 2 and says in result.output, (argv, result.output)")
    assert loaded_heavy_packages(statement) == []


def test_a_valid_scenario_with_a_fixed_preset_still_checks_its_crop_size() -> None:
    """The crop check needs the encoder presets (torch): it runs once the rest is valid."""
    from shared.config import ConfigError
    from simulations.scenario import build_scenario

    try:
        build_scenario({"model": {"preset": "nnunet-resenc-m"}, "data": {"crop_size": 16}},
                       source="test")
    except ConfigError as err:
        assert "too small for the nnunet-resenc-m encoder" in str(err)
    else:
        raise AssertionError("a 16^3 crop was accepted for nnunet-resenc-m")
