"""What a site says when it cannot or will not answer: a code, an optional setting name, an incident id.

Flower sends ``str(exception)`` of a failing ClientApp to the server, and exception texts
at a site carry paths, study ids and configuration values. A fedmm site never lets that
happen: every failure leaves as one of these fixed codes (``Error.code``) with a reason
built here from the code, the name of a run setting where the site refused one, and a
random incident id; the full traceback stays in the site's own log under that id
(``client/error_mod.py``, ``client/task_runner.py``). The server reads codes back with
:func:`describe_site_error` for ``metrics.json``.
"""

from __future__ import annotations

import re
import secrets
from enum import IntEnum

#: Settings a site may name when it refuses a run (dotted RunConfig names); nothing else
#: is ever put into a reason.
_SETTING = re.compile(r"^[a-z_]+(\.[a-z_]+)*$")
_REASON = re.compile(r"^fedmm (?P<what>[a-z-]+)(?: \[(?P<setting>[a-z_.]+)\])?"
                     r" \(incident (?P<incident>[0-9a-f]{12})\)$")


class SiteErrorCode(IntEnum):
    """Error codes a fedmm site replies with (above Flower's own, which end at 8)."""

    INTERNAL = 1900          # anything unexpected; the site's log has the traceback
    APP_NOT_APPROVED = 1901  # the run's app bundle is not one the site approved
    SITE_LIMIT = 1902        # the run asks for more than the site's [limits] allow
    CONSENT = 1903           # the run asks for something the site did not consent to send
    NO_USABLE_DATA = 1904    # the site has no study that training can use
    OUTGOING_BLOCKED = 1905  # the outgoing guard stopped a reply
    BAD_SERVER_INPUT = 1906  # the server sent arrays or statistics that are not finite or not as expected


_WHAT = {
    SiteErrorCode.INTERNAL: "internal-error",
    SiteErrorCode.APP_NOT_APPROVED: "app-not-approved",
    SiteErrorCode.SITE_LIMIT: "site-limit",
    SiteErrorCode.CONSENT: "no-consent",
    SiteErrorCode.NO_USABLE_DATA: "no-usable-data",
    SiteErrorCode.OUTGOING_BLOCKED: "reply-blocked",
    SiteErrorCode.BAD_SERVER_INPUT: "bad-server-input",
}
_MEANING = {
    SiteErrorCode.INTERNAL: "failed; the site's log has the details under the incident id",
    SiteErrorCode.APP_NOT_APPROVED: "refused the run: its app bundle is not one this site approved "
    "(`fedmm site approve`)",
    SiteErrorCode.SITE_LIMIT: "refused the run: it asks for more than the site's limits allow",
    SiteErrorCode.CONSENT: "refused the run: it asks the site to send something it did not consent to",
    SiteErrorCode.NO_USABLE_DATA: "has no study that training can use (`fedmm site check`)",
    SiteErrorCode.OUTGOING_BLOCKED: "blocked its own reply: the reply held content that may not leave",
    SiteErrorCode.BAD_SERVER_INPUT: "refused the round: the server sent encoder arrays or statistics "
    "that are not finite or not shaped as the run expects",
}


class SiteRefusal(Exception):
    """A refusal whose code (and setting name) may be told to the server; the message
    itself stays at the site."""

    code: SiteErrorCode = SiteErrorCode.INTERNAL

    def __init__(self, message: str, *, setting: str = "") -> None:
        super().__init__(message)
        if setting and not _SETTING.match(setting):
            raise ValueError(f"expected a dotted setting name such as privacy.epsilon, got {setting!r}")
        self.setting = setting


def new_incident() -> str:
    """A random id under which a site logs a failure (no information in it)."""
    return secrets.token_hex(6)


def site_error_reason(code: SiteErrorCode, incident: str, *, setting: str = "") -> str:
    """The one reason text a site sends with ``code`` (nothing from the exception)."""
    if not re.fullmatch(r"[0-9a-f]{12}", incident):
        raise ValueError(f"expected a 12-hex-digit incident id, got {incident!r}")
    if setting and not _SETTING.match(setting):
        raise ValueError(f"expected a dotted setting name such as privacy.epsilon, got {setting!r}")
    return f"fedmm {_WHAT[code]}{f' [{setting}]' if setting else ''} (incident {incident})"


def is_site_error(code: int, reason: str | None) -> bool:
    """True when ``code``/``reason`` are exactly what :func:`site_error_reason` makes."""
    match = _REASON.match(reason or "")
    return (code in SiteErrorCode._value2member_map_ and match is not None
            and match["what"] == _WHAT[SiteErrorCode(code)])


def describe_site_error(code: int, reason: str | None) -> str:
    """A sentence for the coordinator: what a site's error code means.

    Errors that are not fedmm site errors (Flower's own, e.g. "Node Unavailable") are
    returned as they are, cut to 300 printable characters.
    """
    match = _REASON.match(reason or "")
    if code in SiteErrorCode._value2member_map_ and match is not None:
        what = _MEANING[SiteErrorCode(code)]
        setting = f" (setting {match['setting']})" if match["setting"] else ""
        return f"site {what}{setting}; incident {match['incident']}"
    return "".join(c for c in (reason or "") if c.isprintable())[:300]
