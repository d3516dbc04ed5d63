"""A local HTTPS stand-in for chat webhooks: a Slack incoming webhook and a generic JSON hook.

    with ChatStandIn() as chat:
        requests.post(chat.slack_url, json={"text": "hi"}, verify=chat.ca_path, timeout=5)
        assert chat.messages == [ChatMessage(chat.slack_url, {"text": "hi"})]

Slack (``slack_url``, POST): a JSON object (or form field ``payload=<json>``) with a non-empty
``text`` and/or ``blocks`` -> 200 ``ok`` (text/plain); unparsable or not an object -> 400
``invalid_payload``; neither -> 400 ``no_text``; other paths -> 404 ``no_service``; other
methods -> 405 ``invalid_method``. Generic (``generic_url``, POST): any JSON object -> 204;
anything else -> 400 ``invalid_payload``. ``fail_next(429, 500, ...)`` answers the next
requests (to either URL) with those statuses; a 429 on the Slack URL carries ``Retry-After: 1``.

This module also holds the loopback HTTPS server both stand-ins share (``HTTPSStandIn``,
``Received``, ``Reply``); ``statuspage_standin`` imports it from here.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import sys
import threading
from collections import deque
from dataclasses import dataclass, replace
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, parse_qsl, urlsplit

from tests.support.tls import standin_ca

SLACK_PATH = "/services/T000/B000/XXXX"
GENERIC_PATH = "/hooks/generic"
SOCKET_TIMEOUT_S = 5.0
STOP_TIMEOUT_S = 5.0
_EXTRA_PHRASES = {420: "Enhance Your Calm"}


@dataclass(frozen=True)
class Received:
    """One request as the stand-in saw it (header names lower-case, repeats joined by ", ")."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    """The body parsed as JSON; None when it is empty or not JSON (see ``raw``)."""
    status: int | None
    """The status answered; None while in flight, or when the connection was dropped."""
    raw: bytes = b""


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def json(cls, status: int, payload: Any) -> Reply:
        return cls(status, json.dumps(payload).encode(), (("Content-Type", "application/json"),))

    @classmethod
    def text(cls, status: int, text: str, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
        return cls(status, text.encode(), (("Content-Type", "text/plain"), *headers))

    @staticmethod
    def phrase(status: int) -> str:
        try:
            return HTTPStatus(status).phrase
        except ValueError:
            return _EXTRA_PHRASES.get(status, "Error")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, owner: HTTPSStandIn, context: ssl.SSLContext) -> None:
        self.owner, self.context = owner, context
        super().__init__(("127.0.0.1", 0), _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(SOCKET_TIMEOUT_S)
        tls = self.context.wrap_socket(request, server_side=True)  # handshake in this thread
        try:
            _Handler(tls, client_address, self)
        finally:
            with contextlib.suppress(OSError):
                tls.shutdown(socket.SHUT_RDWR)
            tls.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], OSError):  # ssl, reset and timeout errors are noise
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        request = Received(self.command, url.path, query, headers, _json_or_none(body), None, body)
        reply = self.server.owner.serve(request)
        self.close_connection = True
        if reply is None:
            return  # drop the connection without an answer
        self.send_response(reply.status, Reply.phrase(reply.status))
        for name, value in reply.headers:
            self.send_header(name, value)
        if reply.status != 204:
            self.send_header("Content-Length", str(len(reply.body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(reply.body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch

    def log_message(self, format: str, *args: Any) -> None:
        pass


class HTTPSStandIn:
    """A loopback HTTPS server in a daemon thread; subclasses implement ``handle``.

    ``handle`` runs with ``self._lock`` held (requests are served one at a time), gets the
    next programmed fault (or None) and returns a ``Reply``, or None to drop the connection.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._faults: deque[int] = deque()
        self._requests: list[Received] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def handle(self, request: Received, fault: int | None) -> Reply | None:
        raise NotImplementedError

    def serve(self, request: Received) -> Reply | None:
        with self._lock:
            fault = self._faults.popleft() if self._faults else None
            reply = self.handle(request, fault)
            self._requests.append(replace(request, status=None if reply is None else reply.status))
        return reply

    @property
    def ca_path(self) -> str:
        return standin_ca().ca_path

    @property
    def origin(self) -> str:
        if self._server is None:
            raise RuntimeError(f"{self._name} is not running; use it as a context manager")
        return f"https://127.0.0.1:{self._server.server_address[1]}"

    @property
    def requests(self) -> list[Received]:
        with self._lock:
            return list(self._requests)

    def fail_next(self, *statuses: int) -> None:
        """Answer the next requests with these statuses, in order, before normal handling."""
        if not all(400 <= status <= 599 for status in statuses):
            raise ValueError(f"fault statuses must be 4xx or 5xx: {statuses}")
        with self._lock:
            self._faults.extend(statuses)

    def __enter__(self) -> Self:
        self._server = _Server(self, standin_ca().server_context)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True,
            name=self._name,
        )  # fmt: skip
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        server, thread, self._server, self._thread = self._server, self._thread, None, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(STOP_TIMEOUT_S)


@dataclass(frozen=True)
class ChatMessage:
    url: str
    """The full URL the message was posted to (``slack_url`` or ``generic_url``)."""
    body: dict[str, Any]


class ChatStandIn(HTTPSStandIn):
    """Slack incoming webhook plus a generic JSON hook; see the module docstring."""

    def __init__(self) -> None:
        super().__init__(name="chat-standin")
        self._messages: list[ChatMessage] = []

    @property
    def slack_url(self) -> str:
        return self.origin + SLACK_PATH

    @property
    def generic_url(self) -> str:
        return self.origin + GENERIC_PATH

    @property
    def messages(self) -> list[ChatMessage]:
        """Accepted messages, oldest first."""
        with self._lock:
            return list(self._messages)

    def handle(self, request: Received, fault: int | None) -> Reply:
        slack = request.path == SLACK_PATH
        if fault is not None:
            if fault == 429:
                return Reply.text(429, "rate_limited", (("Retry-After", "1"),) if slack else ())
            return Reply.text(fault, Reply.phrase(fault).lower().replace(" ", "_"))
        if not slack and request.path != GENERIC_PATH:
            return Reply.text(404, "no_service")
        if request.method != "POST":
            return Reply.text(405, "invalid_method")
        payload = _payload(request)
        if payload is None:
            return Reply.text(400, "invalid_payload")
        text, blocks = payload.get("text"), payload.get("blocks")
        if (
            slack
            and not (isinstance(text, str) and text)
            and not (isinstance(blocks, list) and blocks)
        ):
            return Reply.text(400, "no_text")
        self._messages.append(ChatMessage(self.origin + request.path, payload))
        return Reply.text(200, "ok") if slack else Reply(204)


def _json_or_none(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except (ValueError, UnicodeDecodeError):
        return None


def _payload(request: Received) -> dict[str, Any] | None:
    """The JSON object posted (raw, or Slack's form field ``payload``), or None if invalid."""
    raw = request.raw
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        fields = parse_qs(raw.decode("utf-8", "replace"))
        raw = fields.get("payload", [""])[0].encode()
    try:
        payload = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return payload if isinstance(payload, dict) else None
