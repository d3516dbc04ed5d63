"""Slack's Web API over `requests`, behind one adapter: the incident war room's channel.

Every answer of Slack's is HTTP 200 with ``{"ok": true, ...}`` or ``{"ok": false, "error":
"<code>"}``; a rate limit is HTTP 429 with ``Retry-After`` seconds. Errors become
PermanentError or TransientError; the bot token travels only in the Authorization header and
never appears in their messages (Slack's error codes are checked to be plain words first).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import unicodedata
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

import requests

from workers.incident.errors import PermanentError, TransientError
from workers.tls import TrustAdapter, ssl_context

# No secret is in a Web API URL, but keep urllib3's request lines quiet as chat.py does.
_connections = logging.getLogger("urllib3.connectionpool")
_connections.setLevel(max(_connections.level, logging.INFO))

NAME_MAX = 80
TOPIC_MAX = 250
LIST_LIMIT = 200
LIST_PAGES_MAX = 20
INVITE_BATCH = 100
_JSON = "application/json; charset=utf-8"
_CODE = re.compile(r"[a-z0-9_]{1,60}")
_TOKEN_REFUSED = frozenset(
    {"invalid_auth", "not_authed", "token_revoked", "token_expired", "account_inactive",
     "missing_scope", "not_allowed_token_type", "no_permission"}
)  # fmt: skip
# Slack: "it's possible some aspect of the operation succeeded" for internal/fatal errors.
_MAYBE_DONE = frozenset({"internal_error", "fatal_error", "service_unavailable", "request_timeout"})
_FINE_ON_INVITE = frozenset({"already_in_channel", "cant_invite_self"})
_PER_USER = frozenset({*_FINE_ON_INVITE, "user_not_found", "cant_invite", "user_disabled"})


@dataclass(frozen=True)
class Channel:
    id: str
    name: str


class NameTaken(PermanentError):
    """conversations.create: a channel of this name exists. It may be ours (a create whose
    answer was lost: `find_channel` finds it), archived, or private to others (it does not)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"Slack conversations.create: the name {name!r} is taken", status=200)
        self.name = name


class Slack:
    def __init__(
        self,
        token: str,
        *,
        base_url: str = "https://slack.com/api",
        ca_bundle: str | None,
        timeout: float = 10.0,
    ) -> None:
        if not token:
            raise ValueError("Slack token is empty")
        if not base_url.startswith("https://"):
            raise ValueError(f"Slack base_url must be https, got {base_url!r}")
        self.base = base_url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        self.session.mount("https://", TrustAdapter(ssl_context(ca_bundle)))
        self.session.headers["Authorization"] = f"Bearer {token}"
        self._team_url: str | None = None

    def create_channel(self, name: str) -> Channel:
        """A public channel; NameTaken when the name exists (archived channels included)."""
        answer = self._call(
            "conversations.create", {"name": name, "is_private": False}, allow={"name_taken"}
        )
        if not answer["ok"]:
            raise NameTaken(name)
        return _channel("conversations.create", answer.get("channel"))

    def find_channel(self, name: str) -> Channel | None:
        """The unarchived public channel of this name, read page by page (at most
        LIST_PAGES_MAX pages of LIST_LIMIT; Slack may answer short or even empty pages)."""
        cursor = ""
        for _ in range(LIST_PAGES_MAX):
            params = {"limit": str(LIST_LIMIT), "exclude_archived": "true",
                      "types": "public_channel"}  # fmt: skip
            if cursor:
                params["cursor"] = cursor
            answer = self._call("conversations.list", params=params)
            for found in answer.get("channels") or []:
                if isinstance(found, dict) and found.get("name") == name:
                    return _channel("conversations.list", found)
            cursor = str((answer.get("response_metadata") or {}).get("next_cursor") or "")
            if not cursor:
                return None
        raise PermanentError(
            f"Slack conversations.list: {name!r} not in the first {LIST_PAGES_MAX} pages"
        )

    def set_topic(self, channel_id: str, topic: str) -> None:
        """Cut to Slack's 250 characters (Slack refuses a longer topic with too_long)."""
        self._call("conversations.setTopic", {"channel": channel_id, "topic": _cut(topic)})

    def invite(self, channel_id: str, user_ids: Iterable[str]) -> None:
        """Invite everyone who can be; members already in are fine. One call per 100 users;
        when Slack refuses a batch for some users, each is retried alone, so one unknown
        user does not keep the others out. PermanentError names the users left out."""
        users = list(dict.fromkeys(user for user in user_ids if user))
        left_out = [
            failure
            for start in range(0, len(users), INVITE_BATCH)
            for failure in self._invite(channel_id, users[start : start + INVITE_BATCH])
        ]
        if left_out:
            raise PermanentError(
                f"Slack conversations.invite: not invited {', '.join(left_out)}", status=200
            )

    def post(self, channel_id: str, text: str) -> str:
        """The message's ts (its id within the channel)."""
        answer = self._call("chat.postMessage", {"channel": channel_id, "text": text})
        ts = answer.get("ts")
        if not isinstance(ts, str) or not ts:
            raise PermanentError("Slack chat.postMessage answered without a ts", status=200)
        return ts

    def team_url(self) -> str:
        """The workspace's URL from auth.test (``https://<team>.slack.com/``), asked once."""
        if self._team_url is None:
            url = self._call("auth.test", params={}).get("url")
            if not isinstance(url, str) or not url.startswith("https://"):
                raise PermanentError("Slack auth.test answered without the workspace url")
            self._team_url = url if url.endswith("/") else f"{url}/"
        return self._team_url

    def channel_url(self, channel_id: str) -> str:
        return f"{self.team_url()}archives/{channel_id}"

    def _invite(self, channel_id: str, users: list[str]) -> list[str]:
        body = {"channel": channel_id, "users": ",".join(users)}
        answer = self._call("conversations.invite", body, allow=_PER_USER)
        if answer["ok"]:
            return []
        if len(users) == 1:
            code = answer["error"]
            return [] if code in _FINE_ON_INVITE else [f"{users[0]} ({code})"]
        return [failure for user in users for failure in self._invite(channel_id, [user])]

    def _call(
        self,
        method: str,
        body: dict[str, Any] | None = None,
        *,
        params: dict[str, str] | None = None,
        allow: Collection[str] = (),
    ) -> dict[str, Any]:
        """Slack's answer when ok, or when its error code is in `allow` (the caller's case);
        reads with GET and `params`, writes POST `body` as JSON."""
        url = f"{self.base}/{method}"
        try:
            if params is not None:
                response = self.session.get(url, params=params, timeout=self.timeout)
            else:
                data = json.dumps(body or {}).encode()
                headers = {"Content-Type": _JSON}
                response = self.session.post(url, data=data, headers=headers, timeout=self.timeout)
        except requests.RequestException as exc:
            raise TransientError(f"Slack {method} unreachable ({type(exc).__name__})") from None
        status = response.status_code
        if status == 429 or status >= 500:
            retry_after = response.headers.get("Retry-After", "")
            raise TransientError(
                f"Slack {method} answered {status}",
                retry_after=float(retry_after) if retry_after.isdigit() else None,
                status=status,
            )
        answer = _answer(response)
        if status != 200:
            code = _code(answer)
            raise PermanentError(f"Slack {method} answered {status} ({code})", status=status)
        if answer.get("ok") is True:
            return answer
        code = _code(answer)
        if code in allow:
            return {**answer, "ok": False, "error": code}
        if code in _TOKEN_REFUSED:
            needed = answer.get("needed")
            scopes = f"; needs {needed}" if isinstance(needed, str) and _scopes(needed) else ""
            raise PermanentError(f"Slack {method}: the bot token was refused ({code}{scopes})")
        if code in _MAYBE_DONE:  # no status: the call may have taken effect
            raise TransientError(f"Slack {method} failed: {code}")
        raise PermanentError(f"Slack {method} failed: {code}", status=status)


def channel_name(prefix_date: str, title_or_service: str, incident_id: str) -> str:
    """``inc-20260115-api-latency-3fa9c1``: the incident's start date (``20260115``,
    ``2026-01-15`` or an ISO timestamp), a slug of the title, and 6 hex characters of a hash
    of the whole id. Deterministic, so a retried job asks for the same name. A hash and not
    the id's first characters: those are the alert group's hash, the same for every incident
    of the group. Non-ASCII letters lose their accents or are dropped (an all-CJK title makes
    ``inc-20260115-3fa9c1``); the slug is cut so the name fits Slack's 80 characters."""
    date = prefix_date.strip().split("T", 1)[0].replace("-", "")
    if not re.fullmatch(r"[0-9]{8}", date):
        raise ValueError(f"prefix_date must be YYYYMMDD or YYYY-MM-DD, got {prefix_date!r}")
    if not incident_id:
        raise ValueError("incident_id is empty")
    suffix = hashlib.sha256(incident_id.encode()).hexdigest()[:6]
    room = NAME_MAX - len(f"inc-{date}--{suffix}")
    slug = _slug(title_or_service)[:room].strip("-")
    return "-".join(part for part in ("inc", date, slug, suffix) if part)


def _slug(text: str) -> str:
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", plain.lower()).strip("-")


def _cut(text: str, limit: int = TOPIC_MAX) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _channel(method: str, found: Any) -> Channel:
    if isinstance(found, dict):
        channel_id, name = found.get("id"), found.get("name")
        if isinstance(channel_id, str) and channel_id and isinstance(name, str):
            return Channel(channel_id, name)
    raise PermanentError(f"Slack {method} answered without a channel", status=200)


def _answer(response: requests.Response) -> dict[str, Any]:
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if isinstance(answer, dict):
        return answer
    if response.status_code == 200:
        raise PermanentError("Slack answered 200 with something that is not its JSON", status=200)
    return {}


def _code(answer: dict[str, Any]) -> str:
    """Slack's error code if it looks like one; anything else (a proxy's page) is not echoed."""
    code = answer.get("error")
    return code if isinstance(code, str) and _CODE.fullmatch(code) else "unknown_error"


def _scopes(needed: str) -> bool:
    return all(re.fullmatch(r"[a-z_.:]{1,60}", scope) for scope in needed.split(","))
