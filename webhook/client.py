"""A small HTTP client of alertpilot's API, for the people's commands (webhook/people_cli.py),
as amtool is of Alertmanager: one request, one answer or one `ClientError`.

Standard library only (urllib). Each request has a timeout and is sent once: a POST
that timed out may have been done, so it is never repeated behind the person's back.
Proxy variables of the environment are ignored (the URL is often a port-forward on
loopback) and redirects are not followed: urllib would send the Authorization header
to wherever a redirect points. The token is kept out of `repr` and out of every message.
"""

from __future__ import annotations

import http
import http.client
import json
import re
import socket
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

TIMEOUT_S = 10.0
TOKEN = re.compile(r"[\x21-\x7e]+", re.ASCII)
"""What a bearer token may hold here: visible ASCII. Anything else would make http.client
raise an error that quotes the header, token included."""


class ClientError(Exception):
    """The API refused (4xx), failed (5xx) or redirected (3xx); or it could not be reached,
    or did not answer as alertpilot's API does (`status` 0 for both: no usable answer)."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field

    def __str__(self) -> str:
        if self.status == 0:
            return self.message
        named = f"{self.field}: " if self.field and self.status == 400 else ""
        return f"{self.status} {self.code.replace('_', ' ')}: {named}{self.message}"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # urllib then raises the 3xx as an HTTPError


# No ProxyHandler from the environment: ProxyHandler({}) sends every request direct.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())


@dataclass(frozen=True)
class Client:
    """The API at `url` (http or https, optionally under a path), as the person whose
    bearer `token` it is."""

    url: str
    token: str = field(repr=False)
    timeout: float = TIMEOUT_S

    def __post_init__(self) -> None:
        object.__setattr__(self, "url", base_url(self.url))
        if not TOKEN.fullmatch(self.token):
            raise ValueError("not a bearer token (expected visible ASCII, no spaces)")

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """The JSON object answering `method path` (path starts with /, its parts quoted)."""
        status, raw = self._send(method, path, body, "application/json")
        try:
            answer = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            answer = None
        if not isinstance(answer, dict):
            message = f"{self.url} answered {status} without a JSON object: is it alertpilot's API?"
            raise ClientError(0, "not_json", message)
        return answer

    def text(self, path: str, accept: str = "text/markdown") -> str:
        """The text answering GET `path` (a postmortem draft, a report)."""
        _, raw = self._send("GET", path, None, accept)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ClientError(
                0, "not_text", f"{self.url} answered bytes that are not UTF-8"
            ) from None

    def _send(
        self, method: str, path: str, body: dict[str, Any] | None, accept: str
    ) -> tuple[int, bytes]:
        data = None if body is None else json.dumps(body).encode()
        # The scheme is http or https: `base_url` checked it when the client was made.
        request = urllib.request.Request(self.url + path, data=data, method=method)  # noqa: S310
        request.add_header("Authorization", f"Bearer {self.token}")
        request.add_header("Accept", accept)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with _OPENER.open(request, timeout=self.timeout) as response:
                return int(response.status), bytes(response.read())
        except urllib.error.HTTPError as exc:
            raise _refused(exc) from None
        except (OSError, http.client.HTTPException) as exc:  # URLError is an OSError
            message = f"cannot reach {self.url}: {_reason(exc)}"
            if method != "GET" and not _unsent(exc):
                message += " (it may have been done: look before sending it again)"
            raise ClientError(0, "unreachable", message) from None


def base_url(url: str) -> str:
    """`url` without a trailing /; ValueError unless http(s) with a host and nothing else
    (no user:password@, query or fragment: the token is the one credential)."""
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError for a port out of range)
    except ValueError:
        raise ValueError(f"not a URL, got {url[:200]!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected http://HOST[:PORT] or https://..., got {url[:200]!r}")
    if parts.username is not None or parts.query or parts.fragment:
        raise ValueError("expected no user, query or fragment in the URL")
    return url.rstrip("/")


def path(*parts: str) -> str:
    """/api/v1/ and `parts`, each quoted whole (an id cannot add a path segment)."""
    return "/api/v1/" + "/".join(urllib.parse.quote(p, safe="") for p in parts)


def _refused(exc: urllib.error.HTTPError) -> ClientError:
    """The API's error envelope as a ClientError; any other answer by its status."""
    status = int(exc.code)
    try:
        error = json.loads(exc.read())["error"]
        code, message = str(error["code"]), str(error["message"])
        details = error.get("details")
        found = details.get("field") if isinstance(details, dict) else None
        return ClientError(status, code, message, str(found) if found else None)
    except (OSError, http.client.HTTPException, ValueError, TypeError, KeyError):
        pass
    finally:
        exc.close()
    if 300 <= status < 400:
        where = (exc.headers.get("Location") or "")[:200]
        return ClientError(status, "redirect", f"to {where!r}: use that as the URL")
    return ClientError(status, _phrase(status), "the answer is not alertpilot's error JSON")


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase.lower()
    except ValueError:
        return "error"


def _unsent(exc: BaseException) -> bool:
    """Whether the request surely never reached the API (refused, or no such host)."""
    reason = getattr(exc, "reason", None) or exc
    return isinstance(reason, (ConnectionRefusedError, socket.gaierror))


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or exc
    found = reason.strerror if isinstance(reason, OSError) and reason.strerror else str(reason)
    found = found or type(reason).__name__
    return found[:1].lower() + found[1:]  # "Connection refused" within a sentence
