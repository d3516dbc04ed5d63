"""`alertpilot incidents ...` and `alertpilot actions ...`: people's commands, run from a
laptop as an HTTP client of the API (webhook/client.py), as amtool is of Alertmanager.

They read no other setting and need no Redis: only the API's URL (`--url` or
ALERTPILOT_URL) and the person's token (ALERTPILOT_TOKEN, or the file named by
ALERTPILOT_TOKEN_FILE), sent as a bearer token and never printed.

Output is a table for people, or with `-o json` the API's answer as is. Errors are one
line on stderr, `alertpilot: 403 forbidden: <the API's message>`. Exit codes:
0 done; 1 the API refused (4xx); 2 usage or configuration error (bad flags, no URL or
token, a URL that redirects); 3 the API could not be reached, answered 5xx or not as
alertpilot's API.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from webhook.client import Client, ClientError, base_url, path
from workers.config import SettingsError, secret
from workers.incident.record import PHASES, ROLES

EXIT_CODES = """\
exit codes:
  0  done
  1  the API refused (4xx: 400 bad value, 401, 403, 404, 409)
  2  usage or configuration error (bad flags, no URL or token, a URL that redirects)
  3  the API could not be reached, answered 5xx, or not as alertpilot's API

connection: --url or ALERTPILOT_URL (e.g. http://127.0.0.1:9095); the token from
ALERTPILOT_TOKEN or the file ALERTPILOT_TOKEN_FILE names."""

TIME = "%Y-%m-%dT%H:%M:%SZ"
Command = Callable[[Client, argparse.Namespace], None]


def register(commands: Any) -> None:
    """Add `incidents` and `actions` to the `alertpilot` sub-commands."""
    _incidents(_group(commands, "incidents", "incidents, through the API"))
    actions = _group(commands, "actions", "proposed mitigations, through the API")
    _leaf(actions, "list", _actions, "proposals waiting for a person, soonest to expire first")
    approve = _leaf(actions, "approve", _approve, "approve a proposed mitigation")
    approve.add_argument("proposal_id", metavar="ID")
    reject = _leaf(actions, "reject", _reject, "reject a proposed mitigation")
    reject.add_argument("proposal_id", metavar="ID")
    reject.add_argument("--reason", default=None, help="recorded on the timeline")
    postmortem = _leaf(
        commands, "postmortem", _postmortem, "an incident's postmortem draft (Markdown)", "id"
    )
    postmortem.add_argument(
        "--done",
        nargs="?",
        const="",
        default=None,
        metavar="URL",
        help="instead: say it is written (and where)",
    )
    runbook = _group(commands, "runbook", "runbooks' read-only steps, through the API")
    _leaf(runbook, "run", _runbook_run, "run an incident's runbook now (onto its timeline)", "id")
    _leaf(runbook, "show", _runbook_show, "the runbook a route names, with its steps", "route")


def _incidents(group: Any) -> None:
    listed = _leaf(group, "list", _list, "open incidents, newest first, then resolved ones")
    listed.add_argument("--status", choices=("open", "resolved"))
    listed.add_argument("--limit", type=int, help="at most N (1 to 1000; the API's default 100)")
    _leaf(group, "show", _show, "an incident and its timeline", "id")
    declare = _leaf(group, "declare", _declare, "declare an incident no alert raised")
    declare.add_argument("--title", required=True)
    declare.add_argument("--severity", required=True, help="a severity of the policy (SEV1)")
    declare.add_argument("--service", required=True)
    declare.add_argument("--summary", default=None)
    _leaf(group, "ack", _ack, "acknowledge an incident", "id")
    for verb, direction in (("escalate", "raise"), ("downgrade", "lower")):
        severity = _leaf(group, verb, _severity, f"{direction} an incident's severity", "id")
        severity.add_argument("severity", metavar="SEVERITY", help="a severity of the policy")
        severity.set_defaults(verb=verb)
    assign = _leaf(group, "assign", _assign, "give PERSON a ROLE on an incident", "id")
    assign.add_argument("role", metavar="ROLE", choices=ROLES, help=", ".join(ROLES))
    assign.add_argument("person", metavar="PERSON")
    note = _leaf(group, "note", _note, "add a note to the timeline", "id")
    note.add_argument("text", metavar="TEXT", nargs="+", help="words, joined by spaces")
    status = _leaf(group, "status", _status, "set what responders know so far", "id")
    status.add_argument("status", metavar="STATUS", choices=PHASES, help=", ".join(PHASES))
    _leaf(group, "resolve", _resolve, "resolve an incident by hand", "id")
    _leaf(group, "reopen", _reopen, "open a resolved incident again", "id")
    follow = group.add_parser(
        "follow-up", help="an incident's action items", description="an incident's action items"
    ).add_subparsers(required=True, metavar="ACTION")
    add = _leaf(follow, "add", _follow_up, "add an action item to an incident", "id")
    add.add_argument("--owner", required=True, help="who does it")
    add.add_argument("--due", required=True, help="YYYY-MM-DD")
    add.add_argument("--priority", choices=("P0", "P1", "P2", "P3"), default="P2")
    add.add_argument("text", metavar="TEXT", nargs="+", help="words, joined by spaces")
    finished = _leaf(follow, "done", _follow_up_done, "mark an action item done", "id")
    finished.add_argument("follow_up", metavar="F", help="its id, F1...")


def _group(commands: Any, name: str, summary: str) -> Any:
    parser = commands.add_parser(
        name,
        help=summary,
        description=summary,
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser.add_subparsers(required=True, metavar="ACTION")


def _leaf(
    group: Any, name: str, command: Command, summary: str, *positionals: str
) -> argparse.ArgumentParser:
    """A command of `group` with the connection's options and `positionals`, and its exit
    codes in --help."""
    parser: argparse.ArgumentParser = group.add_parser(
        name,
        help=summary,
        description=summary,
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--url", help="the API, e.g. http://127.0.0.1:9095 (ALERTPILOT_URL)")
    parser.add_argument("-o", "--output", choices=("table", "json"), default="table")
    for positional in positionals:
        parser.add_argument(positional, metavar=positional.upper())
    parser.set_defaults(client=runner(command))
    return parser


def runner(command: Command) -> Callable[[argparse.Namespace, Mapping[str, str]], int]:
    """`command` with its connection made from `args` and `env`, and errors as exit codes."""

    def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
        try:
            client = connect(args.url, env)
        except (ValueError, SettingsError) as exc:
            print(f"alertpilot: {exc}", file=sys.stderr)
            return 2
        try:
            command(client, args)
        except ClientError as exc:
            print(f"alertpilot: {exc}", file=sys.stderr)
            return exit_code(exc.status)
        return 0

    return run


def connect(url: str | None, env: Mapping[str, str]) -> Client:
    """The client for `url` (else ALERTPILOT_URL) and the token of the environment;
    ValueError or SettingsError naming the flag or variable that is missing or wrong."""
    source = "--url" if url else "ALERTPILOT_URL"
    url = url or env.get("ALERTPILOT_URL")
    if not url:
        raise ValueError("no API URL: pass --url or set ALERTPILOT_URL (http://HOST:PORT)")
    try:
        url = base_url(url)
    except ValueError as exc:
        raise ValueError(f"{source}: {exc}") from None
    token = (secret(env, "ALERTPILOT_TOKEN") or "").strip()
    if not token:
        raise ValueError("no token: set ALERTPILOT_TOKEN or ALERTPILOT_TOKEN_FILE")
    try:
        return Client(url, token)
    except ValueError as exc:  # the URL passed: the token is what is wrong
        named = "ALERTPILOT_TOKEN" if env.get("ALERTPILOT_TOKEN") else "ALERTPILOT_TOKEN_FILE"
        raise ValueError(f"{named}: {exc}") from None


def exit_code(status: int) -> int:
    """1 for a refusal (4xx), 2 for a redirect (the URL is not the API's), 3 otherwise."""
    if 400 <= status < 500:
        return 1
    return 2 if 300 <= status < 400 else 3


# --- incidents -------------------------------------------------------------------------


def _list(client: Client, args: argparse.Namespace) -> None:
    query = {"status": args.status, "limit": args.limit}
    given = urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
    answer = client.request("GET", path("incidents") + (f"?{given}" if given else ""))
    _emit(args, answer, _incidents_table)


def _show(client: Client, args: argparse.Namespace) -> None:
    _emit(args, client.request("GET", path("incidents", args.id)), _incident_text)


def _declare(client: Client, args: argparse.Namespace) -> None:
    body = {"title": args.title, "severity": args.severity, "service": args.service}
    if args.summary is not None:
        body["summary"] = args.summary
    _emit(args, client.request("POST", path("incidents"), body), _done)


def _ack(client: Client, args: argparse.Namespace) -> None:
    _command(client, args, "acknowledge", {})


def _severity(client: Client, args: argparse.Namespace) -> None:
    """Send the severity. The policy's order, which the API does not show, decides whether
    it rises or falls, and the answer's entry says which: one the person did not expect
    (`escalate` to a lower severity) is done, and said so on stderr."""
    answer = _command(client, args, "severity", {"severity": args.severity})
    kinds = {e.get("kind") for e in answer.get("entries", []) if isinstance(e, dict)}
    other = "downgraded" if args.verb == "escalate" else "escalated"
    if other in kinds:
        print(
            f"alertpilot: warning: {args.id} was {other}, not {args.verb}d: the policy ranks "
            f"{args.severity} {'below' if args.verb == 'escalate' else 'above'} its severity",
            file=sys.stderr,
        )


def _assign(client: Client, args: argparse.Namespace) -> None:
    _command(client, args, "assign", {"role": args.role, "person": args.person})


def _note(client: Client, args: argparse.Namespace) -> None:
    _command(client, args, "notes", {"text": " ".join(args.text)})


def _status(client: Client, args: argparse.Namespace) -> None:
    _command(client, args, "status", {"status": args.status})


def _resolve(client: Client, args: argparse.Namespace) -> None:
    _command(client, args, "resolve", {})


def _reopen(client: Client, args: argparse.Namespace) -> None:
    _command(client, args, "reopen", {})


def _command(client: Client, args: argparse.Namespace, name: str, body: dict[str, str]) -> Any:
    answer = client.request("POST", path("incidents", args.id, name), body)
    _emit(args, answer, _done)
    return answer


def _follow_up(client: Client, args: argparse.Namespace) -> None:
    body = {"text": " ".join(args.text), "owner": args.owner, "due": args.due}
    _command(client, args, "follow-ups", body | {"priority": args.priority})


def _follow_up_done(client: Client, args: argparse.Namespace) -> None:
    _command(client, args, "follow-up-done", {"id": args.follow_up})


def _postmortem(client: Client, args: argparse.Namespace) -> None:
    if args.done is not None:
        _command(client, args, "postmortem-written", {"url": args.done} if args.done else {})
        return
    draft = client.text(path("incidents", args.id, "postmortem"))
    print(
        "".join(
            c if c in "\n\t" or c.isprintable() else "\N{REPLACEMENT CHARACTER}" for c in draft
        ),
        end="",
    )


def _runbook_run(client: Client, args: argparse.Namespace) -> None:
    _command(client, args, "runbook", {})


def _runbook_show(client: Client, args: argparse.Namespace) -> None:
    _emit(args, client.request("GET", path("routes", args.route, "runbook")), _runbook_text)


def _runbook_text(answer: Any) -> str:
    book = answer.get("runbook") or {}
    escalation = book.get("escalation") or {}
    summary = [
        ("Route:", answer.get("route")),
        ("Runbook:", f"{answer.get('name')}: {book.get('title')}"),
        ("Document:", book.get("url")),
        ("Symptoms:", "; ".join(book.get("symptoms") or []) or None),
        ("Severity:", book.get("severity_notes") or None),
        (
            "Escalation:",
            f"after {escalation.get('after')} to {escalation.get('to')}" if escalation else None,
        ),
        ("Mitigations:", "; ".join(book.get("mitigations") or []) or None),
    ]
    steps = [(s.get("name"), s.get("type"), _step_text(s)) for s in book.get("steps") or []]
    return table(None, summary) + "\n\n" + table(("STEP", "TYPE", "WHAT"), steps)


def _step_text(step: Any) -> str:
    shown = {k: v for k, v in step.items() if k not in ("name", "type") and v not in (None, "")}
    return ", ".join(f"{k}={v}" for k, v in shown.items())


# --- actions ---------------------------------------------------------------------------


def _actions(client: Client, args: argparse.Namespace) -> None:
    _emit(args, client.request("GET", path("actions")), _actions_table)


def _approve(client: Client, args: argparse.Namespace) -> None:
    answer = client.request("POST", path("actions", args.proposal_id, "approve"), {})
    _emit(
        args,
        answer,
        lambda a: f"{args.proposal_id}: approved by {a.get('by')}, queued {a.get('job')}",
    )


def _reject(client: Client, args: argparse.Namespace) -> None:
    body = {} if args.reason is None else {"reason": args.reason}
    answer = client.request("POST", path("actions", args.proposal_id, "reject"), body)
    _emit(args, answer, lambda a: f"{args.proposal_id}: rejected by {a.get('by')}")


# --- output ----------------------------------------------------------------------------


def _emit(args: argparse.Namespace, answer: Any, render: Callable[[Any], str]) -> None:
    if args.output == "json":
        print(json.dumps(answer, indent=2, sort_keys=True))
        return
    text = render(answer)
    if text:
        print(text)


def _incidents_table(answer: Any) -> str:
    found = answer.get("incidents", [])
    if not found:
        print("no incidents", file=sys.stderr)
        return ""
    headers = ("ID", "SEVERITY", "STATUS", "PHASE", "IC", "ALERTS", "STARTED", "TITLE")
    rows = [
        (
            i.get("id"),
            i.get("severity"),
            i.get("status"),
            i.get("phase"),
            (i.get("roles") or {}).get("ic"),
            f"{i.get('alerts_firing')}/{i.get('alerts_total')}",
            _time(i.get("started_at")),
            i.get("title"),
        )
        for i in found
    ]
    return table(headers, rows)


def _incident_text(i: Any) -> str:
    roles = i.get("roles") or {}
    ack = i.get("acknowledged_at")
    summary = [
        ("ID:", i.get("id")),
        ("Title:", i.get("title")),
        ("Severity:", _severity_text(i)),
        ("Status:", f"{i.get('status')}, {i.get('phase')}"),
        ("Route:", i.get("route")),
        ("Started:", _time(i.get("started_at"))),
        ("Resolved:", _time(i.get("resolved_at"))),
        ("Acknowledged:", f"{_time(ack)} by {i.get('acknowledged_by')}" if ack else None),
        ("Roles:", "; ".join(f"{r}: {', '.join(p)}" for r, p in roles.items()) or None),
        ("Alerts:", f"{i.get('alerts_firing')} firing of {i.get('alerts_total')}"),
    ]
    entries = [
        (_time(e.get("at")), e.get("kind"), e.get("by"), e.get("message"))
        for e in i.get("timeline", [])
    ]
    shown = table(None, summary)
    latest = (i.get("runbook") or {}).get("latest")
    if latest:
        steps = [
            (r.get("name"), "ok" if r.get("ok") else "NOT OK", r.get("summary"))
            for r in latest.get("results", [])
        ]
        when = f"RUNBOOK ({latest.get('when')}, {_time(latest.get('at'))})"
        shown += "\n\n" + table((when, "", ""), steps)
    return shown + "\n\n" + table(("TIME", "KIND", "BY", "MESSAGE"), entries)


def _severity_text(i: Any) -> str:
    name, within = i.get("severity_name"), i.get("response_time")
    known = f" ({name}, respond within {within})" if name else " (not in the policy)"
    return f"{i.get('severity')}{known}"


def _done(answer: Any) -> str:
    """A command's answer: the incident's id and each timeline entry the command wrote."""
    incident_id = _cell((answer.get("incident") or {}).get("id"))
    return "\n".join(f"{incident_id}: {_cell(e.get('message'))}" for e in answer.get("entries", []))


def _actions_table(answer: Any) -> str:
    found = answer.get("actions", [])
    if not found:
        print("no actions waiting", file=sys.stderr)
        return ""
    headers = ("ID", "INCIDENT", "ACTION", "EXPIRES", "CHANGE")
    rows = [
        (
            a.get("id"),
            a.get("incident_id"),
            a.get("action"),
            _epoch(a.get("expires_at")),
            a.get("change"),
        )
        for a in found
    ]
    return table(headers, rows)


def table(headers: Sequence[str] | None, rows: Sequence[Sequence[Any]]) -> str:
    """Columns aligned like `kubectl get`: three spaces apart, the last one unpadded."""
    lines = [[_cell(v) for v in row] for row in ([headers] if headers else []) + list(rows)]
    if not lines:
        return ""
    widths = [max(len(line[c]) for line in lines) for c in range(len(lines[0]))]
    return "\n".join(
        "   ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )


def _cell(value: Any) -> str:
    """A value as one line of text: a list joined, None as -, control characters (an
    alert's title is anyone's text; ESC would drive the terminal) as spaces or U+FFFD."""
    if value is None or value == "" or value == []:
        return "-"
    if isinstance(value, list):
        value = ",".join(str(v) for v in value)
    text = str(value)
    return "".join(c if c.isprintable() else " " if c.isspace() else "\ufffd" for c in text)


def _time(iso: Any) -> str | None:
    """An RFC 3339 time as UTC to the second; as given when it does not parse."""
    if not isinstance(iso, str):
        return None
    try:
        at = datetime.fromisoformat(iso.replace("Z", "+00:00").replace("z", "+00:00"))
        if at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
        return at.astimezone(UTC).strftime(TIME)
    except (ValueError, OverflowError):
        return iso


def _epoch(seconds: Any) -> str | None:
    if not isinstance(seconds, (int, float)):
        return None
    try:
        return datetime.fromtimestamp(seconds, UTC).strftime(TIME)
    except (ValueError, OverflowError, OSError):
        return str(seconds)
