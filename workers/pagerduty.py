"""PagerDuty Events API v2, behind one adapter: the `pagerduty` package stops here.

Its errors become PermanentError or TransientError with a message built from
the status and PagerDuty's own error text, never from the client's exception
(whose text can carry part of the routing key). Its own retries are capped to
one per failing status, so an attempt always ends well inside the job timeout;
longer waits are RQ retries with backoff (workers/jobs/dispatch.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pagerduty import Error, EventsApiV2Client, HttpError, UrlError

from workers.incident.errors import PermanentError, TransientError
from workers.tls import ssl_context

Severity = Literal["critical", "error", "warning", "info"]


@dataclass(frozen=True)
class Event:
    action: Literal["trigger", "resolve"]
    dedup_key: str
    summary: str = ""
    source: str = ""
    severity: Severity = "critical"
    links: list[dict[str, str]] = field(default_factory=list)
    custom_details: dict[str, Any] = field(default_factory=dict)


class PagerDuty:
    def __init__(self, *, base_url: str, ca_bundle: str | None, timeout: int = 10) -> None:
        self.base_url = base_url
        self.context = ssl_context(ca_bundle)
        self.timeout = timeout

    def send(self, routing_key: str, event: Event) -> str:
        """Send one event; the dedup_key PagerDuty answered with."""
        try:
            client = EventsApiV2Client(routing_key, base_url=self.base_url, verify=self.context)
        except UrlError:
            raise PermanentError(f"PagerDuty events URL is not usable: {self.base_url}") from None
        client.timeout = int(self.timeout)  # the client reads this attribute, not the kwarg
        # One retry per failing status, none for network errors: an attempt takes at
        # most two requests and a 2 s pause (about 25 s); longer waits are RQ retries.
        client.retry = {429: 1, 500: 1, 502: 1, 503: 1, 504: 1}
        client.sleep_timer = 1.0
        client.max_http_attempts = 2
        client.max_network_attempts = 0
        try:
            if event.action == "resolve":
                return str(client.resolve(event.dedup_key))
            return str(
                client.trigger(
                    event.summary[:1024],
                    event.source,
                    dedup_key=event.dedup_key,
                    severity=event.severity,
                    custom_details=event.custom_details,
                    links=event.links,
                )
            )
        except HttpError as exc:
            if exc.response is not None and 200 <= int(exc.response.status_code) < 300:
                return event.dedup_key  # accepted; only its answer was odd
            raise _classify(exc.response) from None
        except Error:
            raise TransientError("PagerDuty unreachable") from None
        except Exception as exc:  # httpx2 errors the client does not wrap, and the like
            raise TransientError(f"PagerDuty call failed ({type(exc).__name__})") from None


def _classify(response: Any) -> PermanentError | TransientError:
    status = int(response.status_code)
    detail = _error_text(response)
    message = f"PagerDuty answered {status}" + (f": {detail}" if detail else "")
    if status == 429 or status >= 500:
        reset = response.headers.get("ratelimit-reset")
        retry_after = float(reset) if reset and reset.isdigit() else None
        return TransientError(message, retry_after=retry_after)
    return PermanentError(message)


def _error_text(response: Any) -> str:
    """PagerDuty's message and errors from the body, e.g. "Event object is invalid"."""
    try:
        body = response.json()
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    parts = [str(body.get("message") or "")]
    errors = body.get("errors")
    if isinstance(errors, list):
        parts += [str(e) for e in errors]
    return "; ".join(p for p in parts if p)[:500]
