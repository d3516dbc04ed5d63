"""A local HTTPS stand-in for the Atlassian Statuspage Manage API v1 (vendor-facts.md section 3).

It speaks the real contract on 127.0.0.1 with a certificate from ``standin_ca()``::

    with StatuspageStandIn(page_id="pg1", api_key="k", components={"cmp1": "API"}) as sp:
        requests.post(f"{sp.base_url}/pages/pg1/incidents", json={"incident": {...}},
                      headers={"Authorization": "OAuth k"}, verify=sp.ca_path, timeout=5)

Order of handling: programmed faults (``fail_next``), authentication (401), the rate limit
(420, or 429 if so constructed), then the page (404) and the route. Only requests that pass
authentication and the rate limit move the rate-limit clock (faults, 401s and 420s do not).
Every request is recorded in ``requests`` (``status`` is None when the connection was dropped).
An incident update is added on create, and on update when ``body`` is given or the status
changes. ``impact`` is ``impact_override`` if set, else derived from the incident's components.
"""

from __future__ import annotations

import copy
import json
import secrets
import string
import time
from datetime import UTC, datetime
from typing import Any

from tests.support.chat_standin import HTTPSStandIn, Received, Reply

INCIDENT_STATUSES = ("investigating", "identified", "monitoring", "resolved")
IMPACTS = ("none", "maintenance", "minor", "major", "critical")
_IMPACT_OF = {  # component status -> the impact it implies
    "operational": "none",
    "under_maintenance": "maintenance",
    "degraded_performance": "minor",
    "partial_outage": "major",
    "major_outage": "critical",
}
COMPONENT_STATUSES = tuple(_IMPACT_OF)
__all__ = ["COMPONENT_STATUSES", "IMPACTS", "INCIDENT_STATUSES", "Received", "StatuspageStandIn"]


class _Fail(Exception):
    def __init__(self, status: int, payload: Any) -> None:
        super().__init__(status)
        self.status, self.payload = status, payload


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _new_id(length: int = 12) -> str:
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(length))


class StatuspageStandIn(HTTPSStandIn):
    """The Manage API for one page and one API key; see the module docstring."""

    def __init__(
        self,
        page_id: str = "pg1",
        api_key: str = "k",
        components: dict[str, str] | None = None,
        *,
        min_interval: float = 1.0,
        rate_limit_status: int = 420,
    ) -> None:
        super().__init__(name="statuspage-standin")
        if rate_limit_status not in (420, 429):
            raise ValueError("rate_limit_status must be 420 or 429")
        self.page_id, self.api_key = page_id, api_key
        self.min_interval, self.rate_limit_status = min_interval, rate_limit_status
        created = _now()
        self._components: dict[str, dict[str, Any]] = {
            cid: {"name": name, "status": "operational", "position": i, "updated_at": created}
            for i, (cid, name) in enumerate((components or {}).items(), start=1)
        }
        self._incidents: dict[str, dict[str, Any]] = {}
        self._incident_components: dict[str, list[str]] = {}
        self._rate_limited = 0
        self._last_accepted: float | None = None
        self._drop_after_create = False
        self._hold_after_create = 0.0
        self._created_at = created

    @property
    def base_url(self) -> str:
        return f"{self.origin}/v1"

    @property
    def rate_limited(self) -> int:
        """How many requests the rate limit refused."""
        with self._lock:
            return self._rate_limited

    @property
    def incidents(self) -> dict[str, dict[str, Any]]:
        """A snapshot: incident id -> incident object, as the API would return it."""
        with self._lock:
            return {iid: self._render(iid) for iid in self._incidents}

    @property
    def components(self) -> dict[str, dict[str, str]]:
        """A snapshot: component id -> {"name", "status"}."""
        with self._lock:
            return {
                c: {"name": v["name"], "status": v["status"]} for c, v in self._components.items()
            }

    def hold_after_create(self, seconds: float) -> None:
        """Store the next create, then wait `seconds` before answering (a client can die)."""
        with self._lock:
            self._hold_after_create = seconds

    def fail_after_create(self) -> None:
        """Store the next successful create, then close the connection without answering."""
        with self._lock:
            self._drop_after_create = True

    # -- request handling (called by HTTPSStandIn with self._lock held) ------------------------

    def handle(self, request: Received, fault: int | None) -> Reply | None:
        if fault is not None:
            return Reply.json(fault, {"error": Reply.phrase(fault)})
        try:
            status, payload = self._route(request)
        except _Fail as fail:
            status, payload = fail.status, fail.payload
        if status == 201 and self._hold_after_create:
            hold, self._hold_after_create = self._hold_after_create, 0.0
            time.sleep(hold)
        if status == 201 and self._drop_after_create:
            self._drop_after_create = False
            return None
        return Reply.json(status, payload)

    def _route(self, request: Received) -> tuple[int, Any]:
        auth = request.headers.get("authorization", "")
        token = auth[len("OAuth ") :] if auth.startswith("OAuth ") else request.query.get("api_key")
        if token != self.api_key:
            raise _Fail(401, {"error": "Could not authenticate"})
        if self.min_interval > 0:
            now = time.monotonic()
            if self._last_accepted is not None and now - self._last_accepted < self.min_interval:
                self._rate_limited += 1
                raise _Fail(self.rate_limit_status, {"error": "Rate limit exceeded"})
            self._last_accepted = now
        parts = request.path.strip("/").split("/")
        if parts[:2] != ["v1", "pages"] or len(parts) < 4 or parts[2] != self.page_id:
            raise _Fail(404, {"error": "Not found"})
        method, rest = request.method, parts[3:]
        if rest == ["incidents"] and method == "POST":
            return 201, self._create(_wrapped(request, "incident"))
        if rest == ["incidents"] and method == "GET":
            return 200, [self._render(i) for i in reversed(self._incidents)]
        if rest == ["incidents", "unresolved"] and method == "GET":
            open_ids = [i for i in reversed(self._incidents) if self._is_open(i)]
            return 200, [self._render(i) for i in open_ids]
        if len(rest) == 2 and rest[0] == "incidents" and method in ("GET", "PATCH", "PUT"):
            if rest[1] not in self._incidents:
                raise _Fail(404, {"error": "Not found"})
            if method != "GET":
                fields = _wrapped(request, "incident")
                self._validate(fields, creating=False)
                self._apply(rest[1], fields, creating=False)
            return 200, self._render(rest[1])
        if rest == ["components"] and method == "GET":
            return 200, [self._component(c) for c in self._components]
        if len(rest) == 2 and rest[0] == "components" and method in ("GET", "PATCH", "PUT"):
            if rest[1] not in self._components:
                raise _Fail(404, {"error": "Not found"})
            if method != "GET":
                self._update_component(rest[1], _wrapped(request, "component"))
            return 200, self._component(rest[1])
        raise _Fail(404, {"error": "Not found"})

    def _is_open(self, incident_id: str) -> bool:
        return bool(self._incidents[incident_id]["status"] != "resolved")

    def _create(self, fields: dict[str, Any]) -> dict[str, Any]:
        self._validate(fields, creating=True)
        incident_id, now = _new_id(), _now()
        self._incidents[incident_id] = {
            "id": incident_id,
            "name": "",
            "status": "investigating",
            "impact": "none",
            "impact_override": None,
            "shortlink": f"https://stspg.io/{_new_id(7)}",
            "created_at": now,
            "updated_at": now,
            "monitoring_at": None,
            "resolved_at": None,
            "page_id": self.page_id,
            "deliver_notifications": True,
            "incident_updates": [],
            "metadata": {},
        }
        self._incident_components[incident_id] = []
        self._apply(incident_id, fields, creating=True)
        return self._render(incident_id)

    def _apply(self, incident_id: str, fields: dict[str, Any], *, creating: bool) -> None:
        """Apply validated fields, add an incident update if due, move component statuses."""
        incident, now = self._incidents[incident_id], _now()
        old_status = incident["status"]
        for key in ("name", "status", "impact_override", "deliver_notifications", "metadata"):
            if key in fields:
                incident[key] = copy.deepcopy(fields[key])
        attached = self._incident_components[incident_id]
        changes: dict[str, str] = fields.get("components", {})
        for cid in [*fields.get("component_ids", []), *changes]:
            if cid not in attached:
                attached.append(cid)
        affected = []
        for cid, new_status in changes.items():
            component = self._components[cid]
            old = component["status"]
            affected.append({"code": cid, "name": component["name"],
                             "old_status": old, "new_status": new_status})  # fmt: skip
            component["status"], component["updated_at"] = new_status, now
        status = incident["status"]
        if status == "monitoring" and incident["monitoring_at"] is None:
            incident["monitoring_at"] = now
        if status != "resolved":
            incident["resolved_at"] = None
        elif old_status != "resolved" or creating:
            incident["resolved_at"] = now
        derived = [_IMPACT_OF[self._components[c]["status"]] for c in attached]
        incident["impact"] = incident["impact_override"] or max(
            derived, key=IMPACTS.index, default="none"
        )
        incident["updated_at"] = now
        if creating or "body" in fields or status != old_status:
            update = {"id": _new_id(), "incident_id": incident_id, "status": status,
                      "body": fields.get("body", ""), "created_at": now, "updated_at": now,
                      "display_at": now, "affected_components": affected}  # fmt: skip
            incident["incident_updates"].insert(0, update)

    def _validate(self, fields: dict[str, Any], *, creating: bool) -> None:
        errors: list[str] = []
        name = fields.get("name")
        if (creating or "name" in fields) and (not isinstance(name, str) or not name.strip()):
            errors.append("Name can't be blank")
        elif isinstance(name, str) and len(name) > 255:
            errors.append("Name is too long (maximum is 255 characters)")
        if "status" in fields and fields["status"] not in INCIDENT_STATUSES:
            errors.append("Status is not included in the list")
        if "impact_override" in fields and fields["impact_override"] not in (*IMPACTS, None):
            errors.append("Impact override is not included in the list")
        body = fields.get("body", "")
        if not isinstance(body, str) or len(body) > 25000:
            errors.append("Body must be a string of at most 25000 characters")
        ids = fields.get("component_ids", [])
        if not isinstance(ids, list) or any(
            not isinstance(i, str) or i not in self._components for i in ids
        ):
            errors.append("Component ids must list components of this page")
        changes = fields.get("components", {})
        if not isinstance(changes, dict) or any(c not in self._components for c in changes):
            errors.append("Components must map components of this page to a status")
        elif any(s not in COMPONENT_STATUSES for s in changes.values()):
            errors.append("Component status is not included in the list")
        metadata = fields.get("metadata", {})
        if not isinstance(metadata, dict) or not all(
            isinstance(v, dict) for v in metadata.values()
        ):
            errors.append("Metadata must be an object of objects")
        if not isinstance(fields.get("deliver_notifications", True), bool):
            errors.append("Deliver notifications must be true or false")
        if errors:
            raise _Fail(422, {"error": errors})

    def _update_component(self, component_id: str, fields: dict[str, Any]) -> None:
        status = fields.get("status", self._components[component_id]["status"])
        if status not in COMPONENT_STATUSES:
            raise _Fail(422, {"error": ["Status is not included in the list"]})
        component = self._components[component_id]
        component["status"], component["updated_at"] = status, _now()

    def _render(self, incident_id: str) -> dict[str, Any]:
        incident = copy.deepcopy(self._incidents[incident_id])
        incident["components"] = [
            self._component(c) for c in self._incident_components[incident_id]
        ]
        return incident

    def _component(self, component_id: str) -> dict[str, Any]:
        component = self._components[component_id]
        return {"id": component_id, "page_id": self.page_id, "group_id": None,
                "name": component["name"], "status": component["status"],
                "position": component["position"], "created_at": self._created_at,
                "updated_at": component["updated_at"]}  # fmt: skip


def _wrapped(request: Received, key: str) -> dict[str, Any]:
    """The ``{"<key>": {...}}`` JSON body's inner object, or a 400/415 failure."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise _Fail(415, {"error": "Content-Type must be application/json"})
    try:
        document = json.loads(request.raw)
    except ValueError:
        raise _Fail(400, {"error": "Body is not valid JSON"}) from None
    if not isinstance(document, dict) or not isinstance(document.get(key), dict):
        raise _Fail(400, {"error": f"{key} is missing"})
    inner: dict[str, Any] = document[key]
    return inner
