"""Chat: a Slack-compatible incoming webhook, behind one adapter (`requests`)."""

from __future__ import annotations

import logging
from typing import Any

import requests

from workers.incident.errors import PermanentError, TransientError
from workers.tls import TrustAdapter, ssl_context

# urllib3 logs each request line at DEBUG, and a Slack webhook's path is its secret.
_connections = logging.getLogger("urllib3.connectionpool")
_connections.setLevel(max(_connections.level, logging.INFO))


class Chat:
    def __init__(self, *, webhook_url: str, ca_bundle: str | None, timeout: float = 10.0) -> None:
        self.url = webhook_url
        self.timeout = timeout
        self.session = requests.Session()
        self.session.mount("https://", TrustAdapter(ssl_context(ca_bundle)))

    def post(self, message: dict[str, Any]) -> None:
        try:
            response = self.session.post(self.url, json=message, timeout=self.timeout)
        except requests.RequestException as exc:
            raise TransientError(f"chat webhook unreachable ({type(exc).__name__})") from None
        if response.status_code == 429 or response.status_code >= 500:
            retry_after = response.headers.get("Retry-After", "")
            raise TransientError(
                f"chat webhook answered {response.status_code}",
                retry_after=float(retry_after) if retry_after.isdigit() else None,
            )
        if response.status_code >= 400:
            # Slack answers a short reason (no_text, invalid_payload); the URL is the secret.
            raise PermanentError(
                f"chat webhook answered {response.status_code}: {response.text[:100]}"
            )
