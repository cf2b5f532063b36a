"""`fedmm server ...`: the coordinator's commands (thin typer edges over typed calls)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from server.certificates import certificate_names, create_certificates, default_ca_key_dir
from server.deploy_config import (
    SERVER_CONFIG_FILE,
    ServerDeployConfig,
    SuperLinkSettings,
    load_server_config,
    write_server_config,
)
from server.proxy import ProxyError, write_proxy_config
from server.site_registry import SiteRegistryError, list_sites, register_site, unregister_site
from server.superlink_daemon import (
    SuperLinkConfigError,
    ensure_superexec_secret,
    prepare_coordinator,
    run_coordinator,
)
from server.tracking import TrackingError, check_tracking, where_to_look, with_mlflow
from shared.app_bundle import AppBundleError, app_dir, app_sha256
from shared.cert_validity import certificate_validity
from shared.config import ConfigError
from shared.flower_cli import FlowerCommandNotFoundError

server_app = typer.Typer(help="Commands for the consortium coordinator (the SuperLink side).",
                         no_args_is_help=True)
console = Console()
err_console = Console(stderr=True)


@server_app.callback()
def _private_files() -> None:
    """Everything these commands create (state, logs, keys, runs) is the coordinator's own:
    0700 folders and 0600 files, whatever the shell's umask."""
    os.umask(0o077)

ServerConfigOption = Annotated[Path, typer.Option(
    "--config", envvar="FEDMM_SERVER_CONFIG",
    help="The coordinator's server.toml (from `fedmm server init`).")]
InsecureOption = Annotated[bool, typer.Option(
    "--insecure", help="Talk to a SuperLink started with --insecure (local tests only).")]


def _fail(message: object, code: int) -> typer.Exit:
    err_console.print(f"[red]{escape(str(message))}[/]", highlight=False)
    return typer.Exit(code)


def _server_config(path: Path) -> ServerDeployConfig:
    try:
        return load_server_config(path)
    except ConfigError as err:
        raise _fail(err, 2) from err


@server_app.command("init")
def init_command(
    out: Annotated[Path, typer.Option("--out", help="Folder for server.toml and certs/.")],
    dns: Annotated[list[str] | None, typer.Option(
        "--dns", help="Host name the sites use to reach the SuperLink (repeatable).")] = None,
    ip: Annotated[list[str] | None, typer.Option(
        "--ip", help="IP address the sites use to reach the SuperLink (repeatable).")] = None,
    host: Annotated[str, typer.Option(
        help="Address the public port binds to (the proxy's; the SuperLink itself binds "
        "127.0.0.1).")] = "0.0.0.0",
    port: Annotated[int, typer.Option(help="The one public port sites connect to.")] = 9093,
    internal_port: Annotated[int, typer.Option(
        help="The SuperLink's own port on 127.0.0.1 (never reachable from outside).")] = 9091,
    public_address: Annotated[str | None, typer.Option(
        help="host:port the sites connect to (default: first --dns/--ip and --port).")] = None,
    ca_key_dir: Annotated[Path | None, typer.Option(
        help="Folder for the CA's private key, to take offline (default: OUT-ca-offline, "
        "beside --out). With --renew: where to read it from.")] = None,
    renew: Annotated[bool, typer.Option(
        "--renew", help="Re-issue the server certificate with the existing CA; keep server.toml.")] = False,
    valid_days: Annotated[int, typer.Option(help="Validity of the server certificate.")] = 825,
) -> None:
    """Create the consortium CA, the TLS certificate, server.toml and the proxy's config."""
    dns_names, ips = tuple(dns or ()), tuple(ip or ())
    config_path = out / SERVER_CONFIG_FILE
    key_dir = (ca_key_dir or default_ca_key_dir(out)).expanduser().resolve()
    if config_path.exists() and not renew:
        raise _fail(f"{config_path} already exists. Fix: use --renew to re-issue the server "
                    "certificate, or choose another --out.", 2)
    if not renew and key_dir.resolve().is_relative_to(out.expanduser().resolve()):
        raise _fail(f"--ca-key-dir {key_dir} is inside --out {out}: the CA key would stay in the "
                    "coordinator folder. Fix: choose a folder outside it (it is taken offline).", 2)
    try:
        cfg = (load_server_config(config_path) if renew else ServerDeployConfig(
            superlink=SuperLinkSettings(
                host=host, port=port, internal_port=internal_port,
                public_address=public_address or f"{(dns_names or ips or ('localhost',))[0]}:{port}",
            )).resolved(out.expanduser().resolve()))
        cert_dir = cfg.tls.server_cert.parent
        paths = create_certificates(cert_dir, ca_key_dir=key_dir, dns_names=dns_names,
                                    ip_addresses=ips, renew_server=renew, valid_days=valid_days)
        if not renew:
            write_server_config(ServerDeployConfig(superlink=cfg.superlink), config_path)
            ensure_superexec_secret(cfg)
            write_proxy_config(cfg)
    except (ConfigError, ValueError, OSError, ProxyError) as err:
        raise _fail(err, 2) from err
    names, expiry = certificate_names(paths.server_cert)
    console.print(f"[green]Coordinator folder ready[/]: {out.resolve()}")
    console.print(f"  server config      {config_path}")
    console.print(f"  proxy config       {cfg.paths.proxy_config}  (nginx; only the Fleet API "
                  "reaches the SuperLink)")
    console.print(f"  CA certificate     {paths.ca_cert}  (send to every site)")
    console.print(f"  server cert / key  {paths.server_cert} / {paths.server_key} (0600)")
    console.print(f"  certificate names  {', '.join(names)}; valid until {expiry:%Y-%m-%d}")
    console.print(f"[bold yellow]CA private key     {paths.ca_key}[/] (0600): take the folder "
                  f"{key_dir} OFFLINE now (encrypted USB, vault) and delete it here. The "
                  "coordinator never needs it; `fedmm server init --renew --ca-key-dir ...` does.")
    console.print(f"Sites connect to [bold]{cfg.superlink.public_address}[/]. Next: `fedmm server "
                  f"start --config {config_path}`.")


@server_app.command("start")
def start_command(
    config: ServerConfigOption = Path(SERVER_CONFIG_FILE),
    insecure: Annotated[bool, typer.Option(
        "--insecure", help="No TLS and no site authentication. For tests on one machine ONLY.")] = False,
) -> None:
    """Run the coordinator in the foreground: the SuperLink (127.0.0.1, TLS, site
    authentication, persistent state), its SuperExec and the proxy on the public port."""
    cfg = _server_config(config)
    if insecure:
        err_console.print("[bold red]WARNING: starting the coordinator WITHOUT TLS and WITHOUT "
                          "site authentication (--insecure).[/] Anyone who reaches the port can "
                          "join or read traffic; use this only for tests on one machine.")
    try:
        warnings = prepare_coordinator(cfg, insecure=insecure)
    except (SuperLinkConfigError, ProxyError, FlowerCommandNotFoundError, OSError) as err:
        raise _fail(err, 2) from err
    for warning in warnings:
        err_console.print(f"[yellow]Warning: {escape(warning)}.[/]", highlight=False)
    _warn_if_ca_key_here(cfg)
    console.print(f"Starting the coordinator: proxy on {cfg.superlink.host}:{cfg.superlink.port} "
                  f"(Fleet API only) -> SuperLink on 127.0.0.1:{cfg.superlink.internal_port}; logs "
                  f"in {cfg.paths.log_file.parent}; state {cfg.paths.database}", highlight=False)
    try:
        code = run_coordinator(cfg, insecure=insecure)
    except (FlowerCommandNotFoundError, OSError) as err:
        raise _fail(err, 2) from err
    raise typer.Exit(code)


def _warn_if_ca_key_here(cfg: ServerDeployConfig) -> None:
    root = cfg.paths.proxy_config.parent
    for candidate in (cfg.tls.ca_cert.parent / "ca.key", default_ca_key_dir(root) / "ca.key"):
        if candidate.exists():
            err_console.print(f"[bold yellow]Warning: the CA's private key {candidate} is on this "
                              "machine. Anyone who takes over the coordinator can then issue "
                              "certificates sites trust. Move it offline.[/]", highlight=False)


@server_app.command("register-site")
def register_site_command(
    public_key: Annotated[str, typer.Argument(
        help="The site's public key: the .pub file from `fedmm site init`, or its line.")],
    name: Annotated[str, typer.Option("--name", help="The site's name (for `fedmm server sites`).")],
    config: ServerConfigOption = Path(SERVER_CONFIG_FILE),
) -> None:
    """Admit a hospital: register its public key with the SuperLink."""
    cfg = _server_config(config)
    try:
        node_id = register_site(cfg, public_key, name=name)
    except ValueError as err:
        raise _fail(err, 2) from err
    except (SiteRegistryError, FlowerCommandNotFoundError) as err:
        raise _fail(err, 1) from err
    console.print(f"[green]Registered[/] site {name!r} as node {node_id}.")


@server_app.command("unregister-site")
def unregister_site_command(
    node_id: Annotated[str, typer.Argument(help="The node id shown by `fedmm server sites`.")],
    config: ServerConfigOption = Path(SERVER_CONFIG_FILE),
) -> None:
    """Remove a site's registration (after a key rotation, or when a site leaves)."""
    cfg = _server_config(config)
    try:
        unregister_site(cfg, node_id)
    except (SiteRegistryError, FlowerCommandNotFoundError) as err:
        raise _fail(err, 1) from err
    console.print(f"[green]Unregistered[/] node {node_id}; its key is refused from now on.")


@server_app.command("sites")
def sites_command(
    config: ServerConfigOption = Path(SERVER_CONFIG_FILE),
    insecure: InsecureOption = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List registered sites and whether they are online."""
    cfg = _server_config(config)
    try:
        sites = list_sites(cfg, insecure=insecure)
    except (SiteRegistryError, FlowerCommandNotFoundError) as err:
        raise _fail(err, 1) from err
    if as_json:
        print(json.dumps([{"node_id": s.node_id, "name": s.name, "status": s.status,
                           "fingerprint": s.fingerprint, **s.details} for s in sites], indent=2))
        return
    table = Table("node id", "name", "status", "since", "key fingerprint")
    for s in sites:
        since = s.details.get("online-at") if s.status == "online" else s.details.get("offline-at")
        table.add_row(s.node_id, s.name, s.status, str(since or ""), s.fingerprint)
    console.print(table)
    _print_certificates(cfg)


def _print_certificates(cfg: ServerDeployConfig) -> None:
    """Days to expiry of the certificates sites rely on; a warning under 30 days."""
    for path, what in ((cfg.tls.server_cert, "server certificate"), (cfg.tls.ca_cert, "CA certificate")):
        try:
            validity = certificate_validity(path, name=f"The {what}")
        except ValueError as err:
            err_console.print(f"[red]{escape(str(err))}[/]")
            continue
        style = "red" if validity.problem() else "yellow" if validity.warning() else "green"
        console.print(f"[{style}]{escape(validity.summary())}[/] ({path})", highlight=False)
        if validity.warning():
            console.print(f"[yellow]Warning: {escape(validity.warning())}: re-issue it with "
                          "`fedmm server init --out DIR --renew --ca-key-dir ...`.[/]",
                          highlight=False)


@server_app.command("app-hash")
def app_hash_command(
    app: Annotated[Path | None, typer.Option(
        "--app", help="The Flower app folder (default: this fedmm installation).")] = None,
) -> None:
    """Print the sha256 of the app bundle `fedmm server run` submits; sites approve it."""
    try:
        digest = app_sha256(app.resolve() if app else None)
    except AppBundleError as err:
        raise _fail(err, 2) from err
    console.print(f"App bundle of {escape(str(app or app_dir()))}: sites compare this with "
                  "`fedmm site approve` before they run it:", highlight=False)
    print(digest)


@server_app.command("run")
def run_command(
    config: Annotated[Path, typer.Option(
        "--config", help="RUN.toml: RunConfig sections ([data] [pretext] [train] [federation] "
        "[privacy] ...), the same as a `simulate` scenario without [simulation].")],
    server_config: Annotated[Path, typer.Option(
        "--server-config", envvar="FEDMM_SERVER_CONFIG",
        help="The coordinator's server.toml.")] = Path(SERVER_CONFIG_FILE),
    out: Annotated[Path | None, typer.Option(
        help="Output folder (default <runs_dir>/<RUN.toml name>): checkpoints, metrics, encoder.")] = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue the run in the output folder from its last checkpoint.")] = False,
    app: Annotated[Path | None, typer.Option(
        "--app", help="The Flower app folder to submit (default: this fedmm installation). "
        "Sites run it only if they approved its sha256 (`fedmm server app-hash`).")] = None,
    insecure: InsecureOption = False,
    mlflow: Annotated[str | None, typer.Option(
        "--mlflow", metavar="URI", help="Also log the server's metrics to this MLflow tracking "
        "server (http://host:5000, sqlite:///abs/mlflow.db, file:///abs/mlruns); needs the "
        "mlflow extra. Same as [tracking] mlflow_uri in RUN.toml.")] = None,
) -> None:
    """Run a federated pretraining on the SuperLink and follow it; exit 1 if it fails."""
    # The run's code (torch, MONAI) is imported here only: the other `fedmm server` commands
    # start without it.
    from server.deploy_run import DeployRunError, output_dir, prepare_run_config, run_on_superlink

    cfg = _server_config(server_config)
    try:
        out_dir = output_dir(cfg, config, out)
        run_cfg = with_mlflow(prepare_run_config(config, out_dir=out_dir, resume=resume), mlflow)
        check_tracking(run_cfg.tracking)
    except (ConfigError, TrackingError) as err:
        raise _fail(err, 2) from err
    for line in where_to_look(out_dir, run_cfg.tracking):
        console.print(f"  {escape(line)}", highlight=False)
    try:
        result = run_on_superlink(cfg, run_cfg, app=app.resolve() if app else None, insecure=insecure,
                                  echo=lambda line: console.print(escape(line), highlight=False))
    except (DeployRunError, FlowerCommandNotFoundError) as err:
        raise _fail(err, 1) from err
    console.print(f"[green]Run {result.status.run_id} completed[/] in {result.seconds:.0f} s. "
                  f"Encoder: {result.out_dir / 'encoder.safetensors'}")
    for line in where_to_look(result.out_dir, run_cfg.tracking):
        console.print(f"  {escape(line)}", highlight=False)
