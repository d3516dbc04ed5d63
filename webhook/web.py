"""The web page: incidents for people with a browser, server-rendered (templates/).

GET /incidents lists open then recent incidents (filters `status`, `severity`, parsed
strictly like the API: anything else is a 400 page); GET /incidents/<id> shows one,
its alerts, roles, timeline and pending proposals, with forms for a responder. The
forms post to /incidents/<id>/<command> and /actions/<id>/approve|reject, which call
webhook/operations.py and workers/approvals.py like the API does (every decision is
theirs) and answer 303 back to the incident, or the page with the refusal in a box.

Who is asking: the trusted proxy's person, or the person who signed in on /login with
their token (webhook/web_session.py), or "anonymous" with no auth configured. Every
POST needs the session's CSRF token and a same-site Origin/Sec-Fetch-Site.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Blueprint, Flask, Response, current_app, redirect, render_template, request
from flask.sansio.blueprints import BlueprintSetupState
from redis.exceptions import RedisError
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as BaseResponse

from webhook import oncall_api, operations, postmortem_api
from webhook.api import INCIDENT_ID, STATUSES
from webhook.app_services import caller, services
from webhook.approvals_api import may_approve
from webhook.errors import ApiError, BadRequest, Forbidden, NotFound, Unauthorized, Unavailable
from webhook.figures_api import period_view
from webhook.users import Person
from webhook.web_page import incident_page, list_rows, period_table
from webhook.web_session import (
    COOKIE,
    CSRF_FIELD,
    FETCH_HEADERS,
    LIFETIME,
    Session,
    Signer,
    same_site,
)
from workers import approvals
from workers.incident.commands import CommandError
from workers.incident.record import list_incidents
from workers.oncall import DEFAULT_SINCE, parse_since

blueprint = Blueprint("web", __name__, template_folder="templates")
T = TypeVar("T")

REFRESH_SECONDS = 30
FIGURES_SECONDS = 7 * 24 * 3600
"""The response figures under the list: the incidents declared in the last week."""
NEXT = re.compile(r"/incidents(/[A-Za-z0-9_-]{1,128}(/postmortem)?)?|/handoff", re.ASCII)
"""Where /login may send the person back to: the page's own paths, nothing else."""
DONE = {*operations.FIELDS, "approve", "reject"}
"""What `?done=` may say a form did (the page says so in a box)."""


@blueprint.record_once
def _install(state: BlueprintSetupState) -> None:
    """One Signer per app, built with its settings (webhook/app.py put them there first)."""
    settings = state.app.extensions["alertpilot"].settings
    state.app.extensions["alertpilot.web"] = Signer(settings.session_secret)


def signer_of(app: Flask) -> Signer:
    found: Signer = app.extensions["alertpilot.web"]
    return found


class _SignIn(Exception):
    """Nobody is signed in: a page read goes to /login."""


@blueprint.get("/incidents")
def incidents() -> Response:
    """The filters are read before the person: a bad one is a 400 for anyone."""
    s = services()
    args = {k: v for k, v in _query({"status", "severity"}).items() if v}  # "": the form's "any"
    status = args.get("status")
    if status is not None and status not in STATUSES:
        raise BadRequest(f'expected "open" or "resolved", got {status[:64]!r}', field="status")
    severities = s.policies.get().severities
    severity = args.get("severity")
    if severity is not None and severity not in severities:
        raise BadRequest(f"no severity {severity[:64]!r} in the policy", field="severity")
    person = _reader()
    found = _store(
        lambda: list_incidents(s.redis, s.keys, status=STATUSES.get(status or ""), limit=200)
    )
    shown = [i for i in found if severity is None or i.severity == severity]
    return _page(
        "incidents.html",
        person,
        rows=_store(lambda: list_rows(s, shown)),
        status_filter=status,
        severity_filter=severity,
        severities=list(severities),
        refresh=REFRESH_SECONDS,
        figures=period_table(period_view(s, FIGURES_SECONDS)),
    )


@blueprint.get("/handoff")
def handoff() -> Response:
    """The on-call handoff report of the last `since` (7d), as GET /api/v1/handoff has it
    (without the rollouts); a bad `since` is a 400 page for anyone."""
    since = _query({"since"}).get("since") or DEFAULT_SINCE
    try:
        period = parse_since(since)
    except ValueError as exc:
        raise BadRequest(str(exc), field="since") from None
    person = _reader()
    found = _store(lambda: oncall_api.immediate(services(), period))
    return _page(
        "handoff.html", person, report=found["report"], markdown=found["markdown"], since=since
    )


@blueprint.get("/incidents/<incident_id>/postmortem")
def postmortem(incident_id: str) -> Response:
    """The postmortem draft (Markdown, as the API has it) on a page: to read, and to
    copy into the team's document store."""
    _query(set())
    if not INCIDENT_ID.fullmatch(incident_id):
        raise BadRequest("expected letters, digits, _ and -", field="incident_id")
    person = _reader()
    text = postmortem_api.draft(services(), incident_id)
    if text is None:
        raise NotFound(f"no incident {incident_id!r}", field="incident_id")
    return _page("postmortem.html", person, incident_id=incident_id, markdown=text)


@blueprint.get("/incidents/<incident_id>")
def incident(incident_id: str) -> Response:
    done = _query({"done"}).get("done")
    if done is not None and done not in DONE:
        raise BadRequest(f"unknown done {done[:64]!r}", field="done")
    _id(incident_id)
    return _incident(_reader(), incident_id, done=done)


def _incident(
    person: Person, incident_id: str, *, done: str | None = None, error: str = ""
) -> Response:
    s = services()
    _id(incident_id)
    view = _store(lambda: incident_page(s, incident_id))
    if view is None:
        raise NotFound(f"no incident {incident_id!r}", field="incident_id")
    proposals = [
        {"proposal": p, "may": person.may("responder") and may_approve(person, p.approver)}
        for p in view.pop("proposals")
    ]
    return _page("incident.html", person, **view, proposals=proposals, done=done, error=error)


def _command(name: str) -> None:
    """POST /incidents/<id>/<name>: operations.run with the form's fields of `name`."""

    def view(incident_id: str) -> BaseResponse:
        s, person = services(), _writer()
        _id(incident_id)
        body = {f: request.form[f] for f in operations.FIELDS[name] if f in request.form}
        missing = [
            f for f, required in operations.FIELDS[name].items() if required and f not in body
        ]
        if missing:
            return _refused(person, incident_id, BadRequest(f"{missing[0]} is required"))
        try:
            _store(lambda: operations.run(s, person, name, incident_id, body))
        except CommandError as exc:
            return _refused(person, incident_id, exc)
        return _back(incident_id, name)

    blueprint.add_url_rule(
        f"/incidents/<incident_id>/{name}", f"web_{name}", view, methods=["POST"]
    )


for _name in operations.FIELDS:
    _command(_name)


@blueprint.post("/actions/<proposal_id>/approve")
def approve(proposal_id: str) -> BaseResponse:
    s, person = services(), _writer()
    incident_id = _id(request.form.get("incident", ""))
    try:
        job = _store(
            lambda: approvals.approve(
                s.redis,
                s.queue,
                s.keys,
                proposal_id,
                by=person.name,
                may=lambda needed: may_approve(person, needed),
            )
        )
    except approvals.NotAllowed as exc:
        return _refused(person, incident_id, Forbidden(f"{exc}; {person.name} is {person.role}"))
    if job is None:
        return _refused(person, incident_id, NotFound("no such pending proposal (expired or used)"))
    return _back(incident_id, "approve")


@blueprint.post("/actions/<proposal_id>/reject")
def reject(proposal_id: str) -> BaseResponse:
    s, person = services(), _writer()
    incident_id = _id(request.form.get("incident", ""))
    reason = request.form.get("reason", "")
    done = _store(
        lambda: approvals.reject(s.redis, s.keys, proposal_id, by=person.name, reason=reason)
    )
    if not done:
        return _refused(person, incident_id, NotFound("no such pending proposal (expired or used)"))
    return _back(incident_id, "reject")


@blueprint.get("/login")
def login_form() -> Response:
    return _login_page(status=200)


@blueprint.post("/login")
def login() -> BaseResponse:
    signer = _checked_post()
    if not signer.configured:
        return _login_page(status=503)
    token = request.form.get("token", "").strip()
    person = _store(lambda: services().users.current().by_token(token)) if token else None
    if person is None:
        return _login_page(status=401, error="unknown token")
    target = request.form.get("next", "")
    response = redirect(target if NEXT.fullmatch(target) else "/incidents", 303)
    _set_cookie(response, signer, signer.new(person.name))  # a new id: no fixation
    return response


@blueprint.post("/logout")
def logout() -> BaseResponse:
    signer = _checked_post()
    session = signer.load(request.cookies.get(COOKIE))
    if session is not None and session.person:
        s = services()
        left = max(1, session.expires - int(time.time()))
        s.redis.set(s.keys.signed_out(session.id), "1", ex=left)  # the server forgets it too
    response = redirect("/login", 303)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="Strict", secure=_https())
    return response


@blueprint.errorhandler(ApiError)
def _api_error(error: ApiError) -> Response:
    return _error_page(error.status, error.message)


@blueprint.errorhandler(HTTPException)
def _http_error(error: HTTPException) -> Response:
    return _error_page(error.code or 500, error.description or error.name)


@blueprint.errorhandler(_SignIn)
def _sign_in(_: _SignIn) -> BaseResponse:
    if request.method != "GET":
        return _error_page(401, "sign in first")
    return redirect(f"/login?next={request.path}", 303)


def _reader() -> Person:
    """The person reading a page (any role)."""
    s = services()
    try:
        return caller(s, "viewer")
    except Unauthorized:
        pass
    session = _signer().load(request.cookies.get(COOKIE))
    if session is None or not session.person or s.redis.exists(s.keys.signed_out(session.id)):
        raise _SignIn  # a copied cookie dies with its sign-out
    found = s.users.current().by_name(session.person)
    if found is None:
        raise _SignIn
    return found


def _writer() -> Person:
    """The person posting a form: a same-site post with the session's CSRF token, by a
    responder (403 otherwise, and nothing changes)."""
    _checked_post()
    person = _reader()
    if not person.may("responder"):
        raise Forbidden(f"{person.name} is {person.role}; this needs responder")
    return person


def _checked_post() -> Signer:
    signer = _signer()
    session = signer.load(request.cookies.get(COOKIE))
    sent = {h: v for h in FETCH_HEADERS if (v := request.headers.get(h)) is not None}
    if not same_site(sent, request.host):
        raise Forbidden("a cross-site post is refused")
    if not signer.csrf_valid(session, request.form.get(CSRF_FIELD, "")):
        raise Forbidden("missing or wrong form token (CSRF); reload the page and try again")
    return signer


def _page(template: str, person: Person | None, *, status: int = 200, **context: Any) -> Response:
    """The page, with a session (a new one when there is none) for its forms' CSRF token."""
    signer = _signer()
    session = signer.load(request.cookies.get(COOKIE))
    fresh = session is None
    if session is None:
        session = signer.new()
    html = render_template(template, person=person, csrf=signer.csrf(session), **context)
    response = Response(html, status, mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"  # no clickjacking of the Approve button
    if fresh:
        _set_cookie(response, signer, session)
    return response


def _login_page(*, status: int, error: str = "") -> Response:
    target = request.values.get("next", "")
    return _page(
        "login.html",
        None,
        status=status,
        configured=_signer().configured,
        error=error,
        next=target if NEXT.fullmatch(target) else "",
    )


def _error_page(status: int, message: str) -> Response:
    return _page("error.html", None, status=status, message=message)


def _refused(person: Person, incident_id: str, exc: CommandError | ApiError) -> Response:
    if isinstance(exc, CommandError):
        status = {"not_found": 404, "conflict": 409}.get(exc.reason, 400)
        field = f" ({exc.field})" if exc.field else ""
        message = f"{exc.message}{field}"
    else:
        status, message = exc.status, exc.message
    if status == 404 and not _store(lambda: incident_page(services(), incident_id)):
        return _error_page(404, message)
    response = _incident(person, incident_id, error=message)
    response.status_code = status
    return response


def _back(incident_id: str, done: str) -> BaseResponse:
    return redirect(f"/incidents/{incident_id}?done={done}", 303)


def _set_cookie(response: BaseResponse, signer: Signer, session: Session) -> None:
    response.set_cookie(
        COOKIE,
        signer.dump(session),
        max_age=LIFETIME,
        path="/",
        httponly=True,
        samesite="Strict",
        secure=_https(),
    )


def _https() -> bool:
    """Whether the browser reached us over TLS, here or at the proxy (a client that lies
    about it only gets a cookie it will not send back over plain HTTP)."""
    return request.is_secure or request.headers.get("X-Forwarded-Proto") == "https"


def _query(known: set[str]) -> dict[str, str]:
    args: dict[str, str] = {}
    for name, value in request.args.items(multi=True):
        if name not in known or name in args:
            raise BadRequest(f"unknown or repeated query parameter {name[:64]!r}", field=name[:64])
        args[name] = value
    return args


def _id(incident_id: str) -> str:
    if not INCIDENT_ID.fullmatch(incident_id):
        raise BadRequest("expected an incident id: letters, digits, _ and -", field="incident_id")
    return incident_id


def _store(call: Callable[[], T]) -> T:
    try:
        return call()
    except RedisError:
        raise Unavailable("incident store unavailable; retry later") from None


def _signer() -> Signer:
    return signer_of(current_app)
