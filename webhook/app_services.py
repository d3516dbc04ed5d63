"""What the views reach: the app's services, built once by the app factory (webhook/app.py)
and passed explicitly, and the authentication every API view needs."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

from flask import Flask, current_app, request
from redis import Redis
from rq import Queue

from webhook.auth import authorized
from webhook.errors import Unauthorized
from webhook.intake import Intake
from webhook.metrics import Metrics, RedisStateCollector
from workers.config import Settings
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


def services() -> Services:
    return services_of(current_app)


def services_of(app: Flask) -> Services:
    found: Services = app.extensions["alertpilot"]
    return found


def require_auth(s: Services) -> None:
    if not authorized(request.headers.get("Authorization"), s.settings):
        raise Unauthorized("missing or wrong credentials", field="Authorization")


def authenticated(view: Callable[P, R]) -> Callable[P, R]:
    """The view answers only requests with the API's credentials (401 otherwise)."""

    @functools.wraps(view)
    def checked(*args: P.args, **kwargs: P.kwargs) -> R:
        require_auth(services())
        return view(*args, **kwargs)

    return checked
