"""`alertpilot handoff [--since 7d] [--post] [-o json]`: the on-call handoff report, as an
HTTP client of the API (webhook/client.py), like the people's commands (people_cli.py):
only the API's URL and the person's token, never Redis.

It asks a worker for the whole report (POST /api/v1/handoff), then reads it
(GET /api/v1/handoff/<id>) every POLL_SECONDS for up to WAIT_SECONDS and prints its
Markdown, or with `-o json` the stored answer. When no worker has built it by then,
it prints the report the API builds at once (GET /api/v1/handoff), which has no
rollouts, and says so on stderr; the queued job still runs once a worker takes it (and
posts to chat, with --post). Exit codes are people_cli's.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.parse
from typing import Any

from webhook.client import Client, ClientError, path
from webhook.people_cli import EXIT_CODES, runner

WAIT_SECONDS = 30.0
POLL_SECONDS = 1.0


def register(commands: Any) -> None:
    """Add `handoff` to the `alertpilot` sub-commands."""
    summary = "the on-call handoff report (Markdown), through the API"
    parser = commands.add_parser(
        "handoff",
        help=summary,
        description=summary,
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--url", help="the API, e.g. http://127.0.0.1:9095 (ALERTPILOT_URL)")
    parser.add_argument("-o", "--output", choices=("markdown", "json"), default="markdown")
    parser.add_argument("--since", default="7d", help="the period, 1h to 90d (default 7d)")
    parser.add_argument("--post", action="store_true", help="a worker sends it to chat too")
    parser.set_defaults(client=runner(handoff))


def handoff(client: Client, args: argparse.Namespace) -> None:
    body: dict[str, Any] = {"since": args.since} | ({"post": True} if args.post else {})
    report_id = str(client.request("POST", path("handoff"), body).get("id", ""))
    found = wait_for(client, report_id, posting=args.post)
    if found is None:
        late = " (the chat post waits for a worker)" if args.post else ""
        print(
            f"alertpilot: no worker built report {report_id} within {WAIT_SECONDS:g} s: "
            f"this one, built by the API, lacks the recent rollouts{late}",
            file=sys.stderr,
        )
        query = urllib.parse.urlencode({"since": args.since})
        found = client.request("GET", f"{path('handoff')}?{query}")
    elif args.post and found.get("chat") != "posted":
        print(f"alertpilot: warning: {found.get('chat') or 'not posted'}", file=sys.stderr)
    if found.get("template_error"):
        print(f"alertpilot: warning: {found['template_error']}", file=sys.stderr)
    if args.output == "json":
        print(json.dumps(found, indent=2, sort_keys=True))
    else:
        print(str(found.get("markdown", "")), end="")


def wait_for(client: Client, report_id: str, *, posting: bool) -> dict[str, Any] | None:
    """The stored report once a worker built it (and, `posting`, once it has posted),
    or None after WAIT_SECONDS."""
    deadline = time.monotonic() + WAIT_SECONDS
    found: dict[str, Any] | None = None
    while True:
        try:
            found = client.request("GET", path("handoff", report_id))
        except ClientError as exc:
            if exc.status != 404:
                raise
        if found is not None and not (posting and found.get("chat") == "sending"):
            return found
        if time.monotonic() >= deadline:
            return found
        sleep(POLL_SECONDS)


def sleep(seconds: float) -> None:
    """Between two reads (a test runs the worker's jobs here instead)."""
    time.sleep(seconds)
