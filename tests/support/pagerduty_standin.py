"""HTTPS stand-in for PagerDuty's Events API v2 (vendor-facts.md section 2), for tests.

``with PagerDutyStandIn() as pd:`` then ``EventsApiV2Client(key, base_url=pd.base_url,
verify=pd.client_ssl_context())`` (``verify=pd.ca_path`` works too, but httpx2 warns that
``verify=<str>`` is deprecated). It validates events like ``POST /v2/enqueue``, tracks alert
state, records every request, fails on demand (``pd.fail_next(429, 503)``) and can hold an
answer back after taking the event (``pd.hold_after_accept(5)``), so a client can die waiting.
"""

from __future__ import annotations

import json
import ssl
import threading
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal, Self

from tests.support.tls import standin_ca

AlertState = Literal["triggered", "acknowledged", "resolved"]
Reply = tuple[int, dict[str, Any], dict[str, str]]

ENQUEUE = "/v2/enqueue"
CHANGE_ENQUEUE = "/v2/change/enqueue"
ACTIONS = ("trigger", "acknowledge", "resolve")
SEVERITIES = ("critical", "error", "warning", "info")
RATE_LIMIT_HEADERS = {"ratelimit-limit": "120", "ratelimit-remaining": "0", "ratelimit-reset": "30"}
THROTTLED = "Requests for this integration are arriving too quickly. Please retry later."
_STOP_TIMEOUT_S = 5.0
_CONNECTION_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: dict[str, Any] | None  # None unless the body was a JSON object
    status: int  # what the stand-in answered


def _text(value: object) -> str:
    """The value if it is a non-blank string, else ""."""
    return value if isinstance(value, str) and value.strip() else ""


def _one_of(name: str, allowed: tuple[str, ...]) -> str:
    return f"'{name}' is invalid (must be one of: {', '.join(allowed)})"


def _iso8601(value: object) -> bool:
    try:
        datetime.fromisoformat(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return True


def _not_strings(obj: dict[str, Any], *names: str) -> bool:
    return any(not isinstance(obj.get(name, ""), str) for name in names)


def _bad_list(value: object, field: str, prefix: str = "") -> bool:
    """Not a list of objects whose `field` is a non-blank string starting with `prefix`."""
    return not isinstance(value, list) or any(
        not isinstance(item, dict) or not _text(item.get(field)).startswith(prefix)
        for item in value
    )


def _routing_key_errors(body: dict[str, Any]) -> list[str]:
    key = _text(body.get("routing_key"))
    if not key:
        return ["'routing_key' is missing or blank"]
    return [] if len(key) == 32 else ["Length of 'routing_key' is incorrect (should be 32)"]


def _payload_errors(payload: object, *, change: bool = False) -> list[str]:
    if not isinstance(payload, dict):
        return ["'payload' is missing or is not an object"]
    summary, severity = _text(payload.get("summary")), payload.get("severity")
    timestamp, details = payload.get("timestamp"), payload.get("custom_details", {})
    checks = [
        (not summary, "'payload.summary' is missing or blank"),
        (len(summary) > 1024, "'payload.summary' is too long (maximum 1024 characters)"),
        (not change and not _text(payload.get("source")), "'payload.source' is missing or blank"),
        (not change and severity not in SEVERITIES, _one_of("payload.severity", SEVERITIES)),
        (timestamp is not None and not _iso8601(timestamp), "'payload.timestamp' is not ISO 8601"),
        (_not_strings(payload, "component", "group", "class"), "'payload.group' etc. not strings"),
        (not isinstance(details, dict), "'payload.custom_details' must be an object"),
    ]
    return [message for failed, message in checks if failed]


def validate_event(body: dict[str, Any]) -> list[str]:
    """One message per problem with an Events API v2 event; empty if it is valid."""
    action, dedup_key = body.get("event_action"), body.get("dedup_key")
    checks = [
        (action not in ACTIONS, _one_of("event_action", ACTIONS)),
        (
            dedup_key is None and action in ACTIONS[1:],
            f"'dedup_key' is required for {action} events",
        ),
        (dedup_key is not None and not _text(dedup_key), "'dedup_key' must be a non-blank string"),
        (len(_text(dedup_key)) > 255, "'dedup_key' is too long (maximum 255 characters)"),
        (_bad_list(body.get("links", []), "href"), "'links' must be objects with an 'href'"),
        (_bad_list(body.get("images", []), "src", "https://"), "'images' need an https 'src'"),
        (_not_strings(body, "client", "client_url"), "'client' and 'client_url' must be strings"),
    ]
    errors = _routing_key_errors(body) + [message for failed, message in checks if failed]
    return errors + (_payload_errors(body.get("payload")) if action == "trigger" else [])


def _invalid(errors: list[str]) -> Reply:
    reply = {"status": "invalid event", "message": "Event object is invalid", "errors": errors}
    return 400, reply, {}


def _fault(status: int) -> Reply:
    if status != 429:
        return status, {"status": "error", "message": HTTPStatus(status).phrase}, {}
    return 429, {"status": "throttle event", "message": THROTTLED}, RATE_LIMIT_HEADERS


class _Server(ThreadingHTTPServer):
    standin: PagerDutyStandIn

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # TLS handshakes refused by untrusting clients, dropped connections


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = _CONNECTION_TIMEOUT_S
    server: _Server

    def setup(self) -> None:
        super().setup()
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.do_handshake()  # here, in the handler thread, not the accept loop

    def do_POST(self) -> None:
        self.server.standin._handle(self)

    do_GET = do_PUT = do_PATCH = do_DELETE = do_POST

    def log_message(self, format: str, *args: Any) -> None:
        pass


class PagerDutyStandIn:
    """HTTPS Events API v2 on 127.0.0.1, a free port, a daemon thread; a context manager."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: deque[int] = deque()
        self._requests: list[Received] = []
        self._alerts: dict[tuple[str, str], AlertState] = {}
        self._opened: list[tuple[str, str]] = []
        self._hold_after_accept = 0.0
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Self:
        self._stopping.clear()
        self._server = server = _Server(("127.0.0.1", 0), _Handler)
        server.standin = self
        try:
            server.socket = standin_ca().server_context.wrap_socket(
                server.socket, server_side=True, do_handshake_on_connect=False
            )
            self._thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
            self._thread.start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopping.set()  # a held answer goes out now: stopping joins the handler threads
        if self._server is not None and self._thread is not None:
            self._server.shutdown()
            self._thread.join(_STOP_TIMEOUT_S)
        if self._server is not None:
            self._server.server_close()
        self._server = self._thread = None

    @property
    def base_url(self) -> str:
        assert self._server is not None, "use PagerDutyStandIn as a context manager"
        return f"https://127.0.0.1:{self._server.server_address[1]}"

    @property
    def ca_path(self) -> str:
        return standin_ca().ca_path

    def client_ssl_context(self) -> ssl.SSLContext:
        """A client context trusting only the stand-in CA, for ``verify=``."""
        return ssl.create_default_context(cafile=self.ca_path)

    def fail_next(self, *statuses: int) -> None:
        """Answer the next requests, in order, with these statuses (429, 5xx or any 4xx)."""
        if any(not 400 <= status <= 599 for status in statuses):
            raise ValueError(f"fault statuses must be 4xx or 5xx, got {statuses}")
        with self._lock:
            self._faults.extend(statuses)

    def hold_after_accept(self, seconds: float) -> None:
        """Take the next valid ``/v2/enqueue`` event (recorded, alert state applied), then wait
        `seconds` before answering 202: a client can die with its event in PagerDuty's hands.
        Other requests are served meanwhile; stopping the stand-in ends the wait."""
        if seconds <= 0:
            raise ValueError(f"hold must be a positive number of seconds, got {seconds!r}")
        with self._lock:
            self._hold_after_accept = seconds

    @property
    def requests(self) -> list[Received]:
        with self._lock:
            return list(self._requests)

    def events(self, action: str | None = None) -> list[dict[str, Any]]:
        """Bodies of accepted (202) ``/v2/enqueue`` events, optionally of one event_action."""
        return [
            r.body
            for r in self.requests
            if r.path == ENQUEUE and r.status == 202 and r.body is not None
            if action is None or r.body.get("event_action") == action
        ]

    def change_events(self) -> list[dict[str, Any]]:
        """Bodies of accepted (202) ``/v2/change/enqueue`` events."""
        return [
            r.body for r in self.requests if r.path == CHANGE_ENQUEUE and r.status == 202 and r.body
        ]

    @property
    def alerts(self) -> dict[tuple[str, str], AlertState]:
        """Alert state per (routing_key, dedup_key)."""
        with self._lock:
            return dict(self._alerts)

    @property
    def opened(self) -> list[tuple[str, str]]:
        """(routing_key, dedup_key) of each alert opened, in order; a repeat is a re-open."""
        with self._lock:
            return list(self._opened)

    def _handle(self, handler: _Handler) -> None:
        raw = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        headers = {name.lower(): value for name, value in handler.headers.items()}
        try:
            decoded = json.loads(raw)
        except ValueError:
            decoded = None
        body = decoded if isinstance(decoded, dict) else None
        path = handler.path.split("?", 1)[0]
        hold = 0.0
        with self._lock:  # record before answering, so a client never outruns `requests`
            status, reply, extra = self._decide(handler.command, path, headers, body)
            self._requests.append(Received(handler.command, path, headers, body, status))
            if status == 202 and path == ENQUEUE:
                hold, self._hold_after_accept = self._hold_after_accept, 0.0
        if hold:
            self._stopping.wait(hold)
        data = json.dumps(reply).encode()
        handler.send_response(status)
        for name, value in {"Content-Type": "application/json", **extra}.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _decide(
        self, method: str, path: str, headers: dict[str, str], body: dict[str, Any] | None
    ) -> Reply:
        if self._faults:
            return _fault(self._faults.popleft())
        if path not in (ENQUEUE, CHANGE_ENQUEUE):
            return _fault(404)
        if method != "POST":
            return _fault(405)
        if headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
            return _invalid(["Content-Type must be application/json"])
        if body is None:
            return _invalid(["Event object is not a JSON object"])
        if path == CHANGE_ENQUEUE:
            errors = _routing_key_errors(body) + _payload_errors(body.get("payload"), change=True)
            return (
                _invalid(errors)
                if errors
                else (202, {"status": "success", "message": "Change event processed"}, {})
            )
        errors = validate_event(body)
        if errors:
            return _invalid(errors)
        dedup_key = body.get("dedup_key") or uuid.uuid4().hex
        self._apply(body["routing_key"], body["event_action"], dedup_key)
        return 202, {"status": "success", "message": "Event processed", "dedup_key": dedup_key}, {}

    def _apply(self, routing_key: str, action: str, dedup_key: str) -> None:
        key = (routing_key, dedup_key)
        is_open = self._alerts.get(key) in ("triggered", "acknowledged")
        if action == "trigger" and not is_open:
            self._alerts[key] = "triggered"
            self._opened.append(key)
        elif action == "acknowledge" and is_open:
            self._alerts[key] = "acknowledged"
        elif action == "resolve" and is_open:
            self._alerts[key] = "resolved"
        # acknowledge/resolve with no open alert: accepted (202) and dropped, like PagerDuty
