"""fedmm's ClientApp process at a deployed site: runs a task only if the site approved its code.

Flower's SuperNode installs and executes whatever app bundle (FAB) the SuperLink sends.
fedmm's site daemon runs the SuperNode with ``--isolation process``, so it starts no
ClientApp itself; fedmm's task executor (``client/task_executor.py``) runs this runner in
a new process for every task instead (``run_forked``, forked from a warm parent). Like
Flower's ``flwr-clientapp`` it pulls the task (message, context, run, bundle) from the
SuperNode's Runtime API, runs the ClientApp and pushes the reply, with two differences:

1. **Approval, before any of the bundle runs.** The sha256 of the bundle's bytes must
   equal the hash the SuperLink announced and one of ``approved_apps`` in site.toml
   (read for every task, so an approval takes effect at once). Otherwise nothing is
   installed or imported: the refusal is logged here with both hashes and the server gets
   only the code ``app-not-approved``. This is Fed-BioMed's training-plan approval built
   on Flower's own process isolation (Flower's ``--trusted-entities`` signing needs a
   SuperLink feature the open-source edition lacks).
2. **No failure text leaves.** Any exception, and any error reply that is not a fedmm
   site error, becomes a fixed code and an incident id (``shared/site_errors.py``); the
   traceback stays in this process's output, which the site daemon writes to the site log.

The approved bundle's own code is what runs: fedmm's modules imported by this runner are
dropped from ``sys.modules`` before the bundle is loaded from Flower's app folder.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from flwr.app import Context, Error, Message
from flwr.cli.install import install_from_fab
from flwr.clientapp.utils import get_load_client_app_fn
from flwr.common.constant import SubStatus
from flwr.supercore.app_utils import start_parent_process_monitor
from flwr.supercore.heartbeat import HeartbeatSender, make_task_heartbeat_fn_http
from flwr.supercore.interceptors import RuntimeTokenHttpInterceptor, RuntimeVersionHttpInterceptor
from flwr.supercore.retry import make_simple_http_retry_invoker
from flwr.supercore.runtime import RuntimeHttpClient
from flwr.supernode.runtime.run_clientapp import pull_task_input, push_message, push_task_output

from client.deploy_config import load_site_config
from client.site_logging import configure_site_logging
from shared.app_bundle import bundle_sha256
from shared.site_errors import SiteErrorCode, is_site_error, new_incident, site_error_reason

log = logging.getLogger("fedmm.site.runner")
#: Top-level packages of fedmm: dropped before an approved bundle's copy is imported.
_FEDMM_PACKAGES = ("client", "server", "shared")


@dataclass(frozen=True)
class BundleVerdict:
    """Whether a bundle may run, and its hashes for the site's log."""

    sha256: str
    claimed: str
    approved: bool

    def refusal(self, approved: frozenset[str]) -> str:
        """The log line explaining a refusal (stays at the site)."""
        mismatch = ("" if self.sha256 == self.claimed else
                    f" (the SuperLink announced {self.claimed}, which does not match its bytes)")
        return (f"REFUSED a task: its app bundle has sha256 {self.sha256}{mismatch}; this site "
                f"approved {sorted(approved) or 'no bundle'} (site.toml approved_apps). Nothing of "
                "it was installed or run. If the coordinator announced this hash for the run, "
                "compare it with `fedmm server app-hash` there and approve it with `fedmm site "
                f"approve --hash {self.sha256} --config site.toml`.")


def verify_bundle(content: bytes, *, claimed: str, approved: frozenset[str]) -> BundleVerdict:
    """Check a bundle's bytes against the announced hash and the site's approvals."""
    digest = bundle_sha256(content)
    return BundleVerdict(sha256=digest, claimed=claimed,
                         approved=digest == claimed and digest in approved)


def forget_fedmm_modules() -> None:
    """Drop fedmm's own modules so the bundle's copies are imported from its folder."""
    for name in list(sys.modules):
        if name.split(".", 1)[0] in _FEDMM_PACKAGES:
            del sys.modules[name]


def _error(msg: Message, code: SiteErrorCode, *, cause: BaseException | None = None,
           detail: str = "") -> Message:
    incident = new_incident()
    if cause is not None:
        log.error("Incident %s: %s", incident, cause, exc_info=cause)
    else:
        log.error("Incident %s: %s", incident, detail)
    return Message(Error(code=int(code), reason=site_error_reason(code, incident)), reply_to=msg)


def _contained(msg: Message, reply: Message) -> Message:
    """The reply, unless it is an error whose text is not a fedmm site error."""
    if reply.has_error() and not is_site_error(reply.error.code, reply.error.reason):
        return _error(msg, SiteErrorCode.INTERNAL,
                      detail=f"error reply (code {reply.error.code}): {reply.error.reason}")
    return reply


def run_task(*, runtime_api_address: str, token: str, site_config: Path) -> int:
    """Run one task from the SuperNode; return the process exit code (0 when it completed)."""
    client = RuntimeHttpClient.from_server_address(
        server_address=runtime_api_address, insecure=True, root_certificates=None,
        interceptors=[RuntimeVersionHttpInterceptor(component_name="flwr-clientapp"),
                      RuntimeTokenHttpInterceptor(token)],
        retry_invoker=make_simple_http_retry_invoker())
    heartbeat = HeartbeatSender(make_task_heartbeat_fn_http(client))
    heartbeat.start()
    message: Message | None = None
    context: Context | None = None
    reply: Message | None = None
    status, details = SubStatus.FAILED, "fedmm task failed (see the site log)"
    try:
        message, context, run, fab = pull_task_input(client)
        approved = load_site_config(site_config).approved_hashes
        verdict = verify_bundle(fab.content, claimed=fab.hash_str, approved=approved)
        if not verdict.approved:
            reply = _error(message, SiteErrorCode.APP_NOT_APPROVED, detail=verdict.refusal(approved))
            details = "app bundle not approved by this site"
        else:
            log.info("Running approved app bundle %s (%s message).", verdict.sha256,
                     message.metadata.message_type)
            install_from_fab(fab.content, skip_prompt=True)
            forget_fedmm_modules()
            load = get_load_client_app_fn(default_app_ref="", app_path=None, multi_app=True)
            client_app = load(run.fab_id, run.fab_version, fab.hash_str)
            reply = _contained(message, client_app(message=message, context=context))
            status, details = SubStatus.COMPLETED, ""
    except Exception as err:  # every failure: no exception text may reach the server
        if message is not None:
            reply = _error(message, SiteErrorCode.INTERNAL, cause=err)
        else:
            log.error("Could not pull the task from the SuperNode: %s", err, exc_info=err)
    finally:
        try:
            if reply is not None and context is not None:
                push_message(client, reply, context)
            push_task_output(client=client, context=context, sub_status=status, details=details)
        finally:
            heartbeat.stop()
            client.close()
    return 0 if status == SubStatus.COMPLETED else 1


def run_forked(*, token: str, runtime_api_address: str, site_config: Path, executor_pid: int) -> None:
    """One task in a process of its own, forked by the task executor; exits with its code.

    The process stops (as on Ctrl-C) when the executor ends, whatever ends it.
    """
    configure_site_logging()
    start_parent_process_monitor(executor_pid)
    sys.exit(run_task(runtime_api_address=runtime_api_address, token=token, site_config=site_config))
