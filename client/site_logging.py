"""How the site's task executor and task processes log: one format, no per-request lines.

Their output goes to the site log (``logs/site.log``, through the daemon). httpx logs every
request to the SuperNode's local Runtime API at INFO: the executor asks for a task twice a
second, so an idle site's log would grow by about 0.9 MB an hour of those lines alone (two
lines of about 120 bytes a second). httpx keeps its warnings and errors.
"""

from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_site_logging() -> None:
    """Log at INFO in the site's format, without httpx's line per request."""
    logging.basicConfig(level=logging.INFO, format=FORMAT)
    logging.getLogger("httpx").setLevel(logging.WARNING)
