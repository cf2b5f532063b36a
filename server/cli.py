"""`fedmm server ...`: the coordinator's commands (thin typer edges over typed calls)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from server.certificates import certificate_names, create_certificates
from server.deploy_config import (
    SERVER_CONFIG_FILE,
    ServerDeployConfig,
    SuperLinkSettings,
    load_server_config,
    write_server_config,
)
from server.deploy_run import DeployRunError, output_dir, prepare_run_config, run_on_superlink
from server.site_registry import SiteRegistryError, list_sites, register_site, unregister_site
from server.superlink_daemon import SuperLinkConfigError, exec_superlink
from shared.config import ConfigError
from shared.flower_cli import FlowerCommandNotFoundError

server_app = typer.Typer(help="Commands for the consortium coordinator (the SuperLink side).",
                         no_args_is_help=True)
console = Console()
err_console = Console(stderr=True)

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
    host: Annotated[str, typer.Option(help="Address the SuperLink binds to.")] = "0.0.0.0",
    port: Annotated[int, typer.Option(help="The one port the SuperLink listens on.")] = 9093,
    public_address: Annotated[str | None, typer.Option(
        help="host:port the sites connect to (default: first --dns/--ip and --port).")] = None,
    control_address: Annotated[str | None, typer.Option(
        help="host:port this machine's `flwr` uses (default: 127.0.0.1 and --port).")] = None,
    renew: Annotated[bool, typer.Option(
        "--renew", help="Re-issue the server certificate with the existing CA; keep server.toml.")] = False,
    valid_days: Annotated[int, typer.Option(help="Validity of the server certificate.")] = 825,
) -> None:
    """Create the consortium CA, the SuperLink's TLS certificate and server.toml."""
    dns_names, ips = tuple(dns or ()), tuple(ip or ())
    config_path = out / SERVER_CONFIG_FILE
    if config_path.exists() and not renew:
        raise _fail(f"{config_path} already exists. Fix: use --renew to re-issue the server "
                    "certificate, or choose another --out.", 2)
    try:
        cfg = (load_server_config(config_path) if renew else ServerDeployConfig(
            superlink=SuperLinkSettings(
                host=host, port=port,
                public_address=public_address or f"{(dns_names or ips or ('localhost',))[0]}:{port}",
                control_address=control_address or f"127.0.0.1:{port}")))
        cert_dir = (out / "certs") if not renew else cfg.tls.server_cert.parent
        paths = create_certificates(cert_dir, dns_names=dns_names, ip_addresses=ips,
                                    renew_server=renew, valid_days=valid_days)
    except (ConfigError, ValueError, OSError) as err:
        raise _fail(err, 2) from err
    if not renew:
        write_server_config(cfg, config_path)
    names, expiry = certificate_names(paths.server_cert)
    console.print(f"[green]Coordinator folder ready[/]: {out.resolve()}")
    console.print(f"  server config      {config_path}")
    console.print(f"  CA certificate     {paths.ca_cert}  (send to every site)")
    console.print(f"  CA private key     {paths.ca_key}  (0600; keep offline after this)")
    console.print(f"  server cert / key  {paths.server_cert} / {paths.server_key} (0600)")
    console.print(f"  certificate names  {', '.join(names)}; valid until {expiry:%Y-%m-%d}")
    console.print(f"Sites connect to [bold]{cfg.superlink.public_address}[/]. Next: `fedmm server "
                  f"start --config {config_path}`.")


@server_app.command("start")
def start_command(
    config: ServerConfigOption = Path(SERVER_CONFIG_FILE),
    insecure: Annotated[bool, typer.Option(
        "--insecure", help="No TLS and no site authentication. For tests on one machine ONLY.")] = False,
) -> None:
    """Run the SuperLink in the foreground: TLS, site authentication, persistent state."""
    cfg = _server_config(config)
    if insecure:
        err_console.print("[bold red]WARNING: starting the SuperLink WITHOUT TLS and WITHOUT site "
                          "authentication (--insecure).[/] Anyone who reaches the port can join "
                          "or read traffic; use this only for tests on one machine.")
    console.print(f"Starting flower-superlink on {cfg.superlink.host}:{cfg.superlink.port}; log "
                  f"{cfg.paths.log_file}; state {cfg.paths.database}")
    try:
        exec_superlink(cfg, insecure=insecure)
    except (SuperLinkConfigError, FlowerCommandNotFoundError, OSError) as err:
        raise _fail(err, 2) from err


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
    insecure: InsecureOption = False,
) -> None:
    """Run a federated pretraining on the SuperLink and follow it; exit 1 if it fails."""
    cfg = _server_config(server_config)
    try:
        out_dir = output_dir(cfg, config, out)
        run_cfg = prepare_run_config(config, out_dir=out_dir, resume=resume)
    except ConfigError as err:
        raise _fail(err, 2) from err
    try:
        result = run_on_superlink(cfg, run_cfg, insecure=insecure,
                                  echo=lambda line: console.print(escape(line), highlight=False))
    except (DeployRunError, FlowerCommandNotFoundError) as err:
        raise _fail(err, 1) from err
    console.print(f"[green]Run {result.status.run_id} completed[/] in {result.seconds:.0f} s. "
                  f"Encoder: {result.out_dir / 'encoder.safetensors'}; metrics: "
                  f"{result.out_dir / 'metrics.json'}")
