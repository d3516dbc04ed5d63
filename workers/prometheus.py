"""Prometheus's HTTP API (instant queries) over `requests`, behind one adapter.

Unlike the other adapters this one never raises for Prometheus's failures: a
runbook step that cannot read a metric is a finding ("Prometheus answered 503"),
not a failed incident. Every answer becomes a `QueryResult`; the bearer token
never appears in one.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from urllib3.exceptions import ReadTimeoutError

from workers.tls import TrustAdapter, ssl_context

MAX_ANSWER_BYTES = 1024 * 1024
"""A larger answer is refused: an instant query for one number has no business being bigger."""
POST_AFTER_CHARS = 1500
"""Longer queries go as a POST form: proxies in front of Prometheus cap URL length."""
_ERROR_CHARS = 300
_CHUNK_BYTES = 4096
_TOKEN_CHARS = re.compile(r"[\x21-\x7e]+")


@dataclass(frozen=True)
class QueryResult:
    """One instant query's outcome. `ok` is True exactly when `value` is a number.

    `samples` counts the series Prometheus returned (1 for a scalar), also when
    there were too many to pick one. `error` says why there is no value: Prometheus
    failed ("bad query: ...", "Prometheus answered 503", "timed out after 5s",
    "Prometheus unreachable (...)") or answered without one ("no data", "NaN",
    "3 series, expected one").
    """

    ok: bool
    value: float | None = None
    samples: int = 0
    error: str = ""

    @classmethod
    def failed(cls, error: str, *, samples: int = 0) -> QueryResult:
        return cls(ok=False, samples=samples, error=error)


class Prometheus:
    def __init__(
        self,
        base_url: str,
        *,
        token: str | None,
        ca_bundle: str | None,
        timeout: float = 5.0,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(
                f"Prometheus URL must be http(s)://host[:port][/path], got {base_url!r}"
            )
        if not (math.isfinite(timeout) and timeout > 0):
            raise ValueError(
                f"Prometheus timeout must be a positive number of seconds, got {timeout!r}"
            )
        if token is not None and not _TOKEN_CHARS.fullmatch(token):
            # Not echoed: the value is the secret.
            raise ValueError("Prometheus token must be non-empty printable ASCII without spaces")
        self.url = base_url.rstrip("/") + "/api/v1/query"
        self.timeout = timeout
        self._token = token
        self.session = requests.Session()
        self.session.mount("https://", TrustAdapter(ssl_context(ca_bundle)))
        if token is not None:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def query(self, expr: str, *, at: float | None = None) -> QueryResult:
        """Evaluate `expr` at `at` (Unix seconds; Prometheus's "now" when None).

        Prometheus is also asked to give up after `timeout` (its `timeout`
        parameter), so a heavy query ends there too instead of running on.
        """
        if at is not None and not math.isfinite(at):
            raise ValueError(f"query time must be finite Unix seconds, got {at!r}")
        params = {"query": expr, "timeout": f"{self.timeout:g}s"}
        if at is not None:
            params["time"] = f"{at:.3f}"
        try:
            status, body = self._fetch(params)
        except requests.Timeout:
            return QueryResult.failed(f"timed out after {self.timeout:g}s")
        except (requests.RequestException, OSError) as exc:
            return QueryResult.failed(f"Prometheus unreachable ({type(exc).__name__})")
        except _TooLarge:
            return QueryResult.failed(f"answer larger than {MAX_ANSWER_BYTES} bytes")
        return self._redact(_interpret(status, body))

    def _fetch(self, params: dict[str, str]) -> tuple[int, bytes]:
        """Status and body, read within `timeout` overall and `MAX_ANSWER_BYTES`.

        requests' own timeout bounds each socket read, not the whole answer: a
        server trickling bytes would hold the step for as long as it liked. The
        deadline is checked between chunks, so a trickle can still overrun it by
        up to a chunk's worth of reads; the step's job timeout is the hard bound.
        """
        deadline = time.monotonic() + self.timeout
        long = len(params["query"]) > POST_AFTER_CHARS
        response = self.session.request(
            "POST" if long else "GET",
            self.url,
            params=None if long else params,
            data=params if long else None,
            timeout=self.timeout,
            stream=True,
            allow_redirects=False,  # a redirect elsewhere would carry no token, or the wrong one
        )
        with response:
            body = bytearray()
            try:
                for chunk in response.iter_content(_CHUNK_BYTES):
                    body += chunk
                    if len(body) > MAX_ANSWER_BYTES:
                        raise _TooLarge
                    if time.monotonic() > deadline:
                        raise requests.Timeout
            except requests.ConnectionError as exc:
                # requests reports a body that stopped coming as a connection error.
                if exc.args and isinstance(exc.args[0], ReadTimeoutError):
                    raise requests.Timeout from None
                raise
            return response.status_code, bytes(body)

    def _redact(self, result: QueryResult) -> QueryResult:
        """A stand-in or a proxy may echo the request back; the token never goes further."""
        if self._token and self._token in result.error:
            return QueryResult.failed(
                result.error.replace(self._token, "<token>"), samples=result.samples
            )
        return result


class _TooLarge(Exception):
    pass


def _interpret(status: int, body: bytes) -> QueryResult:
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        what = "an answer that is not Prometheus JSON" if status == 200 else "no Prometheus error"
        return QueryResult.failed(f"Prometheus answered {status} with {what}")
    if status != 200 or answer.get("status") != "success":
        return QueryResult.failed(_failure(status, answer))
    data = answer.get("data")
    if not isinstance(data, dict):
        return QueryResult.failed("Prometheus answered success without data")
    return _result(data.get("resultType"), data.get("result"))


def _failure(status: int, answer: dict[str, Any]) -> str:
    """Prometheus's own words: bad_data (400) is the query's fault, the rest is the server's."""
    kind, message = answer.get("errorType"), str(answer.get("error") or "")[:_ERROR_CHARS]
    if kind == "bad_data":
        return f"bad query: {message}"
    if kind == "timeout":
        return f"Prometheus gave up on the query: {message}"
    return f"Prometheus answered {status}" + (f": {message}" if message else "")


def _result(kind: object, result: object) -> QueryResult:
    if kind == "scalar":
        return _number(result, samples=1)
    if kind != "vector":
        return QueryResult.failed(f"a {kind} result, expected a scalar or an instant vector")
    if not isinstance(result, list):
        return QueryResult.failed("Prometheus answered a vector without samples")
    if not result:
        return QueryResult.failed("no data")
    if len(result) > 1:
        return QueryResult.failed(f"{len(result)} series, expected one", samples=len(result))
    sample = result[0]
    return _number(sample.get("value") if isinstance(sample, dict) else None, samples=1)


def _number(pair: object, *, samples: int) -> QueryResult:
    """A `[unix_time, "value"]` pair; Prometheus spells special values "NaN", "+Inf", "-Inf"."""
    try:
        if not (isinstance(pair, list) and len(pair) == 2):
            raise ValueError
        value = float(pair[1])
    except (TypeError, ValueError):
        return QueryResult.failed(f"Prometheus answered a malformed sample: {str(pair)[:80]}")
    if math.isnan(value):
        # histogram_quantile over no requests, or 0/0 in a ratio: nothing happened.
        return QueryResult.failed("NaN (no events in the window?)", samples=samples)
    if math.isinf(value):
        return QueryResult.failed(f"{'+' if value > 0 else '-'}Inf", samples=samples)
    return QueryResult(ok=True, value=value, samples=samples)
