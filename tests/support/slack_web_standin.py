"""A local HTTPS stand-in for Slack's Web API: the methods an incident war room uses.

It speaks the real contract on 127.0.0.1 with a certificate from ``standin_ca()``::

    with SlackWebStandIn(token="xoxb-test") as slack:
        slack.add_user("U0ALICE")
        requests.post(f"{slack.base_url}/conversations.create", json={"name": "inc-1"},
                      headers={"Authorization": "Bearer xoxb-test"}, verify=slack.ca_path)

Methods, at ``/api/<method>``: auth.test, conversations.create, conversations.list,
conversations.setTopic, conversations.invite, chat.postMessage. Arguments come from the query
string, a form body or a JSON object body (a JSON body without ``charset=utf-8`` gets Slack's
``missing_charset`` warning). The token comes from ``Authorization: Bearer`` or a ``token``
form or query field, never from JSON (as at Slack). Every answer is HTTP 200 with
``{"ok": true, ...}`` or ``{"ok": false, "error": "<code>"}``, except an unknown method (404
``unknown_method``), a programmed fault (``fail_next``) and a rate limit (``rate_limit_next``:
429 with ``Retry-After`` and ``ratelimited``). Order: faults, rate limit, token, method.

The bot (``BOT_USER``) is a member of the channels it creates. conversations.list pages by
offset behind an opaque cursor and drops archived channels *after* cutting the page, as Slack
does, so a page may be short or empty while ``next_cursor`` is set. A multi-user invite that
fails for one user invites nobody (without ``force``) and lists the failures in ``errors``.

Requests are recorded without the token: ``authorization`` becomes ``Bearer [valid]`` or
``Bearer [invalid]`` and a ``token`` field is removed from the query and body.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qsl

from tests.support.chat_standin import HTTPSStandIn, Received, Reply

BOT_USER = "U0BOT"
TEAM_URL = "https://alertpilot-test.slack.com/"
TOPIC_MAX = 250
TEXT_MAX = 40_000
LIST_LIMIT_MAX = 1000
_NAME_CHARS = re.compile(r"[a-z0-9_-]+")
__all__ = ["BOT_USER", "TEAM_URL", "Received", "SlackWebStandIn"]


class _Fail(Exception):
    def __init__(self, code: str, **extra: Any) -> None:
        super().__init__(code)
        self.code, self.extra = code, extra


def slack_name_error(name: str) -> str | None:
    """Slack's code for a channel name it refuses, or None when the name is valid."""
    if not name:
        return "invalid_name_required"
    if len(name) > 80:
        return "invalid_name_maxlength"
    if not _NAME_CHARS.fullmatch(name):
        return "invalid_name_specials"
    if not re.search(r"[a-z0-9]", name):
        return "invalid_name_punctuation"
    return None


class SlackWebStandIn(HTTPSStandIn):
    """One workspace, one bot token; see the module docstring."""

    def __init__(self, token: str) -> None:
        super().__init__(name="slack-web-standin")
        self.token = token
        self._users: set[str] = {BOT_USER}
        self._channels: dict[str, dict[str, Any]] = {}
        self._messages: dict[str, list[dict[str, Any]]] = {}
        self._limited: deque[int] = deque()
        self._drop_after_create = False
        self._ids = itertools.count(1)
        self._ts = itertools.count(1)

    @property
    def base_url(self) -> str:
        return f"{self.origin}/api"

    # -- set-up and inspection for tests -------------------------------------------------------

    def add_user(self, *user_ids: str) -> None:
        with self._lock:
            self._users.update(user_ids)

    def add_channel(
        self, name: str, *, archived: bool = False, private: bool = False, bot_member: bool = True
    ) -> str:
        """A channel made by someone else (validated like a create); its id."""
        with self._lock:
            if code := slack_name_error(name) or self._taken(name):
                raise ValueError(f"{code}: {name!r}")
            channel = self._new_channel(name, private=private, creator="U0OTHER")
            channel["is_archived"] = archived
            channel["members"] = [BOT_USER] if bot_member else ["U0OTHER"]
            return str(channel["id"])

    def rate_limit_next(self, count: int, *, retry_after: int = 1) -> None:
        """Answer the next `count` requests 429 with ``Retry-After: <retry_after>``."""
        with self._lock:
            self._limited.extend([retry_after] * count)

    def drop_after_create(self) -> None:
        """Create the next channel, then close the connection without answering."""
        with self._lock:
            self._drop_after_create = True

    @property
    def channels(self) -> dict[str, dict[str, Any]]:
        """A snapshot: channel id -> the conversation object, plus its ``members``."""
        with self._lock:
            return {cid: {**self._render(cid), "members": list(c["members"])}
                    for cid, c in self._channels.items()}  # fmt: skip

    @property
    def messages(self) -> dict[str, list[dict[str, Any]]]:
        """A snapshot: channel id -> its messages, oldest first."""
        with self._lock:
            return {cid: [dict(m) for m in ms] for cid, ms in self._messages.items()}

    # -- request handling (called with self._lock held) ----------------------------------------

    def serve(self, request: Received) -> Reply | None:
        with self._lock:
            fault = self._faults.popleft() if self._faults else None
            reply = self.handle(request, fault)
            recorded = replace(
                self._redacted(request), status=None if reply is None else reply.status
            )
            self._requests.append(recorded)
        return reply

    def handle(self, request: Received, fault: int | None) -> Reply | None:
        if fault is not None:
            return Reply.json(fault, {"ok": False, "error": Reply.phrase(fault).lower()})
        if self._limited:
            retry_after = self._limited.popleft()
            return Reply(429, json.dumps({"ok": False, "error": "ratelimited"}).encode(),
                         (("Content-Type", "application/json; charset=utf-8"),
                          ("Retry-After", str(retry_after))))  # fmt: skip
        method = request.path.removeprefix("/api/")
        route = _ROUTES.get(method) if request.path.startswith("/api/") else None
        if route is None:
            return _reply({"ok": False, "error": "unknown_method", "req_method": method}, 404)
        warnings: list[str] = []
        try:
            args, token = self._arguments(request, warnings)
            if not token:
                raise _Fail("not_authed")
            if token != self.token:
                raise _Fail("invalid_auth")
            answer = route(self, args)
        except _Fail as fail:
            answer = {"ok": False, "error": fail.code, **fail.extra}
        if answer is None:
            return None  # drop the connection
        if warnings:
            answer["warning"] = ",".join(warnings)
            answer.setdefault("response_metadata", {})["warnings"] = warnings
        return _reply(answer)

    def _arguments(self, request: Received, warnings: list[str]) -> tuple[dict[str, Any], str]:
        args: dict[str, Any] = dict(request.query)
        token = args.pop("token", "")
        content_type = request.headers.get("content-type", "").lower()
        if request.method == "POST" and content_type.startswith("application/json"):
            if "charset=utf-8" not in content_type.replace(" ", ""):
                warnings.append("missing_charset")
            if not isinstance(request.body, dict):
                raise _Fail("invalid_json")
            args.update(request.body)
            args.pop("token", None)  # Slack does not read a token from a JSON body
        elif request.method == "POST" and request.raw:
            form = dict(parse_qsl(request.raw.decode("utf-8", "replace"), keep_blank_values=True))
            token = form.pop("token", token)
            args.update(form)
        authorization = request.headers.get("authorization", "")
        if authorization.startswith("Bearer "):
            token = authorization.removeprefix("Bearer ")
        return args, token

    def _redacted(self, request: Received) -> Received:
        headers = dict(request.headers)
        if "authorization" in headers:
            given = headers["authorization"].removeprefix("Bearer ")
            headers["authorization"] = (
                "Bearer [valid]" if given == self.token else "Bearer [invalid]"
            )
        query = {k: v for k, v in request.query.items() if k != "token"}
        body, raw = request.body, request.raw
        if isinstance(body, dict) and "token" in body:
            body, raw = {k: v for k, v in body.items() if k != "token"}, b""
        elif b"token=" in raw:
            raw = b""
        return replace(request, headers=headers, query=query, body=body, raw=raw)

    # -- methods ---------------------------------------------------------------------------------

    def _auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "url": TEAM_URL, "team": "AlertPilot Test", "user": "alertpilot",
                "team_id": "T0TEST", "user_id": BOT_USER, "bot_id": "B0BOT"}  # fmt: skip

    def _create(self, args: dict[str, Any]) -> dict[str, Any] | None:
        name = args.get("name")
        name = name if isinstance(name, str) else ""
        if code := slack_name_error(name) or self._taken(name):
            raise _Fail(code)
        channel = self._new_channel(name, private=_flag(args.get("is_private")), creator=BOT_USER)
        if self._drop_after_create:
            self._drop_after_create = False
            return None
        return {"ok": True, "channel": self._render(channel["id"])}

    def _list(self, args: dict[str, Any]) -> dict[str, Any]:
        try:
            limit = int(args.get("limit", 100))
        except (TypeError, ValueError):
            raise _Fail("invalid_limit") from None
        if not 1 <= limit <= LIST_LIMIT_MAX:
            raise _Fail("invalid_limit")
        start = _offset(str(args.get("cursor") or ""))
        types = set(str(args.get("types") or "public_channel").split(","))
        kind = {True: "private_channel", False: "public_channel"}
        listed = [cid for cid, c in self._channels.items() if kind[c["is_private"]] in types]
        page = listed[start : start + limit]
        if _flag(args.get("exclude_archived")):
            page = [cid for cid in page if not self._channels[cid]["is_archived"]]
        more = start + limit < len(listed)
        next_cursor = _cursor(start + limit) if more else ""
        return {"ok": True, "channels": [self._render(cid) for cid in page],
                "response_metadata": {"next_cursor": next_cursor}}  # fmt: skip

    def _set_topic(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._writable(args)
        topic = args.get("topic")
        topic = topic if isinstance(topic, str) else ""
        if len(topic) > TOPIC_MAX:
            raise _Fail("too_long")
        channel["topic"] = {"value": topic, "creator": BOT_USER, "last_set": _now_s()}
        return {"ok": True, "channel": self._render(channel["id"])}

    def _invite(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._writable(args)
        users = [u for u in str(args.get("users") or "").split(",") if u]
        if not users:
            raise _Fail("no_user")
        errors = []
        for user in users:
            code = (
                "user_not_found" if user not in self._users
                else "cant_invite_self" if user == BOT_USER
                else "already_in_channel" if user in channel["members"]
                else None
            )  # fmt: skip
            if code:
                errors.append({"user": user, "ok": False, "error": code})
        failed = {e["user"] for e in errors}
        if not errors or _flag(args.get("force")):
            channel["members"].extend(u for u in dict.fromkeys(users) if u not in failed)
        if errors:
            raise _Fail(str(errors[0]["error"]), errors=errors)
        return {"ok": True, "channel": self._render(channel["id"])}

    def _post(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._writable(args)
        text, blocks = args.get("text"), args.get("blocks")
        if not (isinstance(text, str) and text) and not blocks:
            raise _Fail("no_text")
        if isinstance(text, str) and len(text) > TEXT_MAX:
            raise _Fail("msg_too_long")
        ts = f"{_now_s()}.{next(self._ts):06d}"
        message = {"type": "message", "user": BOT_USER, "bot_id": "B0BOT", "text": text or "",
                   "ts": ts}  # fmt: skip
        self._messages.setdefault(channel["id"], []).append(message)
        return {"ok": True, "channel": channel["id"], "ts": ts, "message": message}

    # -- helpers ---------------------------------------------------------------------------------

    def _taken(self, name: str) -> str | None:
        return "name_taken" if any(c["name"] == name for c in self._channels.values()) else None

    def _new_channel(self, name: str, *, private: bool, creator: str) -> dict[str, Any]:
        channel_id = f"C{next(self._ids):010d}"
        self._channels[channel_id] = {
            "id": channel_id, "name": name, "created": _now_s(), "creator": creator,
            "is_private": private, "is_archived": False, "members": [creator],
            "topic": {"value": "", "creator": "", "last_set": 0},
        }  # fmt: skip
        return self._channels[channel_id]

    def _writable(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channels.get(str(args.get("channel") or ""))
        if channel is None or (channel["is_private"] and BOT_USER not in channel["members"]):
            raise _Fail("channel_not_found")
        if channel["is_archived"]:
            raise _Fail("is_archived")
        if BOT_USER not in channel["members"]:
            raise _Fail("not_in_channel")
        return channel

    def _render(self, channel_id: str) -> dict[str, Any]:
        c = self._channels[channel_id]
        return {"id": c["id"], "name": c["name"], "name_normalized": c["name"],
                "is_channel": True, "is_group": False, "is_im": False, "is_mpim": False,
                "is_private": c["is_private"], "is_archived": c["is_archived"],
                "is_general": False, "is_member": BOT_USER in c["members"],
                "created": c["created"], "creator": c["creator"], "topic": dict(c["topic"]),
                "purpose": {"value": "", "creator": "", "last_set": 0},
                "num_members": len(c["members"])}  # fmt: skip


_Method = Callable[[SlackWebStandIn, dict[str, Any]], dict[str, Any] | None]
_ROUTES: dict[str, _Method] = {
    "auth.test": SlackWebStandIn._auth_test,
    "conversations.create": SlackWebStandIn._create,
    "conversations.list": SlackWebStandIn._list,
    "conversations.setTopic": SlackWebStandIn._set_topic,
    "conversations.invite": SlackWebStandIn._invite,
    "chat.postMessage": SlackWebStandIn._post,
}


def _reply(answer: dict[str, Any], status: int = 200) -> Reply:
    body = json.dumps(answer).encode()
    return Reply(status, body, (("Content-Type", "application/json; charset=utf-8"),))


def _flag(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() in ("true", "1"))


def _cursor(offset: int) -> str:
    return base64.b64encode(f"offset:{offset}".encode()).decode()


def _offset(cursor: str) -> int:
    if not cursor:
        return 0
    try:
        kind, _, number = base64.b64decode(cursor, validate=True).decode().partition(":")
        if kind == "offset" and number.isdigit():
            return int(number)
    except (binascii.Error, UnicodeDecodeError):
        pass
    raise _Fail("invalid_cursor")


def _now_s() -> int:
    return int(time.time())
