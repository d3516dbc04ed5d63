"""Atlassian Statuspage (Manage API v1) over `requests`, behind one adapter.

Statuspage allows one request per second per token and answers 420 or 429
past it; `RateLimiter` spaces every call of every worker through Redis.
Errors become PermanentError or TransientError; the API key never appears in
their messages.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import requests
from redis import Redis

from workers.incident.errors import PermanentError, TransientError
from workers.tls import TrustAdapter, ssl_context

Incident = dict[str, Any]


class RateLimiter:
    """One call per `interval` per token, across all workers (a Redis key per slot).

    1.2 s, not 1 s: calls leave at the slot's start but reach Statuspage after
    a connection and a TLS handshake of varying length, so two calls a bare
    second apart can arrive less than a second apart.
    """

    def __init__(self, redis: Redis, key: str, *, interval: float = 1.2, wait: float = 30.0):
        self.redis, self.key, self.interval, self.wait = redis, key, interval, wait

    def acquire(self) -> None:
        deadline = time.monotonic() + self.wait
        while not self.redis.set(self.key, "1", nx=True, px=int(self.interval * 1000)):
            if time.monotonic() > deadline:
                raise TransientError("Statuspage rate limit: no free slot in time")
            remaining = self.redis.pttl(self.key)
            time.sleep(max(int(remaining), 10) / 1000 if isinstance(remaining, int) else 0.05)


class Statuspage:
    def __init__(
        self,
        *,
        base_url: str,
        page_id: str,
        api_key: str,
        ca_bundle: str | None,
        limiter: RateLimiter,
        timeout: float = 10.0,
    ) -> None:
        self.base = f"{base_url}/pages/{page_id}"
        self.limiter = limiter
        self.timeout = timeout
        self.session = requests.Session()
        self.session.mount("https://", TrustAdapter(ssl_context(ca_bundle)))
        self.session.headers["Authorization"] = f"OAuth {api_key}"

    @staticmethod
    def limiter_key(prefix: str, api_key: str) -> str:
        return f"{prefix}statuspage:slot:{hashlib.sha256(api_key.encode()).hexdigest()[:16]}"

    def create(self, fields: dict[str, Any]) -> Incident:
        return dict(self._call("POST", "/incidents", {"incident": fields}))

    def update(self, incident_id: str, fields: dict[str, Any]) -> Incident:
        return dict(self._call("PATCH", f"/incidents/{incident_id}", {"incident": fields}))

    def find_unresolved(self, alertpilot_id: str) -> Incident | None:
        """The open incident tagged with this alertpilot incident (metadata), if any."""
        found = self._call("GET", "/incidents/unresolved", None)
        for incident in found if isinstance(found, list) else []:
            tag = (incident.get("metadata") or {}).get("alertpilot") or {}
            if tag.get("incident_id") == alertpilot_id:
                return dict(incident)
        return None

    def _call(self, method: str, path: str, body: dict[str, Any] | None) -> Any:
        self.limiter.acquire()
        try:
            response = self.session.request(
                method, self.base + path, json=body, timeout=self.timeout
            )
        except requests.RequestException as exc:
            raise TransientError(f"Statuspage unreachable ({type(exc).__name__})") from None
        if response.status_code in (420, 429) or response.status_code >= 500:
            retry_after = response.headers.get("Retry-After", "")
            raise TransientError(
                f"Statuspage answered {response.status_code}",
                retry_after=float(retry_after) if retry_after.isdigit() else None,
            )
        if response.status_code >= 400:
            raise PermanentError(f"Statuspage answered {response.status_code}: {_error(response)}")
        return response.json()


def _error(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    error = body.get("error") if isinstance(body, dict) else body
    return "; ".join(error) if isinstance(error, list) else str(error)[:200]
