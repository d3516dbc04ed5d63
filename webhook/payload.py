"""Alertmanager webhook payload (version 4), parsed at the edge into frozen dataclasses.

`parse` is pure: it takes the decoded JSON and returns a `Notification` or
raises `PayloadError` naming the first bad field. Give it `surrogates=False`
when the body has no escape that decodes to a lone surrogate
(`may_hold_surrogates`): every string is then valid Unicode already, and the
check per string (a third of a resend's parse) is skipped. Unknown keys are ignored,
because Alertmanager adds fields over versions (`notification_reason` in
0.32, `routeLabels` in 0.34).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from workers.incident.alerts import Alert, Notification, Status

_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_FINGERPRINT = re.compile(r"[A-Za-z0-9]{1,64}")
RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)


class PayloadError(ValueError):
    """The payload breaks the schema; `field` is a path like `alerts[0].labels`."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def may_hold_surrogates(body: bytes) -> bool:
    """Whether `json.loads(body)` can hold a lone surrogate: only a `\\uD800`-`\\uDFFF`
    escape makes one (raw bytes that are not UTF-8 fail to decode instead)."""
    return _SURROGATE_ESCAPE.search(body) is not None


def parse(doc: Any, *, surrogates: bool = True) -> Notification:
    if not isinstance(doc, dict):
        raise PayloadError("$", "expected a JSON object")
    if doc.get("version") != "4":
        raise PayloadError("version", f'expected "4", got {doc.get("version")!r}')
    alerts = doc.get("alerts")
    if not isinstance(alerts, list):
        raise PayloadError("alerts", "required, a list of alerts")
    if not alerts:
        raise PayloadError("alerts", "must not be empty")
    truncated = doc.get("truncatedAlerts", 0)
    if not isinstance(truncated, int) or isinstance(truncated, bool) or truncated < 0:
        raise PayloadError("truncatedAlerts", "expected a non-negative integer")
    return Notification(
        version="4",
        group_key=_str(doc, "groupKey", "groupKey", surrogates, required=True),
        status=_status(doc, "status"),
        receiver=_str(doc, "receiver", "receiver", surrogates, required=True),
        group_labels=_labels(doc, "groupLabels", "groupLabels", surrogates),
        common_labels=_labels(doc, "commonLabels", "commonLabels", surrogates),
        common_annotations=_labels(doc, "commonAnnotations", "commonAnnotations", surrogates),
        external_url=_str(doc, "externalURL", "externalURL", surrogates),
        truncated_alerts=truncated,
        alerts=tuple(_alert(a, f"alerts[{i}]", surrogates) for i, a in enumerate(alerts)),
    )


def _alert(doc: Any, path: str, surrogates: bool) -> Alert:
    if not isinstance(doc, dict):
        raise PayloadError(path, "expected an object")
    fingerprint = _str(doc, "fingerprint", f"{path}.fingerprint", surrogates, required=True)
    if not _FINGERPRINT.fullmatch(fingerprint):
        raise PayloadError(f"{path}.fingerprint", "expected 1 to 64 letters or digits")
    ends_at = _time(doc, "endsAt", f"{path}.endsAt", required=False)
    return Alert(
        status=_status(doc, "status", prefix=f"{path}."),
        labels=_labels(doc, "labels", f"{path}.labels", surrogates, required=True),
        annotations=_labels(doc, "annotations", f"{path}.annotations", surrogates),
        starts_at=_time(doc, "startsAt", f"{path}.startsAt", required=True) or "",
        ends_at=None if ends_at is None or ends_at.startswith("0001-01-01") else ends_at,
        generator_url=_str(doc, "generatorURL", f"{path}.generatorURL", surrogates),
        fingerprint=fingerprint,
    )


def _str(
    doc: dict[str, Any], key: str, path: str, surrogates: bool, *, required: bool = False
) -> str:
    value = doc.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise PayloadError(
            path, "required, a non-empty string" if required else "expected a string"
        )
    return _utf8(value, path) if surrogates else value


def _utf8(value: str, path: str) -> str:
    """JSON can carry lone surrogates (`"\\udc80"`) that no UTF-8 store accepts."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise PayloadError(path, "not valid Unicode (lone surrogate)") from None
    return value


def _status(doc: dict[str, Any], key: str, *, prefix: str = "") -> Status:
    value = doc.get(key)
    if value not in ("firing", "resolved"):
        raise PayloadError(f"{prefix}{key}", f'expected "firing" or "resolved", got {value!r}')
    return "firing" if value == "firing" else "resolved"


def _labels(
    doc: dict[str, Any], key: str, path: str, surrogates: bool, *, required: bool = False
) -> dict[str, str]:
    value = doc.get(key)
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise PayloadError(path, "expected an object of string values")
    for name, item in value.items():
        if not isinstance(item, str):
            raise PayloadError(f"{path}.{name}", f"expected a string, got {type(item).__name__}")
        if surrogates:
            _utf8(name, path)
            _utf8(item, f"{path}.{name}")
    return dict(value)


def _time(doc: dict[str, Any], key: str, path: str, *, required: bool) -> str | None:
    """RFC 3339 with a zone, as Alertmanager writes it (Go's zero time, year 1, included).

    A time without a zone has no instant: comparing it with the zoned times already
    stored would fail for every later notification of the group, so it never enters.
    """
    value = doc.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not RFC3339.fullmatch(value):
        shown = repr(value)[:64]
        raise PayloadError(path, f"expected an RFC 3339 timestamp with a zone, got {shown}")
    try:
        datetime.fromisoformat(value.upper().replace("Z", "+00:00")).astimezone(UTC)
    except (ValueError, OverflowError):
        raise PayloadError(
            path, f"expected an RFC 3339 timestamp in range, got {value!r}"
        ) from None
    return value
