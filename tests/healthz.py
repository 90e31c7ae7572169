"""Asking a starting ``outreach serve`` whether it answers, cheaply.

Tests poll ``/healthz`` every few milliseconds while serve starts up on the same two
cores: a request over ``http.client`` costs about 60 µs of CPU, where ``httpx.get`` builds
a client and its TLS context each time (about 23 ms) and would take a core from the
server it waits for.
"""

from __future__ import annotations

import http.client
from urllib.parse import urlsplit


def healthz(url: str, timeout: float = 1.0) -> int | None:
    """The status of ``GET {url}/healthz``, or None when nothing answers there."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()
