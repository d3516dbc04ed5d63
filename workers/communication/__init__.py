"""The communication actions, one module each: page (PagerDuty), statuspage, notify (chat),
war_room (an incident's own Slack channel).

Each declares its `Action` (workers/actions.py), whose `run` takes the job's
request, the incident as it is now and the vendors, calls its adapter, and
returns what happened for the timeline; "resolved" is a run like the others (no
`revert`). Exactly once comes from the job's effect marker
(workers/jobs/dispatch.py) and from each vendor's idempotency key (see each module).
"""

from workers.communication.notify import NOTIFY
from workers.communication.page import PAGE
from workers.communication.status_page import STATUSPAGE
from workers.communication.vendors import Vendors
from workers.communication.war_room import WAR_ROOM

__all__ = ["NOTIFY", "PAGE", "STATUSPAGE", "WAR_ROOM", "Vendors"]
