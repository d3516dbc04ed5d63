"""People's operations on incidents, the same from wherever a person does them: the
HTTP API (webhook/commands_api.py), Slack's slash commands (webhook/slack_commands.py)
and the web page. Each takes the person and the command's fields (already checked to
be exactly `FIELDS[name]`, strings) and calls the domain (workers/incident/commands.py);
what the domain refuses is a CommandError, which each place shows in its own way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from webhook.app_services import Services
from webhook.users import Person
from workers.incident import commands, follow_ups
from workers.incident.commands import CommandError, Decision, Done

Fields = Mapping[str, bool]
"""A command's fields: name -> required."""

DECLARE: Fields = {"title": True, "severity": True, "service": True, "summary": False}
FIELDS: dict[str, Fields] = {
    "notes": {"text": True},
    "assign": {"role": True, "person": True},
    "status": {"status": True},
    "severity": {"severity": True},
    "resolve": {},
    "reopen": {},
    "acknowledge": {},
    "runbook": {},
    "follow-ups": {"text": True, "owner": True, "due": True, "priority": False},
    "follow-up-done": {"id": True},
    "postmortem-written": {"url": False},
}
"""The commands on an incident, by the name of their URL (`/incidents/<id>/<name>`)."""


def run(s: Services, person: Person, name: str, incident_id: str, body: dict[str, str]) -> Done:
    """Command `name` on the incident, by `person`."""
    if name == "acknowledge":
        done, first = s.commands.acknowledge(incident_id, person.name)
        s.metrics.acknowledged(done.incident.severity, first)
        return done
    return s.commands.run(incident_id, _decision(s, name)(person.name, body))


def declare(s: Services, person: Person, body: dict[str, str]) -> Done:
    return s.commands.declare(
        person.name,
        title=body["title"],
        severity=body["severity"],
        service=body["service"],
        summary=body.get("summary", ""),
        dry_run=s.settings.dry_run,
        slack_id=person.slack_id,
    )


def _decision(s: Services, name: str) -> Callable[[str, dict[str, str]], Decision]:
    decisions: dict[str, Callable[[str, dict[str, str]], Decision]] = {
        "notes": lambda by, b: commands.note(by, b["text"]),
        "assign": lambda by, b: commands.assign(
            by, b["role"], _known(s, b["person"]), slack_id=_slack_id(s, b["person"])
        ),
        "status": lambda by, b: commands.set_phase(by, b["status"]),
        "severity": lambda by, b: commands.set_severity(by, b["severity"]),
        "resolve": lambda by, b: commands.resolve(by),
        "reopen": lambda by, b: commands.reopen(by),
        "runbook": lambda by, b: commands.run_runbook(by),
        "follow-ups": lambda by, b: follow_ups.add(
            by, b["text"], b["owner"], b["due"], b.get("priority", "P2")
        ),
        "follow-up-done": lambda by, b: follow_ups.done(by, b["id"]),
        "postmortem-written": lambda by, b: follow_ups.postmortem_written(by, b.get("url", "")),
    }
    return decisions[name]


def _known(s: Services, name: str) -> str:
    """A person of the users file (a role goes to someone who can sign in and be paged);
    anyone's name when there is no users file (`dev`, `--insecure-no-auth`)."""
    users = s.users.current()
    if users.people and users.by_name(name) is None:
        raise CommandError("invalid", f"no person {name[:64]!r} in the users file", "person")
    return name


def _slack_id(s: Services, name: str) -> str | None:
    found = s.users.current().by_name(name)
    return found.slack_id if found is not None else None
