"""The site's executor and task processes log without httpx's line per request."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOGS = """
import logging

from client.site_logging import configure_site_logging
configure_site_logging()
logging.getLogger("httpx").info('HTTP Request: POST http://127.0.0.1:1/v1/runtime/acquire-task')
logging.getLogger("httpx").warning("the SuperNode did not answer")
logging.getLogger("fedmm.site.runner").info("Running approved app bundle")
"""


def test_httpx_keeps_its_warnings_and_loses_its_request_lines() -> None:
    # a process of its own: the root logger of the test process is pytest's
    out = subprocess.run([sys.executable, "-c", LOGS], cwd=ROOT, capture_output=True, text=True,
                         timeout=60, check=True).stderr
    assert "HTTP Request" not in out
    assert "WARNING httpx: the SuperNode did not answer" in out
    assert "INFO fedmm.site.runner: Running approved app bundle" in out
