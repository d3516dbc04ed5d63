"""What the views reach: the app's services, built once by the app factory (webhook/app.py)
and passed explicitly, and who may call them: `require_auth` for Alertmanager's
notifications, `caller` (a person with a role) for everything people do."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

from flask import Flask, current_app, request
from redis import Redis
from rq import Queue

from webhook import identity
from webhook.auth import authorized
from webhook.errors import Unauthorized, Unavailable
from webhook.intake import Intake
from webhook.metrics import Metrics, RedisStateCollector
from webhook.users import Person, Role, UsersError, UsersFile
from workers.config import Settings
from workers.incident.commands import Commands
from workers.incident.keys import Keys
from workers.policy.store import PolicyStore

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class Services:
    """Everything a view needs, built once per app and passed explicitly."""

    settings: Settings
    redis: Redis
    keys: Keys
    queue: Queue
    policies: PolicyStore
    metrics: Metrics
    state: RedisStateCollector
    intake: Intake
    users: UsersFile
    commands: Commands


def services() -> Services:
    return services_of(current_app)


def services_of(app: Flask) -> Services:
    found: Services = app.extensions["alertpilot"]
    return found


def require_auth(s: Services) -> None:
    """Alertmanager's credential (the webhook's): for posting notifications only."""
    if not authorized(request.headers.get("Authorization"), s.settings):
        raise Unauthorized("missing or wrong credentials", field="Authorization")


def caller(s: Services, needed: Role) -> Person:
    """The person making this request, allowed `needed` (401/403 otherwise; 503 while
    the users file has never loaded)."""
    try:
        users = s.users.current()
    except UsersError as exc:
        raise Unavailable(f"users file not loaded: {exc}") from None
    headers = {name: request.headers.get(name, "") for name in identity.HEADERS}
    asking = identity.Request(headers, request.remote_addr)
    return identity.person(asking, s.settings, users, needed)


def authenticated(view: Callable[P, R]) -> Callable[P, R]:
    """The view answers only people (any role: a viewer reads); 401/403 otherwise."""

    @functools.wraps(view)
    def checked(*args: P.args, **kwargs: P.kwargs) -> R:
        caller(services(), "viewer")
        return view(*args, **kwargs)

    return checked
