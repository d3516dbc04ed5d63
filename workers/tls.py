"""TLS trust for vendor calls: the system's CAs, plus ALERTPILOT_CA_BUNDLE when set."""

from __future__ import annotations

import functools
import os
import ssl
from typing import Any

from requests.adapters import HTTPAdapter


def ssl_context(ca_bundle: str | None) -> ssl.SSLContext:
    """One context per bundle and version of it, made once per process: loading the
    system's CAs takes ~30 ms, longer than a whole job. A rotated bundle (a new
    mtime) gets a new context; a context is safe to share between clients."""
    version = os.stat(ca_bundle).st_mtime_ns if ca_bundle else 0
    return _context(ca_bundle, version)


@functools.lru_cache(maxsize=4)
def _context(ca_bundle: str | None, version: int) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if ca_bundle:
        context.load_verify_locations(cafile=ca_bundle)
    return context


class TrustAdapter(HTTPAdapter):
    """Verifies with `ssl_context(...)`: requests' own verify= replaces the CAs, not adds."""

    def __init__(self, context: ssl.SSLContext, **kwargs: Any) -> None:
        self._context = context
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["ssl_context"] = self._context
        super().init_poolmanager(*args, **kwargs)
