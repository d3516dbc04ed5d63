"""What the workers need to reach the vendors, read from the environment.

Jobs read it when they run (`Integrations.from_env(os.environ)`), so a worker
picks up rotated secrets mounted as files without a restart. The env helpers
here are shared with the webhook's settings: one way to spell a secret
(`NAME` or `NAME_FILE`), a boolean, a URL.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

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


def policies_dir(env: Mapping[str, str]) -> Path:
    """`ALERTPILOT_POLICIES_DIR` (unset or empty: `policies`), for the receiver and the
    workers alike: one parse, one default."""
    return Path(env.get("ALERTPILOT_POLICIES_DIR") or "policies")


def dry_run(env: Mapping[str, str]) -> bool:
    """`ALERTPILOT_DRY_RUN` (default true), for the receiver and the workers alike."""
    return boolean(env, "ALERTPILOT_DRY_RUN", True)


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
    dry_run: bool = True
    """`ALERTPILOT_DRY_RUN`: describe every vendor call on the timeline instead of making it."""
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
    chat_webhook_url: str | None = field(default=None, repr=False)
    """`ALERTPILOT_CHAT_WEBHOOK_URL` (or `_FILE`): a Slack-compatible incoming webhook."""
    notify_webhook_url: str | None = field(default=None, repr=False)
    """`ALERTPILOT_NOTIFY_WEBHOOK_URL` (or `_FILE`): a generic JSON webhook, sent the incident."""
    ca_bundle: str | None = None
    """`ALERTPILOT_CA_BUNDLE`: a PEM file trusted for the vendors' TLS, besides the system's."""
    policies_dir: Path = Path("policies")
    """`ALERTPILOT_POLICIES_DIR`: the policy set a mitigation is checked against when it runs."""
    templates_dir: Path | None = None
    """`ALERTPILOT_POLICIES_DIR`/templates: the team's chat message templates."""
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    """Where `routing_key_env` references are looked up."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Integrations:
        ca_bundle = env.get("ALERTPILOT_CA_BUNDLE") or None
        if ca_bundle is not None and not Path(ca_bundle).is_file():
            raise SettingsError(f"ALERTPILOT_CA_BUNDLE: no file {ca_bundle!r}")
        return cls(
            dry_run=dry_run(env),
            public_url=url(env, "ALERTPILOT_PUBLIC_URL", None),
            pagerduty_events_url=url(
                env, "ALERTPILOT_PAGERDUTY_EVENTS_URL", cls.pagerduty_events_url, https=True
            )
            or cls.pagerduty_events_url,
            statuspage_api_url=url(env, "ALERTPILOT_STATUSPAGE_API_URL", cls.statuspage_api_url)
            or cls.statuspage_api_url,
            statuspage_page_id=env.get("ALERTPILOT_STATUSPAGE_PAGE_ID") or None,
            statuspage_api_key=secret(env, "ALERTPILOT_STATUSPAGE_API_KEY"),
            chat_webhook_url=secret(env, "ALERTPILOT_CHAT_WEBHOOK_URL"),
            notify_webhook_url=secret(env, "ALERTPILOT_NOTIFY_WEBHOOK_URL"),
            ca_bundle=ca_bundle,
            policies_dir=policies_dir(env),
            templates_dir=policies_dir(env) / "templates",
            env=dict(env),
        )

    def routing_key(self, reference: str = DEFAULT_ROUTING_KEY) -> str | None:
        """The PagerDuty routing key an env reference names (`NAME` or `NAME_FILE`)."""
        return secret(self.env, reference)
