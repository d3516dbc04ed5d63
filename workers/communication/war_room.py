"""war_room: an incident's own Slack channel (Slack's Web API, workers/slack.py), for
the severities whose policy asks for one (`war_room: true`); skipped, and said on the
timeline, where no Slack app is configured.

Exactly once per incident: the channel's name is made from the incident (its start
date, a slug of its title, part of its id), so a retried job whose create lost Slack's
answer finds that channel by name and adopts it instead of making a second; the id is
then kept in the incident's external hash (the API shows its link). Every run sets the
topic (severity, status, IC, the bridge), posts the transition's message in the channel
(once per job: a retry after a failed invite does not post it again) and invites the
IC (their Slack id, kept on the incident when they were assigned or declared it).
"""

from __future__ import annotations

from workers.actions import Action, Outcome
from workers.communication.notify import chat_message
from workers.communication.vendors import Vendors
from workers.incident.errors import PermanentError
from workers.incident.keys import Keys, text
from workers.incident.record import Incident
from workers.jobs.contract import ActionRequest
from workers.params import WarRoomParams
from workers.slack import NameTaken, Slack, channel_name


def war_room(request: ActionRequest, incident: Incident, vendors: Vendors) -> Outcome:
    if vendors.slack is None:  # the severity asks, the installation has no Slack app
        return Outcome("skipped", "no war room: ALERTPILOT_SLACK_BOT_TOKEN is not set")
    slack = vendors.slack
    external = Keys(request.prefix).external(incident.id)
    stored = vendors.redis.hget(external, "slack_channel")
    if stored is None and request.transition == "resolved":
        return Outcome("skipped", "no war room was made for this incident")
    done = "used"
    if stored is None:
        channel_id, done = _open(slack, incident)
        url = slack.channel_url(channel_id)
        vendors.redis.hset(external, mapping={"slack_channel": channel_id, "slack_url": url})
    else:
        channel_id = text(stored)
    slack.set_topic(channel_id, topic(request, incident))
    posted = f"posted:{request.job_id}"
    if not vendors.redis.hexists(external, posted):  # a retry (a 429 on the invite) skips it
        slack.post(channel_id, chat_message(request, incident, vendors.integrations))
        vendors.redis.hset(external, posted, "1")
    invited = [incident.contacts[n] for n in incident.roles.get("ic", []) if n in incident.contacts]
    if invited:  # last: one unknown user fails the job after the message is out
        slack.invite(channel_id, invited)
    also = f", invited {len(invited)}" if invited else ""
    return Outcome("succeeded", f"war room {channel_id} {done}: {request.transition} posted{also}")


def _open(slack: Slack, incident: Incident) -> tuple[str, str]:
    day = incident.started_at[:10].replace("-", "")
    name = channel_name(day, incident.title, incident.id)
    try:
        return slack.create_channel(name).id, "made"
    except NameTaken:
        found = slack.find_channel(name)  # made by an earlier try whose answer was lost
        if found is None:
            raise PermanentError(
                f"the channel name {name} is taken by a channel alertpilot "
                "cannot see (private or archived)"
            ) from None
        return found.id, "adopted"


def topic(request: ActionRequest, incident: Incident) -> str:
    ic = ", ".join(incident.roles.get("ic", [])) or "none yet"
    state = "resolved" if incident.status == "resolved" else incident.phase
    bridge = request.params.get("bridge")
    parts = [incident.severity, state, f"IC: {ic}", *([f"bridge: {bridge}"] if bridge else [])]
    return " | ".join(parts)


WAR_ROOM = Action("war_room", WarRoomParams, run=war_room)
