"""TLS trust for vendor calls: the system's CAs, plus ALERTPILOT_CA_BUNDLE when set."""

from __future__ import annotations

import ssl
from typing import Any

from requests.adapters import HTTPAdapter


def ssl_context(ca_bundle: str | None) -> ssl.SSLContext:
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
