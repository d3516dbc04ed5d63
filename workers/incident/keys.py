"""Names of every Redis key alertpilot writes, in one place.

All keys share one prefix (`ALERTPILOT_KEY_PREFIX`), so two installations, or
the test suite, can share a Redis server without seeing each other's state.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    prefix: str = "alertpilot:"

    def incident(self, incident_id: str) -> str:
        """JSON document of one incident (severity, route, alerts, times)."""
        return f"{self.prefix}incident:{incident_id}"

    def external(self, incident_id: str) -> str:
        """Hash of the incident's ids at vendors (statuspage -> incident id)."""
        return f"{self.prefix}incident:{incident_id}:external"

    def pending_tick(self, incident_id: str) -> str:
        """Job id of the incident's next status-update tick, so a resolve can cancel it."""
        return f"{self.prefix}incident:{incident_id}:tick"

    def acknowledgement(self, incident_id: str) -> str:
        """Hash of the incident's first PagerDuty acknowledgement (when, who, within)."""
        return f"{self.prefix}incident:{incident_id}:ack"

    def figures(self, incident_id: str) -> str:
        """Hash figure -> seconds of the incident's response figures already recorded in
        their histograms: each is recorded once (workers/incident/figures_store.py)."""
        return f"{self.prefix}incident:{incident_id}:figures"

    def figure_histogram(self, figure: str) -> str:
        """Hash "severity|le:<bound>", "severity|sum", "severity|count" of one response
        figure (declare, acknowledge, mitigate, resolve), shared by every process."""
        return f"{self.prefix}stats:figure:{figure}"

    def signed_out(self, session_id: str) -> str:
        """A web session its person signed out of (kept until it would have expired)."""
        return f"{self.prefix}signed-out:{session_id}"

    def slack_request(self, digest: str) -> str:
        """A Slack slash command already acted on (its signature's hash): a replay does
        nothing (expires after Slack's 5-minute window)."""
        return f"{self.prefix}slack-request:{digest}"

    def pagerduty_event(self, event_id: str) -> str:
        """Marker of a PagerDuty webhook event already recorded (it delivers at least once)."""
        return f"{self.prefix}pagerduty:event:{event_id}"

    def timeline(self, incident_id: str) -> str:
        """List of JSON timeline entries, oldest first."""
        return f"{self.prefix}incident:{incident_id}:timeline"

    def incident_key(self, key_hash: str) -> str:
        """Hash {open, last}: the open and the latest incident of an incident key."""
        return f"{self.prefix}ikey:{key_hash}"

    @property
    def open_incidents(self) -> str:
        """Sorted set of open incident ids, scored by start time."""
        return f"{self.prefix}incidents:open"

    @property
    def resolved_incidents(self) -> str:
        """Sorted set of resolved incident ids, scored by resolve time."""
        return f"{self.prefix}incidents:resolved"

    def group(self, group_hash: str) -> str:
        """Digest of the last notification applied for an Alertmanager group (resends, HA twins)."""
        return f"{self.prefix}group:{group_hash}"

    @property
    def replay(self) -> str:
        """List of the last accepted notifications (newest first), for `policy diff --replay`."""
        return f"{self.prefix}replay"

    @property
    def replay_bytes(self) -> str:
        """The bytes of the `replay` list's entries, kept with it (webhook/replay.py)."""
        return f"{self.prefix}replay:bytes"

    def group_incidents(self, group_hash: str) -> str:
        """Set of the incidents holding alerts of one Alertmanager group (by groupKey hash),
        so a notification can end its missing alerts in incidents it lists nothing for."""
        return f"{self.prefix}group:{group_hash}:incidents"

    def effect(self, job_id: str) -> str:
        """Marker that a job's effect happened, so a rerun does not repeat it."""
        return f"{self.prefix}effect:{job_id}"

    def intent(self, job_id: str) -> str:
        """The change a mitigation job decided on, so a rerun repeats it, not a new one."""
        return f"{self.prefix}intent:{job_id}"

    def action_lock(self, incident_id: str, action: str) -> str:
        """Lock held while one action of one incident runs (declare vs resolve, reruns)."""
        return f"{self.prefix}lock:{incident_id}:{action}"

    @property
    def mitigations_paused(self) -> str:
        """Kill switch: set (to the reason) while every mitigation is paused."""
        return f"{self.prefix}mitigations:paused"

    @property
    def mitigations_paused_at(self) -> str:
        """When the kill switch was turned on (Unix seconds): how long it has been on."""
        return f"{self.prefix}mitigations:paused_at"

    def attempts(self, incident_id: str, action: str) -> str:
        return f"{self.prefix}incident:{incident_id}:attempts:{action}"

    def cooldown(self, action: str, namespace: str, name: str) -> str:
        return f"{self.prefix}cooldown:{action}:{namespace}/{name}"

    def job_locks(self, job_id: str) -> str:
        """Set of the locks a job holds, released for it if its work horse dies."""
        return f"{self.prefix}job-locks:{job_id}"

    def target_lock(self, namespace: str, name: str) -> str:
        """Held while a mitigation changes one workload (any incident, any worker)."""
        return f"{self.prefix}lock:target:{namespace}/{name}"

    def budget(self, hour: int) -> str:
        return f"{self.prefix}budget:{hour}"

    def budget_claim(self, job_id: str) -> str:
        """The budget key a job's run took its unit from: a rerun after a crash reuses it,
        and a refund gives it back to that hour."""
        return f"{self.prefix}budget-claim:{job_id}"

    def mitigation(self, incident_id: str, action: str) -> str:
        """Hash of what a mitigation changed (kind, target, before, after), for revert."""
        return f"{self.prefix}incident:{incident_id}:mitigation:{action}"

    def proposal(self, proposal_id: str) -> str:
        """A mitigation waiting for approval (expires)."""
        return f"{self.prefix}proposal:{proposal_id}"

    @property
    def proposals(self) -> str:
        """Sorted set of pending proposal ids by their expiry (epoch seconds)."""
        return f"{self.prefix}proposals"

    @property
    def jobs_finished(self) -> str:
        """Hash "action|outcome" -> count, shared by every worker."""
        return f"{self.prefix}stats:jobs_finished"

    def scan_pattern(self) -> str:
        return f"{self.prefix}*"


def text(value: bytes | str) -> str:
    """A value read from Redis (bytes unless the client decodes) as text."""
    return value.decode() if isinstance(value, bytes) else value


def base36(number: int) -> str:
    """`number` in digits and lowercase letters: the time part of an incident id."""
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while number:
        number, rest = divmod(number, 36)
        out = digits[rest] + out
    return out or "0"


def group_hash(receiver: str, group_key: str) -> str:
    """An Alertmanager group's identity (its receiver and groupKey): its `Keys.group` key."""
    body = json.dumps([receiver, group_key])
    return hashlib.sha256(body.encode()).hexdigest()
