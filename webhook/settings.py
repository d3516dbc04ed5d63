"""One settings object, read from `ALERTPILOT_*` variables and `REDIS_URL` at start-up.

A bad value stops the process with one line naming the variable (and never
echoing a secret's value).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from workers.config import SettingsError, dry_run, policies_dir, secret
from workers.incident.durations import DurationError, parse_duration

__all__ = ["Settings", "SettingsError"]


@dataclass(frozen=True, kw_only=True)
class Settings:
    redis_url: str | None = None
    """`REDIS_URL`; None only for `alertpilot dev`, which then embeds a Redis."""
    policies_dir: Path = Path("policies")
    """`ALERTPILOT_POLICIES_DIR`: directory of policy YAML files."""
    webhook_token: str | None = field(default=None, repr=False)
    """`ALERTPILOT_WEBHOOK_TOKEN` (or `_FILE`): bearer token Alertmanager sends."""
    webhook_previous_token: str | None = field(default=None, repr=False)
    """`ALERTPILOT_WEBHOOK_TOKEN_PREVIOUS` (or `_FILE`): accepted too, during a rotation."""
    webhook_username: str | None = None
    """`ALERTPILOT_WEBHOOK_USERNAME`: basic-auth user, with the password below."""
    webhook_password: str | None = field(default=None, repr=False)
    """`ALERTPILOT_WEBHOOK_PASSWORD` (or `_FILE`)."""
    pagerduty_webhook_secret: str | None = field(default=None, repr=False)
    """`ALERTPILOT_PAGERDUTY_WEBHOOK_SECRET` (or `_FILE`): signs PagerDuty's webhooks."""
    metrics_token: str | None = field(default=None, repr=False)
    """`ALERTPILOT_METRICS_TOKEN` (or `_FILE`): bearer token `/metrics` then requires; unset,
    `/metrics` is open (its own token, so Prometheus never holds the webhook's)."""
    max_body_bytes: int = 1024 * 1024
    """`ALERTPILOT_MAX_BODY_BYTES`: larger notifications get 413."""
    key_prefix: str = "alertpilot:"
    """`ALERTPILOT_KEY_PREFIX`: prefix of every Redis key alertpilot writes."""
    queue_name: str = "alertpilot"
    """`ALERTPILOT_QUEUE`: the RQ queue jobs go to."""
    dry_run: bool = True
    """`ALERTPILOT_DRY_RUN`: actions describe what they would do instead of doing it."""
    dedup_ttl_seconds: int = 7 * 24 * 3600
    """`ALERTPILOT_DEDUP_TTL`: how long a group's last applied notification is remembered."""
    stale_window_seconds: int = 15 * 60
    """`ALERTPILOT_STALE_WINDOW`: how long after a resolve a firing copy of the same alert
    instance is taken for a lagging HA twin or retry, and dropped."""
    retention_seconds: int = 90 * 24 * 3600
    """`ALERTPILOT_RETENTION`: how long a resolved incident and its timeline are kept."""
    policy_reload_seconds: float = 10.0
    """`ALERTPILOT_POLICY_RELOAD_INTERVAL`: how often the policy directory is checked."""
    replay_size: int = 10_000
    """`ALERTPILOT_REPLAY_SIZE`: accepted notifications kept for `policy diff --replay`."""
    log_level: str = "INFO"
    """`ALERTPILOT_LOG_LEVEL`."""
    bind: str = "0.0.0.0:9095"
    """`ALERTPILOT_BIND`: address gunicorn listens on (`serve`)."""
    web_concurrency: int = 2
    """`ALERTPILOT_WEB_CONCURRENCY`: gunicorn worker processes (`serve`)."""

    @property
    def auth_configured(self) -> bool:
        return bool(self.webhook_token) or bool(self.webhook_username and self.webhook_password)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        username = env.get("ALERTPILOT_WEBHOOK_USERNAME") or None
        password = secret(env, "ALERTPILOT_WEBHOOK_PASSWORD")
        if bool(username) != bool(password):
            raise SettingsError(
                "ALERTPILOT_WEBHOOK_USERNAME and ALERTPILOT_WEBHOOK_PASSWORD go together"
            )
        return cls(
            redis_url=_redis_url(env.get("REDIS_URL")),
            policies_dir=policies_dir(env),
            webhook_token=secret(env, "ALERTPILOT_WEBHOOK_TOKEN"),
            webhook_previous_token=secret(env, "ALERTPILOT_WEBHOOK_TOKEN_PREVIOUS"),
            webhook_username=username,
            webhook_password=password,
            pagerduty_webhook_secret=secret(env, "ALERTPILOT_PAGERDUTY_WEBHOOK_SECRET"),
            metrics_token=secret(env, "ALERTPILOT_METRICS_TOKEN"),
            max_body_bytes=_int(env, "ALERTPILOT_MAX_BODY_BYTES", 1024 * 1024, minimum=1024),
            key_prefix=_prefix(env.get("ALERTPILOT_KEY_PREFIX", "alertpilot:")),
            queue_name=_name(env, "ALERTPILOT_QUEUE", "alertpilot"),
            dry_run=dry_run(env),
            dedup_ttl_seconds=_duration(env, "ALERTPILOT_DEDUP_TTL", "7d"),
            stale_window_seconds=_duration(env, "ALERTPILOT_STALE_WINDOW", "15m"),
            retention_seconds=_duration(env, "ALERTPILOT_RETENTION", "90d"),
            policy_reload_seconds=_seconds(
                env, "ALERTPILOT_POLICY_RELOAD_INTERVAL", "10s", minimum=0.1
            ),
            replay_size=_int(env, "ALERTPILOT_REPLAY_SIZE", 10_000, minimum=0),
            log_level=_log_level(env.get("ALERTPILOT_LOG_LEVEL", "INFO")),
            bind=env.get("ALERTPILOT_BIND", "0.0.0.0:9095"),
            web_concurrency=_int(env, "ALERTPILOT_WEB_CONCURRENCY", 2, minimum=1),
        )


def _redis_url(value: str | None) -> str | None:
    if not value:
        return None
    if not re.match(r"^(redis|rediss|unix)://", value):
        raise SettingsError("REDIS_URL: must start with redis://, rediss:// or unix://")
    return value


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}: must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name}: must be at least {minimum}, got {value}")
    return value


def _duration(env: Mapping[str, str], name: str, default: str) -> int:
    return int(_seconds(env, name, default, minimum=1))


def _seconds(env: Mapping[str, str], name: str, default: str, *, minimum: float) -> float:
    raw = env.get(name) or default
    try:
        seconds = parse_duration(raw).total_seconds()
    except DurationError as exc:
        raise SettingsError(f"{name}: {exc}") from None
    if seconds < minimum:
        raise SettingsError(f"{name}: must be at least {minimum:g}s, got {raw!r}")
    return seconds


def _prefix(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", value):
        raise SettingsError(
            f"ALERTPILOT_KEY_PREFIX: letters, digits and _.:- only (at most 64), got {value!r}"
        )
    return value


def _name(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name) or default
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", value):
        raise SettingsError(f"{name}: letters, digits, _ and - only, got {value!r}")
    return value


def _log_level(value: str) -> str:
    level = value.upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise SettingsError(f"ALERTPILOT_LOG_LEVEL: DEBUG, INFO, WARNING or ERROR, got {value!r}")
    return level
