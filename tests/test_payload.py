"""The webhook payload parser: real captured notifications in, typed data or a named field out."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.conftest import fixture
from webhook.payload import PayloadError, parse


def test_parses_captured_alertmanager_notification() -> None:
    notification = parse(fixture("firing-two-alerts.json"))
    assert notification.group_key == '{}:{alertname="HighLatency", service="api"}'
    assert notification.status == "firing"
    assert [a.fingerprint for a in notification.alerts] == ["d9ccd8014b804fee", "a5614730762ac895"]
    assert notification.alerts[0].labels["deployment"] == "api"
    assert notification.alerts[0].annotations["runbook_url"].startswith("https://")


def test_firing_alert_zero_end_time_becomes_none() -> None:
    notification = parse(fixture("one-resolved-one-firing.json"))
    resolved, firing = notification.alerts
    assert resolved.status == "resolved" and resolved.ends_at == "2026-11-26T23:26:34Z"
    assert firing.status == "firing" and firing.ends_at is None


def test_unknown_and_newer_fields_are_ignored() -> None:
    doc = fixture("firing-two-alerts.json")
    doc["notification_reason"] = "first notification"
    doc["routeLabels"] = {"team": "api"}
    doc["alerts"][0]["somethingNew"] = [1, 2]
    assert parse(doc).receiver == "capture"


def _broken(change: Any) -> dict[str, Any]:
    doc = copy.deepcopy(fixture("firing-two-alerts.json"))
    change(doc)
    return doc


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda d: d.update(version="3"), "version"),
        (lambda d: d.pop("alerts"), "alerts"),
        (lambda d: d.update(alerts=[]), "alerts"),
        (lambda d: d.update(alerts="nope"), "alerts"),
        (lambda d: d.update(groupKey=7), "groupKey"),
        (lambda d: d.update(status="pending"), "status"),
        (lambda d: d.update(truncatedAlerts=-1), "truncatedAlerts"),
        (lambda d: d["alerts"][1].update(status="maybe"), "alerts[1].status"),
        (lambda d: d["alerts"][0]["labels"].update(severity=3), "alerts[0].labels.severity"),
        (lambda d: d["alerts"][0].update(startsAt="yesterday"), "alerts[0].startsAt"),
        (lambda d: d["alerts"][0].update(fingerprint="../../x"), "alerts[0].fingerprint"),
        (lambda d: d["alerts"][0].pop("labels"), "alerts[0].labels"),
    ],
)
def test_schema_violation_names_the_field(change: Any, field: str) -> None:
    with pytest.raises(PayloadError) as raised:
        parse(_broken(change))
    assert raised.value.field == field


def test_non_object_body_is_rejected() -> None:
    with pytest.raises(PayloadError) as raised:
        parse([1, 2])
    assert raised.value.field == "$"
