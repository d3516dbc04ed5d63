"""After the incident: its action items (follow-ups) and whether its postmortem is
written. Pure decisions, as people's other commands (workers/incident/commands.py),
written through the same `Commands.run` under WATCH and recorded with the person.

A follow-up is {id ("F1"...), text, owner, due (YYYY-MM-DD), priority (P0..P3), by,
at, and done_at/done_by once done}; the postmortem draft and the on-call handoff list
them. A postmortem is due `postmortem_within` after resolve (the severity's); once a
person says it is written (with its link), the check at its due time stays quiet.
"""

from __future__ import annotations

import re
from datetime import date

from workers.incident.commands import CommandError, Decision, Moment, checked_name, checked_text
from workers.incident.record import Incident
from workers.incident.transitions import Change, entry

PRIORITIES = ("P0", "P1", "P2", "P3")
MAX_FOLLOW_UPS = 100
URL = re.compile(r"https?://[A-Za-z0-9\-._~:/?#\[\]@!$&()*+,;=%]{1,2000}")
"""RFC 3986's characters only: no space, quote, control or invisible character."""


def add(by: str, text: str, owner: str, due: str, priority: str = "P2") -> Decision:
    """A follow-up on the incident, open or resolved."""
    words = checked_text(text, "text")
    owner = checked_name(owner, "owner")
    when = _date(due)
    if priority not in PRIORITIES:
        raise CommandError("invalid", f"expected one of {', '.join(PRIORITIES)}", "priority")

    def decide(current: Incident, moment: Moment) -> Change:
        if len(current.follow_ups) >= MAX_FOLLOW_UPS:
            raise CommandError("conflict", f"{current.id} has {MAX_FOLLOW_UPS} follow-ups")
        item = {
            "id": f"F{len(current.follow_ups) + 1}",
            "text": words,
            "owner": owner,
            "due": when,
            "priority": priority,
            "by": by,
            "at": moment.now,
        }
        incident = current.with_changes(follow_ups=[*current.follow_ups, item])
        message = f"follow-up {item['id']} by {by}: {words} (owner {owner}, due {when}, {priority})"
        details = {k: item[k] for k in ("owner", "due", "priority")}
        found = entry(moment, "follow_up", message, by=by, follow_up=item["id"], **details)
        return Change(incident, None, [found])

    return decide


def done(by: str, follow_up: str) -> Decision:
    """Mark follow-up `follow_up` (F1...) done."""

    def decide(current: Incident, moment: Moment) -> Change:
        found = next((f for f in current.follow_ups if f["id"] == follow_up), None)
        if found is None:
            raise CommandError(
                "not_found", f"no follow-up {follow_up[:16]!r} on {current.id}", "id"
            )
        if found.get("done_at"):
            raise CommandError("conflict", f"{follow_up} is done already")
        items = [
            {**f, "done_at": moment.now, "done_by": by} if f is found else f
            for f in current.follow_ups
        ]
        incident = current.with_changes(follow_ups=items)
        message = f"follow-up {follow_up} done ({by}): {found['text']}"
        found_entry = entry(moment, "follow_up_done", message, by=by, follow_up=follow_up)
        return Change(incident, None, [found_entry])

    return decide


def postmortem_written(by: str, url: str = "") -> Decision:
    """The incident's postmortem is written (at `url`, when given)."""
    if url and not URL.fullmatch(url):
        raise CommandError("invalid", "an http(s) URL without spaces or quotes", "url")

    def decide(current: Incident, moment: Moment) -> Change:
        if current.status != "resolved":
            raise CommandError("conflict", f"{current.id} is open; resolve it first")
        record = {**current.postmortem, "done_at": moment.now, "done_by": by}
        if url:
            record["url"] = url
        incident = current.with_changes(postmortem=record)
        message = f"postmortem written, says {by}" + (f": {url}" if url else "")
        return Change(incident, None, [entry(moment, "postmortem_written", message, by=by)])

    return decide


def _date(value: str) -> str:
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value, re.ASCII):
            raise ValueError
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise CommandError("invalid", "a date, YYYY-MM-DD", "due") from None
