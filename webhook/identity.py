"""Who is asking, and what they may do.

Two kinds of caller, kept apart:

- Alertmanager: the webhook credential (ALERTPILOT_WEBHOOK_TOKEN or basic auth,
  webhook/auth.py). It may post notifications and nothing else.
- People: a token of the users file (ALERTPILOT_USERS_FILE, webhook/users.py), or,
  for the browser, an authenticating proxy's `X-Forwarded-Email`/`X-Forwarded-User`,
  believed only from the addresses in ALERTPILOT_TRUSTED_PROXIES and only for
  someone in the users file (who gives the role). A person has a role: viewer
  (reads), responder (incident commands), admin (everything).

With no credential of either kind configured (`serve --insecure-no-auth`, `dev`),
every caller is the person "anonymous" with the admin role.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

from webhook.auth import authorized
from webhook.errors import Forbidden, Unauthorized
from webhook.users import Person, Role, Users
from workers.config import Settings

ANONYMOUS = Person(name="anonymous", role="admin")
FORWARDED_USER = "X-Forwarded-User"
FORWARDED_EMAIL = "X-Forwarded-Email"


HEADERS = ("Authorization", FORWARDED_USER, FORWARDED_EMAIL)


@dataclass(frozen=True)
class Request:
    """What identifying a caller reads of an HTTP request: its HEADERS, by those names."""

    headers: Mapping[str, str]
    remote_addr: str | None


def person(request: Request, settings: Settings, users: Users, needed: Role) -> Person:
    """The person making `request`, allowed `needed`; else Unauthorized (no or unknown
    credentials) or Forbidden (the Alertmanager credential, or a lower role)."""
    found = _identify(request, settings, users)
    if not found.may(needed):
        raise Forbidden(f"{found.name} is {found.role}; this needs {needed}", role=needed)
    return found


def _identify(request: Request, settings: Settings, users: Users) -> Person:
    if not settings.auth_configured and settings.users_file is None:
        return ANONYMOUS
    proxied = _proxied(request, settings, users)
    if proxied is not None:
        return proxied
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        known = users.by_token(token.strip())
        if known is not None:
            return known
    if header and settings.auth_configured and authorized(header, settings):
        raise Forbidden(
            "the Alertmanager credential may only post notifications; use a person's token",
            field="Authorization",
        )
    raise Unauthorized("missing or unknown credentials", field="Authorization")


def _proxied(request: Request, settings: Settings, users: Users) -> Person | None:
    """The person the trusted proxy vouches for; None when the request did not come
    through one (then its forwarded headers mean nothing and are ignored)."""
    if not settings.trusted_proxies or not _trusted(request.remote_addr, settings):
        return None
    email = request.headers.get(FORWARDED_EMAIL, "").strip()
    name = request.headers.get(FORWARDED_USER, "").strip()
    if not email and not name:
        return None
    # The email, when the proxy gives one, decides alone: a user header beside an unknown
    # email must not name someone else (a client can add one the proxy passes through).
    found = users.by_email(email) if email else users.by_name(name)
    if found is None:
        shown = (email or name)[:64]
        raise Forbidden(f"{shown!r} signed in, but is not in the users file", field=FORWARDED_EMAIL)
    return found


def _trusted(address: str | None, settings: Settings) -> bool:
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    return any(ip in network for network in settings.trusted_proxies)
