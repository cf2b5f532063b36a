"""`fedmm site ...`: commands for hospital IT, run next to the site's own data."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from client.app_approval import approval_for, approve, installed_app, revoke
from client.deploy_config import (
    SITE_CONFIG_FILE,
    SiteDaemonSettings,
    SiteDeployConfig,
    SiteServerSettings,
    load_site_config,
    write_site_config,
)
from client.site_daemon import SiteDaemonConfigError, run_site_daemon
from client.site_keypair import PRIVATE_KEY_FILE, create_site_keys
from client.site_limits import check_site_limits
from client.tls_probe import probe_server_certificate
from shared.app_bundle import AppBundleError
from shared.cert_validity import certificate_validity
from shared.config import ConfigError, RunConfig, SiteConfig, SiteLimits
from shared.flower_cli import FlowerCommandNotFoundError
from shared.run_file import read_run_file
from shared.site_errors import SiteRefusal
from shared.wire_keys import ConfigKey, RecordKey

if TYPE_CHECKING:
    from client.release import SiteRelease
    from client.site_check import SiteCheckReport

site_app = typer.Typer(help="Commands for hospital IT, run next to the site's data.",
                       no_args_is_help=True)
console = Console(stderr=True)

SiteConfigOption = Annotated[Path, typer.Option(
    "--config", envvar="FEDMM_SITE_CONFIG", help="The site's site.toml (from `fedmm site init`).")]


@site_app.callback()
def _private_files() -> None:
    """Everything these commands create (state with cached patient volumes, keys, logs) is
    the site's own: 0700 folders and 0600 files, whatever the shell's umask."""
    os.umask(0o077)


def _fail(message: object, code: int = 2) -> typer.Exit:
    console.print(f"[red]{escape(str(message))}[/]", highlight=False)
    return typer.Exit(code)


def _site_config(path: Path) -> SiteDeployConfig:
    try:
        return load_site_config(path)
    except ConfigError as err:
        raise _fail(err) from err


def _run_settings(site: SiteDeployConfig) -> RunConfig:
    """The run's settings for local checks: the coordinator's RUN.toml, else the defaults."""
    if site.run_file is None:
        return RunConfig()
    try:
        return read_run_file(site.run_file, owner="the coordinator")
    except ConfigError as err:
        raise _fail(err) from err


@site_app.command("init")
def init_command(
    name: Annotated[str, typer.Option("--name", help="This site's name (letters, digits, . _ -).")],
    data: Annotated[Path, typer.Option("--data", help="The site's data folder.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for site.toml, keys/ and state/.")],
    server: Annotated[str, typer.Option(
        "--server", help="The coordinator's SuperLink, host:port (can be set later).")] = "",
    ca_cert: Annotated[Path | None, typer.Option(
        "--ca-cert", help="The consortium's ca.crt from the coordinator (copied into --out).")] = None,
    run_file: Annotated[Path | None, typer.Option(
        "--run-file", help="The coordinator's RUN.toml, for `site check` / `site stats`.")] = None,
    runtime_port: Annotated[int, typer.Option(
        help="Local-only port of the SuperNode's runtime API (distinct per site on one host).")] = 9094,
) -> None:
    """Create this site's key pair and site.toml (approving the fedmm installed here); print
    the public key for the coordinator."""
    config_path = out / SITE_CONFIG_FILE
    if config_path.exists():
        raise _fail(f"{config_path} already exists. Fix: edit it, rotate the key with `fedmm site "
                    "rotate-key`, or choose another --out.")
    if ca_cert is not None and not ca_cert.is_file():
        raise _fail(f"--ca-cert {ca_cert} does not exist; expected the coordinator's ca.crt.")
    try:
        app = installed_app()
        cfg = SiteDeployConfig(
            name=name, data_dir=data.expanduser().resolve(),
            run_file=run_file.expanduser().resolve() if run_file else None,
            approved_apps=(app,),
            server=SiteServerSettings(address=server),
            daemon=SiteDaemonSettings(runtime_port=runtime_port),
        )
    except (ValueError, AppBundleError) as err:
        raise _fail(err) from err
    if not cfg.data_dir.is_dir():
        console.print(f"[yellow]Note: {cfg.data_dir} is not a folder yet; `fedmm site check` "
                      "needs it.[/]")
    keys = create_site_keys(out / "keys" / PRIVATE_KEY_FILE, comment=name)
    if ca_cert is not None:
        shutil.copyfile(ca_cert, out / "ca.crt")
    write_site_config(cfg, config_path)
    (out / "state").mkdir(parents=True, exist_ok=True)
    console.print(f"[green]Site {name!r} ready[/] in {out.resolve()}:")
    console.print(f"  config       {config_path}")
    console.print(f"  private key  {keys.private_key} (0600, never leaves this machine)")
    console.print(f"  public key   {keys.public_key}")
    console.print(f"  approved app {app.sha256}\n               ({escape(app.note)}); compare it "
                  "with the coordinator's `fedmm server app-hash`. The site runs no other code.")
    if ca_cert is None:
        console.print(f"  [yellow]CA certificate: copy the coordinator's ca.crt to {out / 'ca.crt'}[/]")
    if not server:
        console.print("  [yellow]server address: set [server].address in the config[/]")
    console.print("Send this public key to the coordinator (`fedmm server register-site`):")
    print(keys.public_line)


@site_app.command("rotate-key")
def rotate_key_command(config: SiteConfigOption = Path(SITE_CONFIG_FILE)) -> None:
    """Replace the site's key pair (the old one is kept as *.old); print the new public key."""
    cfg = _site_config(config)
    keys = create_site_keys(cfg.keys.private_key, comment=cfg.name, overwrite=True)
    console.print(f"[green]New key pair[/] {keys.private_key}. Send the public key below to the "
                  "coordinator; once it is registered, restart the site daemon, then ask the "
                  "coordinator to unregister the old node id.")
    print(keys.public_line)


def _print_check(report: SiteCheckReport) -> None:
    table = Table("study", "usable", "modalities (file shape @ spacing mm)", "label", "model input")
    for study in report.studies:
        mods = "; ".join(
            f"{m} " + (f"{'x'.join(map(str, v.shape))} @ {'x'.join(f'{z:g}' for z in v.spacing)}"
                       if v.shape and v.spacing else (f"UNREADABLE ({v.error})" if v.error else "?"))
            for m, v in study.images.items())
        usable = f"yes ({study.split})" if study.usable else "[red]no[/]"
        shape = "x".join(map(str, study.input_shape)) if study.input_shape else ""
        table.add_row(escape(study.study_id), usable, escape(mods), "yes" if study.has_label else "no", shape)
    console.print(table)
    if report.problems:
        console.print(f"[yellow]{len(report.problems)} problem(s); these files or studies are "
                      "skipped by training:[/]")
        for problem in report.problems:
            console.print(f"  - {escape(str(problem))}", highlight=False)
    if report.fatal:
        console.print(f"[red]Training cannot use {report.data_dir}:[/] {escape(report.fatal)}",
                      highlight=False)
        return
    console.print(f"Usable studies: {report.usable} ({report.train} train, {report.eval} held out) "
                  f"of {len(report.studies)} found; modalities {list(report.modalities)}: "
                  + ", ".join(f"{m} in {n}" for m, n in report.modality_studies.items()))
    chances = ", ".join(f"{m} {report.modality_patients.get(m, 0)} patients ({p:.0%})"
                        for m, p in report.release_chances.items())
    if report.shares_statistics:
        console.print(f"[green]Statistics:[/] {report.patients} patients (the privacy unit); "
                      f"round 0 releases a modality when its noisy patient count clears the "
                      f"minimum of {report.min_studies} (privacy.min_studies). Chance per "
                      f"modality: {chances}. See exactly what: `fedmm site stats --dry-run "
                      "--config ...`.")
    else:
        console.print(f"[yellow]Statistics:[/] {report.patients} patients: too few for the noisy "
                      f"count to clear the minimum of {report.min_studies} (privacy.min_studies) "
                      f"at the run's epsilon, so this site most likely withholds its statistics "
                      f"and still trains. Chance per modality: {chances}.")
    if report.eval < 2:
        console.print("[yellow]Held-out loss: fewer than 2 held-out studies, so this site reports "
                      "no held-out loss (add studies to change that).[/]")


@site_app.command("check")
def check_command(config: SiteConfigOption = Path(SITE_CONFIG_FILE)) -> None:
    """Inspect the data folder the way training reads it; exit 1 if training cannot use it."""
    site = _site_config(config)
    cfg = _run_settings(site)
    source = "" if site.run_file else "; fedmm's defaults: set run_file to the run's RUN.toml"
    console.print(f"Checking {site.data_dir} (layout {cfg.data.layout!r}, modalities "
                  f"{list(cfg.data.modalities)}, resampled to {cfg.data.spacing_mm:g} mm{source})")
    from client.site_check import check_site  # reads volumes: torch and MONAI, only here

    report = check_site(cfg, SiteConfig(data_dir=site.data_dir, state_dir=site.state_dir))
    _print_check(report)
    _print_certificates(site)
    if not report.ready:
        raise typer.Exit(1)


def _print_certificates(site: SiteDeployConfig) -> None:
    """The consortium CA's and the server certificate's days to expiry (warning under 30)."""
    if not site.server.ca_cert.is_file():
        console.print(f"[yellow]Certificates: no CA certificate at {site.server.ca_cert} yet.[/]")
        return
    try:
        ca = certificate_validity(site.server.ca_cert, name="The consortium CA certificate")
    except ValueError as err:
        console.print(f"[red]{escape(str(err))}[/]")
        return
    shown = [ca]
    if site.server.address:
        probe = probe_server_certificate(site.server.address, site.server.ca_cert)
        if probe.validity is not None:
            shown.append(probe.validity)
        if probe.error:
            console.print(f"[{'yellow' if probe.validity is None else 'red'}]{escape(probe.error)}[/]",
                          highlight=False)
    for validity in shown:
        style = "red" if validity.problem() else "yellow" if validity.warning() else "green"
        console.print(f"[{style}]{escape(validity.summary())}[/]", highlight=False)
        if validity.warning():
            console.print(f"[yellow]Warning: {escape(validity.warning())}; ask the coordinator "
                          "to renew it.[/]", highlight=False)


@site_app.command("start")
def start_command(
    config: SiteConfigOption = Path(SITE_CONFIG_FILE),
    insecure: Annotated[bool, typer.Option(
        "--insecure", help="No TLS, no key: tests against a local --insecure SuperLink ONLY.")] = False,
) -> None:
    """Run the site daemon (flower-supernode + fedmm's task executor) in the foreground;
    SIGTERM stops it cleanly."""
    cfg = _site_config(config)
    if insecure:
        console.print("[bold red]WARNING: connecting WITHOUT TLS and WITHOUT the site key "
                      "(--insecure).[/] Use this only for tests on one machine.")
    try:
        code = run_site_daemon(cfg, site_config=config, insecure=insecure, console=sys.stdout)
    except (SiteDaemonConfigError, FlowerCommandNotFoundError) as err:
        raise _fail(err) from err
    raise typer.Exit(code)


@site_app.command("approve")
def approve_command(
    config: SiteConfigOption = Path(SITE_CONFIG_FILE),
    sha256: Annotated[str | None, typer.Option(
        "--hash", help="Approve this app-bundle sha256 (as the coordinator's `fedmm server "
        "app-hash` prints it; compare it over a second channel first).")] = None,
    fab: Annotated[Path | None, typer.Option(
        "--fab", help="Approve this app-bundle file (.fab).")] = None,
    note: Annotated[str, typer.Option(help="What it is, who approved it (kept in site.toml).")] = "",
    list_only: Annotated[bool, typer.Option("--list", help="Only list the approved bundles.")] = False,
    revoke_hash: Annotated[str | None, typer.Option(
        "--revoke", help="Withdraw the approval of this sha256.")] = None,
) -> None:
    """Approve the code this site runs: by default the fedmm installed here (prints its hash)."""
    cfg = _site_config(config)
    if revoke_hash is not None:
        try:
            removed = revoke(config, revoke_hash)
        except ConfigError as err:
            raise _fail(err) from err
        console.print(f"[green]Withdrew[/] the approval of {revoke_hash}." if removed else
                      f"[yellow]{revoke_hash} was not approved; nothing changed.[/]")
        return
    if not list_only:
        try:
            app = approval_for(sha256=sha256, fab=fab, note=note)
            added = approve(config, app)
        except (ValueError, AppBundleError) as err:
            raise _fail(err) from err
        console.print(f"[green]Approved[/] app bundle {app.sha256} ({escape(app.note)}); runs of "
                      "it execute here from the next task on." if added else
                      f"App bundle {app.sha256} was already approved.", highlight=False)
        cfg = _site_config(config)
    table = Table("approved app bundle (sha256)", "note")
    for entry in cfg.approved_apps:
        table.add_row(entry.sha256, escape(entry.note))
    console.print(table)
    if not cfg.approved_apps:
        console.print("[yellow]No app is approved: this site refuses every run.[/]")


@site_app.command("stats")
def stats_command(
    data: Annotated[Path | None, typer.Option("--data", help="The site's data folder (one study "
                                              "per sub-folder, BraTS 2021 layout).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the payload; send nothing.")] = False,
    config: Annotated[Path | None, typer.Option(
        "--config", help="The site's site.toml: its data folder, state folder, limits and run "
        "file.")] = None,
    run_config: Annotated[Path | None, typer.Option(
        "--run-config", help="JSON RunConfig of the run to join (default: fedmm's defaults).")] = None,
    state: Annotated[Path | None, typer.Option(
        "--state", help="The site's state folder (its privacy ledger keeps the release, which "
        "round 0 re-sends). Default: a temporary folder.")] = None,
) -> None:
    """Print exactly the statistics payload this site would send in round 0, with its epsilon
    and the site's privacy budget spent and left."""
    if not dry_run:
        console.print("Statistics are only sent by a running site daemon in round 0. "
                      "Add --dry-run to print the payload it would send.")
        raise typer.Exit(2)
    limits: SiteLimits | None = None
    if config is not None:
        if data is not None or state is not None or run_config is not None:
            raise _fail("--config gives the data folder, state folder and run file; do not "
                        "combine it with --data, --state or --run-config.")
        site = _site_config(config)
        cfg = _run_settings(site)
        data, state, limits = site.data_dir, site.state_dir, site.limits
    elif data is None:
        raise _fail("Expected --config site.toml or --data DIR, got neither.")
    else:
        try:
            cfg = RunConfig.from_json(run_config.read_text() if run_config else "",
                                      source=str(run_config or "defaults"))
        except (ConfigError, OSError) as err:
            raise _fail(err) from err
    if not data.is_dir():
        raise _fail(f"Data folder {data} is not a folder. Expected the site's data folder.")
    from client.release import make_release  # reads volumes: torch and MONAI, only here

    with tempfile.TemporaryDirectory(prefix="fedmm-site-") as tmp:
        site_cfg = SiteConfig(data_dir=data.resolve(), state_dir=(state or Path(tmp)).resolve(),
                              limits=limits)
        try:
            check_site_limits(cfg, limits)  # what round 0 checks first
            release = make_release(cfg, site_cfg)
        except SiteRefusal as err:
            raise _fail(err) from err
    payload = {RecordKey.STATS.value: {ConfigKey.STATS_JSON.value: release.stats.to_json()}}
    console.print("[bold]This is the whole message content the site would send in round 0[/] "
                  "(no site name, no study ids, counts only as a coarse bucket of a noisy count):")
    print(json.dumps(payload, indent=2))
    print(json.dumps(json.loads(release.stats.to_json()), indent=2))
    _print_accounting(release, kept=state is not None)


def _print_accounting(release: SiteRelease, *, kept: bool) -> None:
    entry = release.entry
    how = ("drawn now and booked in the privacy ledger" if release.fresh else
           f"re-sent from the privacy ledger (drawn {entry.time}; no new cost)")
    console.print(f"Privacy: this release is epsilon {entry.epsilon:g}-differentially private "
                  f"per patient, {how}.", highlight=False)
    budget = ("no lifetime budget (no site limits)" if release.budget is None else
              f"lifetime budget {release.budget:g}, left {release.left:g}")
    console.print(f"Privacy ledger: epsilon {release.spent:g} spent in total; {budget}.",
                  highlight=False)
    if not kept:
        console.print("[yellow]The state folder was temporary: nothing was kept, and round 0 will "
                      "draw its own release. Use --config site.toml (or --state) to draw the one "
                      "round 0 sends.[/]")


@site_app.command("privacy")
def privacy_command(config: SiteConfigOption = Path(SITE_CONFIG_FILE)) -> None:
    """Print the site's privacy ledger: every statistics release, the epsilon spent and left."""
    from client.privacy_ledger import LEDGER_FILE, read_ledger  # OpenDP, only here

    site = _site_config(config)
    ledger = read_ledger(site.state_dir)
    limits = site.limits
    print(f"privacy ledger: {site.state_dir / LEDGER_FILE}")
    for number, entry in enumerate(ledger.entries, start=1):
        covers = entry.covers
        print(f"release {number}: drawn {entry.time}, epsilon {entry.epsilon:g}, unit "
              f"{covers.get('unit', 'study (before issue 13)')}")
        if covers:
            print(f"  covers: modalities {','.join(covers.get('modalities', []))}; "
                  f"{covers.get('hist_bins')} bins; percentiles {covers.get('percentile_low')}-"
                  f"{covers.get('percentile_high')}; {covers.get('spacing_mm')} mm; fields "
                  f"{','.join(covers.get('fields', []))}")
        else:
            print("  covers: not recorded (a line from before draws were kept; never re-sent)")
        print(f"  mechanism: {entry.mechanism}")
        print(f"  fingerprint: {entry.fingerprint[:16]}")
    spent = ledger.spent(unreadable_cost=limits.max_epsilon_per_release)
    if ledger.unreadable:
        worst = max([e.epsilon for e in ledger.entries] + [limits.max_epsilon_per_release])
        console.print(f"[red]{ledger.unreadable} unreadable line(s): each counts as epsilon "
                      f"{worst:g} spent. Fix: keep the file as it is (it is the site's record; "
                      "never delete lines).[/]", highlight=False)
    print(f"releases: {len(ledger.entries) + ledger.unreadable}")
    print(f"epsilon spent: {spent:g}")
    print(f"lifetime budget: {limits.max_epsilon_total:g} ([limits].max_epsilon_total)")
    print(f"epsilon left: {max(limits.max_epsilon_total - spent, 0.0):g}")
