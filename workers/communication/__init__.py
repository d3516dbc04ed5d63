"""The communication actions, one module each: page (PagerDuty), statuspage, notify (chat).

Each takes the job's request, the incident as it is now and the vendors, calls its
adapter, and returns what happened for the timeline. Exactly once comes from the
job's effect marker (workers/jobs/dispatch.py) and from each vendor's idempotency
key (see each module).
"""

from workers.communication.notify import notify
from workers.communication.page import page
from workers.communication.status_page import statuspage
from workers.communication.vendors import Vendors

__all__ = ["Vendors", "notify", "page", "statuspage"]
