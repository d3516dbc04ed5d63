"""POST /api/v1/slack/commands: `/incident ...` from Slack, as the same operations as the
API (webhook/operations.py), by the person the Slack user is in the users file.

Slack signs each request with the app's signing secret: `X-Slack-Signature` is
`v0=` + HMAC-SHA256 over `v0:<X-Slack-Request-Timestamp>:<raw body>`. A wrong
signature is a 401; a timestamp more than 5 minutes from alertpilot's clock is
refused too (Slack's own rule), and a signed request seen before (a replay inside
those 5 minutes) acts no second time. Everything else is answered with HTTP 200 and
an ephemeral message, as Slack shows it only to the person who typed the command: a
refusal (not a known person, not a responder, a bad argument, a state the incident
refuses) changes nothing. The command itself is a few Redis writes; what it queues
(pages, the status page, chat) runs on the workers, so Slack's 3 s are kept.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from collections.abc import Callable
from urllib.parse import parse_qs

from flask import Blueprint, Response, jsonify, request
from redis.exceptions import RedisError

from webhook import operations
from webhook.app_services import Services, services
from webhook.errors import BadRequest, NotFound, Unauthorized
from webhook.users import Person, Role, UsersError
from workers import approvals
from workers.incident import clock, timeline
from workers.incident.commands import CommandError, Done
from workers.incident.record import load_incident
from workers.templates import plain

log = logging.getLogger(__name__)
blueprint = Blueprint("slack_commands", __name__)

SIGNATURE, TIMESTAMP = "X-Slack-Signature", "X-Slack-Request-Timestamp"
WINDOW_SECONDS = 5 * 60
MAX_BODY = 16 * 1024
USAGE = """\
/incident declare SEVERITY SERVICE TITLE...
/incident ack ID
/incident status ID investigating|identified|monitoring
/incident note ID TEXT...
/incident assign ID ic|scribe|comms_lead|sme|liaison PERSON
/incident escalate ID SEVERITY   (or downgrade)
/incident resolve ID
/incident reopen ID
/incident show ID   (roles, pending actions and the timeline: any person)"""


class Refused(Exception):
    """What the person is told instead; nothing changed."""


@blueprint.post("/api/v1/slack/commands")
def slack_command() -> Response:
    s = services()
    secret = s.settings.slack_signing_secret
    if not secret:
        raise NotFound("Slack slash commands are not configured (ALERTPILOT_SLACK_SIGNING_SECRET)")
    body = request.get_data(cache=False)
    if len(body) > MAX_BODY:
        raise BadRequest(f"body is larger than {MAX_BODY} bytes", field="body")
    timestamp = request.headers.get(TIMESTAMP, "")
    signature = request.headers.get(SIGNATURE, "")
    if not verify(secret, timestamp, body, signature):
        raise Unauthorized("missing or wrong Slack signature", field=SIGNATURE)
    if abs(clock.timestamp() - int(timestamp)) > WINDOW_SECONDS:
        raise Unauthorized("Slack request timestamp is more than 5 minutes off", field=TIMESTAMP)
    form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items() if v}
    try:
        text = _handle(s, form, signature)
    except Refused as exc:
        text = str(exc)
    except RedisError:
        text = "alertpilot's incident store is unavailable right now; try again in a moment."
    return jsonify({"response_type": "ephemeral", "text": text})


def verify(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    """Slack's v0 signature, compared in constant time; a timestamp must be digits."""
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        return False
    base = b"v0:" + timestamp.encode() + b":" + body
    expected = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return hmac.compare_digest(signature.encode(), expected.encode())


def _handle(s: Services, form: dict[str, str], signature: str) -> str:
    words = [_word(s, w) for w in _unescaped(form.get("text", "")).split()]
    if not words or words[0] == "help":
        return f"Usage:\n{USAGE}"
    verb, args = words[0].lower(), words[1:]
    person = _person(s, form.get("user_id", ""), "viewer" if verb == "show" else "responder")
    if verb == "show":
        if len(args) != 1:
            raise Refused(f"Usage:\n{USAGE}")
        return _show(s, args[0])
    run = _COMMANDS.get(verb)
    if run is None:
        raise Refused(f"Unknown command {verb[:32]!r}. Usage:\n{USAGE}")
    digest = hashlib.sha256(signature.encode()).hexdigest()
    if not s.redis.set(s.keys.slack_request(digest), "1", nx=True, ex=2 * WINDOW_SECONDS):
        raise Refused("This request was already handled.")
    try:
        done = run(s, person, args)
    except CommandError as exc:
        field = f" ({exc.field})" if exc.field else ""
        raise Refused(f"Not done{field}: {exc.message}") from None
    log.info("slack command %s by %s on %s", verb, person.name, done.incident.id)
    said = "\n".join(str(e.get("message", "")) for e in done.entries)
    return f"{done.incident.id} ({done.incident.severity}, {done.incident.status}): {said}"


def _unescaped(text: str) -> str:
    """What the person typed: Slack sends &, < and > as entities (its own markup aside)."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


MENTION = re.compile(r"<@([A-Z0-9]{2,32})(?:\|[^>]*)?>")


def _word(s: Services, word: str) -> str:
    """A mention (`<@U123|jane>`) as the users file's name of that Slack user; any other
    word as it is."""
    found = MENTION.fullmatch(word)
    if found is None:
        return word
    try:
        person = s.users.current().by_slack_id(found.group(1))
    except UsersError:
        return word
    return person.name if person is not None else word


def _person(s: Services, slack_id: str, needed: Role) -> Person:
    try:
        found = s.users.current().by_slack_id(slack_id)
    except UsersError:
        raise Refused("alertpilot's users file is not loaded; ask an admin.") from None
    if found is None:
        raise Refused(
            f"Your Slack account ({slack_id[:32]}) is not in alertpilot's users file: "
            "ask an admin to add your slack_id."
        )
    if not found.may(needed):
        raise Refused(f"{found.name} is {found.role}: incident commands need a {needed}.")
    return found


def _show(s: Services, incident_id: str) -> str:
    """The incident as the API shows it: roles, pending proposals, the timeline."""
    found = load_incident(s.redis, s.keys, incident_id)
    if found is None:
        raise Refused(f"Not done (incident_id): no incident {incident_id[:64]!r}")
    roles = "; ".join(f"{role}: {', '.join(names)}" for role, names in found.roles.items())
    pending = [p for p in approvals.pending(s.redis, s.keys) if p.incident_id == found.id]
    lines = [
        f"{found.id} ({found.severity}, {found.status}, {found.phase}): {found.title}",
        f"Roles: {roles or 'none yet'}",
        *(f"Pending: {p.change} (alertpilot actions approve {p.id})" for p in pending),
        "Timeline:",
        *(
            f"{e.get('at', '')} {e.get('kind', '')}"
            + (f" by {e['by']}" if e.get("by") else "")
            + f": {e.get('message', '')}"
            for e in timeline.read(s.redis, s.keys, found.id)
        ),
    ]
    return plain("\n".join(lines))


Runner = Callable[[Services, Person, list[str]], Done]


def _on(name: str, *fields: str, rest: str | None = None) -> Runner:
    """An incident command: `ID` then `fields` in order, and `rest` (the remaining words)."""

    def run(s: Services, person: Person, args: list[str]) -> Done:
        needed = 1 + len(fields) + (1 if rest else 0)
        if len(args) < needed or (rest is None and len(args) > needed):
            raise Refused(f"Usage:\n{USAGE}")
        body = dict(zip(fields, args[1 : 1 + len(fields)], strict=True))
        if rest:
            body[rest] = " ".join(args[1 + len(fields) :])
        return operations.run(s, person, name, args[0], body)

    return run


def _declare(s: Services, person: Person, args: list[str]) -> Done:
    if len(args) < 3:
        raise Refused(f"Usage:\n{USAGE}")
    body = {"severity": args[0], "service": args[1], "title": " ".join(args[2:])}
    return operations.declare(s, person, body)


_COMMANDS: dict[str, Runner] = {
    "declare": _declare,
    "ack": _on("acknowledge"),
    "status": _on("status", "status"),
    "note": _on("notes", rest="text"),
    "assign": _on("assign", "role", "person"),
    "escalate": _on("severity", "severity"),
    "downgrade": _on("severity", "severity"),
    "resolve": _on("resolve"),
    "reopen": _on("reopen"),
}
