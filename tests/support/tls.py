"""A throwaway certificate authority for HTTPS stand-in servers (trustme).

Clients that insist on https (the `pagerduty` package rejects any other base
URL) are pointed at the stand-ins with `verify=<ca_path>` or
ALERTPILOT_CA_BUNDLE=<ca_path>; nothing here is trusted outside the test.
"""

from __future__ import annotations

import ssl
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import trustme


@dataclass(frozen=True)
class StandInCA:
    ca_path: str
    """PEM file of the CA, for `verify=` and ALERTPILOT_CA_BUNDLE."""
    server_context: ssl.SSLContext
    """Server-side TLS context with a certificate for 127.0.0.1 and localhost."""


@cache
def standin_ca() -> StandInCA:
    """One CA per test session; its files live in a temporary directory."""
    ca = trustme.CA()
    directory = Path(tempfile.mkdtemp(prefix="alertpilot-ca-"))
    ca_path = directory / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return StandInCA(str(ca_path), context)
