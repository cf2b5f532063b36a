"""The outermost ClientApp mod: no failure text ever leaves a site.

Flower turns an exception in a ClientApp into an error reply carrying ``str(exception)``,
and a site's exceptions name files, study ids and its own settings. This mod runs around
everything else (the outgoing guard included): any exception, and any error reply made
another way, becomes one fixed code from ``shared/site_errors.py`` with a random incident
id; the traceback is logged at the site only, under that id, so the site's operator can
find it when the coordinator quotes the incident.
"""

from __future__ import annotations

import logging

from flwr.app import Context, Error, Message
from flwr.clientapp.typing import ClientAppCallable

from shared.site_errors import (
    SiteErrorCode,
    SiteRefusal,
    is_site_error,
    new_incident,
    site_error_reason,
)

log = logging.getLogger("fedmm.site")


def error_reply(msg: Message, code: SiteErrorCode, *, setting: str = "",
                cause: BaseException | None = None, detail: str = "") -> Message:
    """The error reply for ``msg``; the cause (traceback) or detail goes to the site's log only."""
    incident = new_incident()
    if cause is not None:
        log.error("Incident %s (%s message): %s", incident, msg.metadata.message_type, cause,
                  exc_info=cause)
    else:
        log.error("Incident %s (%s message): %s", incident, msg.metadata.message_type, detail)
    return Message(Error(code=int(code), reason=site_error_reason(code, incident, setting=setting)),
                   reply_to=msg)


def contain_errors(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Flower mod: run the app; turn any failure into a code and an incident id."""
    try:
        reply = call_next(msg, context)
    except SiteRefusal as err:
        return error_reply(msg, err.code, setting=err.setting, cause=err)
    except Exception as err:  # everything: no exception text may reach the server
        return error_reply(msg, SiteErrorCode.INTERNAL, cause=err)
    if reply.has_error() and not is_site_error(reply.error.code, reply.error.reason):
        return error_reply(msg, SiteErrorCode.INTERNAL,
                           detail=f"an error reply (code {reply.error.code}) was made inside "
                           f"the app: {reply.error.reason}")
    return reply
