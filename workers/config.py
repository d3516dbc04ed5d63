"""The one configuration tree, read from `ALERTPILOT_*` variables and `REDIS_URL`.

`Settings` is the root: what every process shares (Redis, key prefix, queue, dry
run, policy directory), the receiver's own settings, and `Settings.integrations`,
what the workers need to reach the vendors. Every variable is parsed here once,
and every default is written once, as the field's default; a bad value stops the
process with one line naming the variable (never echoing a secret's value).

The receiver and `alertpilot worker` read it at start-up, so a bad value stops
them there; each job reads it again when it runs, so a worker picks up rotated
secrets mounted as files without a restart.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from workers.incident.durations import DurationError, parse_duration
from workers.jobs.contract import base_name
from workers.redis_connection import RedisUrlError, parse

DEFAULT_ROUTING_KEY = "ALERTPILOT_PAGERDUTY_ROUTING_KEY"
"""Where a page action without `routing_key_env` finds its PagerDuty routing key."""


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable, never a secret."""


def secret(env: Mapping[str, str], name: str) -> str | None:
    """The value of NAME, or the contents of the file NAME_FILE (Kubernetes secrets)."""
    if env.get(name):
        return env[name]
    path = env.get(f"{name}_FILE")
    if not path:
        return None
    try:
        value = Path(path).read_text().strip()
    except OSError as exc:
        raise SettingsError(f"{name}_FILE: cannot read {path!r}: {exc.strerror}") from None
    if not value:
        raise SettingsError(f"{name}_FILE: {path!r} is empty")
    return value


def boolean(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name}: must be true or false, got {raw!r}")


def url(
    env: Mapping[str, str], name: str, default: str | None, *, https: bool = False
) -> str | None:
    value = env.get(name) or default
    if value is None:
        return None
    parts = urlsplit(value)
    schemes = ("https",) if https else ("http", "https")
    if parts.scheme not in schemes or not parts.netloc:
        raise SettingsError(f"{name}: expected an {' or '.join(schemes)} URL")
    return value.rstrip("/")


@dataclass(frozen=True, kw_only=True)
class Integrations:
    """What the workers need to reach the vendors (a branch of `Settings`)."""

    public_url: str | None = None
    """`ALERTPILOT_PUBLIC_URL`: where people reach alertpilot's API, for incident links."""
    pagerduty_events_url: str = "https://events.pagerduty.com"
    """`ALERTPILOT_PAGERDUTY_EVENTS_URL` (https only; the client refuses anything else)."""
    statuspage_api_url: str = "https://api.statuspage.io/v1"
    """`ALERTPILOT_STATUSPAGE_API_URL`."""
    statuspage_page_id: str | None = None
    """`ALERTPILOT_STATUSPAGE_PAGE_ID`."""
    statuspage_api_key: str | None = field(default=None, repr=False)
    """`ALERTPILOT_STATUSPAGE_API_KEY` (or `_FILE`)."""
    prometheus_url: str | None = None
    """`ALERTPILOT_PROMETHEUS_URL`: where runbooks' `promql` steps query (unset: they say so)."""
    prometheus_token: str | None = field(default=None, repr=False)
    """`ALERTPILOT_PROMETHEUS_TOKEN` (or `_FILE`): a bearer token for it, if it needs one."""
    slack_bot_token: str | None = field(default=None, repr=False)
    """`ALERTPILOT_SLACK_BOT_TOKEN` (or `_FILE`): a Slack app's bot token (xoxb-...), for the
    war rooms (channels:manage, chat:write, channels:read scopes)."""
    slack_api_url: str = "https://slack.com/api"
    """`ALERTPILOT_SLACK_API_URL`."""
    chat_webhook_url: str | None = field(default=None, repr=False)
    """`ALERTPILOT_CHAT_WEBHOOK_URL` (or `_FILE`): a Slack-compatible incoming webhook."""
    notify_webhook_url: str | None = field(default=None, repr=False)
    """`ALERTPILOT_NOTIFY_WEBHOOK_URL` (or `_FILE`): a generic JSON webhook, sent the incident."""
    ca_bundle: str | None = None
    """`ALERTPILOT_CA_BUNDLE`: a PEM file trusted for the vendors' TLS, besides the system's."""
    templates_dir: Path = Path("policies/templates")
    """`ALERTPILOT_POLICIES_DIR`/templates: the team's chat message templates (set by the
    root from its one parse of the policy directory)."""
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    """Where `routing_key_env` references and `KUBECONFIG` are looked up."""

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, templates_dir: Path) -> Integrations:
        ca_bundle = env.get("ALERTPILOT_CA_BUNDLE") or None
        if ca_bundle is not None and not Path(ca_bundle).is_file():
            raise SettingsError(f"ALERTPILOT_CA_BUNDLE: no file {ca_bundle!r}")
        events = url(env, "ALERTPILOT_PAGERDUTY_EVENTS_URL", cls.pagerduty_events_url, https=True)
        statuspage = url(env, "ALERTPILOT_STATUSPAGE_API_URL", cls.statuspage_api_url)
        return cls(
            public_url=url(env, "ALERTPILOT_PUBLIC_URL", None),
            pagerduty_events_url=events or cls.pagerduty_events_url,
            statuspage_api_url=statuspage or cls.statuspage_api_url,
            statuspage_page_id=env.get("ALERTPILOT_STATUSPAGE_PAGE_ID") or None,
            statuspage_api_key=secret(env, "ALERTPILOT_STATUSPAGE_API_KEY"),
            prometheus_url=url(env, "ALERTPILOT_PROMETHEUS_URL", None),
            prometheus_token=secret(env, "ALERTPILOT_PROMETHEUS_TOKEN"),
            slack_bot_token=secret(env, "ALERTPILOT_SLACK_BOT_TOKEN"),
            slack_api_url=url(env, "ALERTPILOT_SLACK_API_URL", cls.slack_api_url)
            or cls.slack_api_url,
            chat_webhook_url=secret(env, "ALERTPILOT_CHAT_WEBHOOK_URL"),
            notify_webhook_url=secret(env, "ALERTPILOT_NOTIFY_WEBHOOK_URL"),
            ca_bundle=ca_bundle,
            templates_dir=templates_dir,
            env=dict(env),
        )

    def routing_key(self, reference: str = DEFAULT_ROUTING_KEY) -> str | None:
        """The PagerDuty routing key an env reference names (`NAME` or `NAME_FILE`)."""
        return secret(self.env, reference)


@dataclass(frozen=True, kw_only=True)
class Settings:
    """The root of the configuration tree."""

    redis_url: str | None = field(default=None, repr=False)
    """`REDIS_URL`: one server's URL, or a Sentinel address
    (`redis+sentinel://[[user]:password@]host[:port],.../service[/db]`, the forms in
    workers/redis_connection.py); None only for `alertpilot dev`, which then embeds a Redis."""
    redis_sentinel_password: str | None = field(default=None, repr=False)
    """`ALERTPILOT_REDIS_SENTINEL_PASSWORD` (or `_FILE`): the sentinels' own password, with a
    Sentinel REDIS_URL (whose password is the Redis servers')."""
    redis_wait_replicas: int = 0
    """`ALERTPILOT_REDIS_WAIT_REPLICAS`: the receiver answers 200 only once this many
    replicas confirmed the notification's transaction (Redis WAIT), else 503 and
    Alertmanager retries; so a failover to one of them loses nothing answered 200.
    0: no waiting. More than the replicas that are up: every notification gets 503."""
    redis_wait_timeout_seconds: float = 0.5
    """`ALERTPILOT_REDIS_WAIT_TIMEOUT`: how long the receiver waits for those replicas
    (at most 4s, under the receiver's 5 s Redis socket timeout)."""
    policies_dir: Path = Path("policies")
    """`ALERTPILOT_POLICIES_DIR`: directory of policy YAML files (receiver and workers)."""
    dry_run: bool = True
    """`ALERTPILOT_DRY_RUN`: actions describe what they would do instead of doing it."""
    key_prefix: str = "alertpilot:"
    """`ALERTPILOT_KEY_PREFIX`: prefix of every Redis key alertpilot writes."""
    queue_name: str = "alertpilot"
    """`ALERTPILOT_QUEUE`: the RQ queue jobs go to."""
    log_level: str = "INFO"
    """`ALERTPILOT_LOG_LEVEL`."""
    policy_reload_seconds: float = 10.0
    """`ALERTPILOT_POLICY_RELOAD_INTERVAL`: how often the policy directory is checked."""
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
    slack_signing_secret: str | None = field(default=None, repr=False)
    """`ALERTPILOT_SLACK_SIGNING_SECRET` (or `_FILE`): the Slack app's signing secret, which
    signs its slash commands (`POST /api/v1/slack/commands`; unset, that answers 404)."""
    session_secret: str | None = field(default=None, repr=False)
    """`ALERTPILOT_SESSION_SECRET` (or `_FILE`): signs the web page's browser sessions and
    CSRF tokens (webhook/web_session.py). Every process serving the page must share it
    (`serve` runs ALERTPILOT_WEB_CONCURRENCY of them); unset, signing in with a token on
    the page is off, and each process signs its forms with a random key of its own, so
    a form may be refused by another process and after a restart (fine for `dev`)."""
    metrics_token: str | None = field(default=None, repr=False)
    """`ALERTPILOT_METRICS_TOKEN` (or `_FILE`): bearer token `/metrics` then requires; unset,
    `/metrics` is open (its own token, so Prometheus never holds the webhook's)."""
    users_file: Path | None = None
    """`ALERTPILOT_USERS_FILE`: people's own tokens and roles (YAML, see `webhook.users`),
    read again when it changes. Not checked here: a Secret volume may mount it later."""
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    """`ALERTPILOT_TRUSTED_PROXIES`: comma-separated addresses or CIDRs of the
    authenticating proxy in front (oauth2-proxy): only requests from them are believed
    about `X-Forwarded-Email`/`X-Forwarded-User`. Empty: no proxy is trusted."""
    max_body_bytes: int = 1024 * 1024
    """`ALERTPILOT_MAX_BODY_BYTES`: larger notifications get 413."""
    dedup_ttl_seconds: int = 7 * 24 * 3600
    """`ALERTPILOT_DEDUP_TTL`: how long a group's last applied notification is remembered."""
    resend_cache_seconds: float = 5.0
    """`ALERTPILOT_RESEND_CACHE`: how long a receiver process remembers a group's digest it
    saw durable in Redis, answering its resends without a round trip (0: never). A Redis
    that lost data (a failover) is noticed by a resend only after this."""
    stale_window_seconds: int = 15 * 60
    """`ALERTPILOT_STALE_WINDOW`: how long after a resolve a firing copy of the same alert
    instance is taken for a lagging HA twin or retry, and dropped."""
    retention_seconds: int = 90 * 24 * 3600
    """`ALERTPILOT_RETENTION`: how long a resolved incident and its timeline are kept."""
    replay_size: int = 10_000
    """`ALERTPILOT_REPLAY_SIZE`: accepted notifications kept for `policy diff --replay`."""
    replay_max_bytes: int = 64 * 1024 * 1024
    """`ALERTPILOT_REPLAY_MAX_BYTES`: the recorded notifications' total size in Redis; the
    oldest go first when a new one would pass it (or `replay_size`)."""
    bind: str = "0.0.0.0:9095"
    """`ALERTPILOT_BIND`: address gunicorn listens on (`serve`)."""
    web_concurrency: int = 2
    """`ALERTPILOT_WEB_CONCURRENCY`: gunicorn worker processes (`serve`)."""
    web_threads: int = 16
    """`ALERTPILOT_WEB_THREADS`: threads per worker process, each serving one request at a
    time (`serve`). A client gets one only once it has sent something, so only this many
    slow clients at once (per worker) delay the others, by the read timeout at most."""
    web_read_timeout_seconds: float = 10.0
    """`ALERTPILOT_WEB_READ_TIMEOUT`: how long a client has, from connecting (or from the
    first byte of its next request on a kept-alive connection), to send a whole request,
    headers and body (`serve`); then it is disconnected. Bounds how long an idle or slow
    client holds a connection, or a thread."""
    integrations: Integrations = field(default_factory=Integrations)
    """The vendors' branch: URLs, credentials, TLS trust (the workers')."""

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
        policies = Path(env.get("ALERTPILOT_POLICIES_DIR") or cls.policies_dir)
        users_file = env.get("ALERTPILOT_USERS_FILE")
        redis_url = _redis_url(env.get("REDIS_URL"))
        sentinel_password = secret(env, "ALERTPILOT_REDIS_SENTINEL_PASSWORD")
        if sentinel_password is not None and (redis_url is None or parse(redis_url) is None):
            raise SettingsError(
                "ALERTPILOT_REDIS_SENTINEL_PASSWORD: only with a redis+sentinel:// REDIS_URL"
            )
        return cls(
            redis_url=redis_url,
            redis_sentinel_password=sentinel_password,
            redis_wait_replicas=_int(
                env,
                "ALERTPILOT_REDIS_WAIT_REPLICAS",
                cls.redis_wait_replicas,
                minimum=0,
                maximum=MAX_WAIT_REPLICAS,
            ),
            redis_wait_timeout_seconds=_wait_timeout(env),
            policies_dir=policies,
            dry_run=boolean(env, "ALERTPILOT_DRY_RUN", cls.dry_run),
            key_prefix=_prefix(env.get("ALERTPILOT_KEY_PREFIX") or cls.key_prefix),
            queue_name=_name(env, "ALERTPILOT_QUEUE", cls.queue_name),
            log_level=_log_level(env.get("ALERTPILOT_LOG_LEVEL") or cls.log_level),
            policy_reload_seconds=_seconds(
                env, "ALERTPILOT_POLICY_RELOAD_INTERVAL", cls.policy_reload_seconds, minimum=0.1
            ),
            webhook_token=secret(env, "ALERTPILOT_WEBHOOK_TOKEN"),
            webhook_previous_token=secret(env, "ALERTPILOT_WEBHOOK_TOKEN_PREVIOUS"),
            webhook_username=username,
            webhook_password=password,
            pagerduty_webhook_secret=secret(env, "ALERTPILOT_PAGERDUTY_WEBHOOK_SECRET"),
            slack_signing_secret=secret(env, "ALERTPILOT_SLACK_SIGNING_SECRET"),
            session_secret=secret(env, "ALERTPILOT_SESSION_SECRET"),
            metrics_token=secret(env, "ALERTPILOT_METRICS_TOKEN"),
            users_file=Path(users_file) if users_file else None,
            trusted_proxies=_networks(env, "ALERTPILOT_TRUSTED_PROXIES"),
            max_body_bytes=_int(env, "ALERTPILOT_MAX_BODY_BYTES", cls.max_body_bytes, minimum=1024),
            dedup_ttl_seconds=_duration(env, "ALERTPILOT_DEDUP_TTL", cls.dedup_ttl_seconds),
            resend_cache_seconds=_seconds(
                env, "ALERTPILOT_RESEND_CACHE", cls.resend_cache_seconds, minimum=0
            ),
            stale_window_seconds=_duration(
                env, "ALERTPILOT_STALE_WINDOW", cls.stale_window_seconds
            ),
            retention_seconds=_duration(env, "ALERTPILOT_RETENTION", cls.retention_seconds),
            replay_size=_int(env, "ALERTPILOT_REPLAY_SIZE", cls.replay_size, minimum=0),
            replay_max_bytes=_int(
                env, "ALERTPILOT_REPLAY_MAX_BYTES", cls.replay_max_bytes, minimum=0
            ),
            bind=env.get("ALERTPILOT_BIND") or cls.bind,
            web_concurrency=_int(env, "ALERTPILOT_WEB_CONCURRENCY", cls.web_concurrency, minimum=1),
            web_threads=_int(env, "ALERTPILOT_WEB_THREADS", cls.web_threads, minimum=1),
            web_read_timeout_seconds=_seconds(
                env, "ALERTPILOT_WEB_READ_TIMEOUT", cls.web_read_timeout_seconds, minimum=1
            ),
            integrations=Integrations.from_env(env, templates_dir=policies / "templates"),
        )


def _networks(
    env: Mapping[str, str], name: str
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    found = []
    for part in (env.get(name) or "").split(","):
        if part.strip():
            try:
                found.append(ipaddress.ip_network(part.strip(), strict=False))
            except ValueError:
                raise SettingsError(f"{name}: not an address or CIDR: {part.strip()!r}") from None
    return tuple(found)


MAX_WAIT_REPLICAS = 16
"""More replicas than any installation runs: a bigger count only makes every WAIT fail."""


def _redis_url(value: str | None) -> str | None:
    if not value:
        return None
    try:
        parse(value)
    except RedisUrlError as exc:
        raise SettingsError(str(exc)) from None
    return value


def _wait_timeout(env: Mapping[str, str]) -> float:
    name = "ALERTPILOT_REDIS_WAIT_TIMEOUT"
    seconds = _seconds(env, name, Settings.redis_wait_timeout_seconds, minimum=0.001)
    if seconds > 4:
        raise SettingsError(f"{name}: at most 4s (the receiver's Redis timeout is 5 s)")
    return seconds


def _int(
    env: Mapping[str, str], name: str, default: int, *, minimum: int, maximum: int | None = None
) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}: must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name}: must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise SettingsError(f"{name}: must be at most {maximum}, got {value}")
    return value


def _duration(env: Mapping[str, str], name: str, default: int) -> int:
    return int(_seconds(env, name, default, minimum=1))


def _seconds(env: Mapping[str, str], name: str, default: float, *, minimum: float) -> float:
    raw = env.get(name)
    if not raw:
        return default
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
    if base_name(value) != value:  # its lanes would be another installation's
        raise SettingsError(f"{name}: must not end in -urgent or -comms, got {value!r}")
    return value


def _log_level(value: str) -> str:
    level = value.upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise SettingsError(f"ALERTPILOT_LOG_LEVEL: DEBUG, INFO, WARNING or ERROR, got {value!r}")
    return level
