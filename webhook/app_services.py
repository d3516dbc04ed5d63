"""Access to the app's services and the shared auth check, for the views."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Flask, current_app, request

from webhook.auth import authorized
from webhook.errors import Unauthorized

if TYPE_CHECKING:
    from webhook.app import Services


def services() -> Services:
    return services_of(current_app)


def services_of(app: Flask) -> Services:
    found: Services = app.extensions["alertpilot"]
    return found


def require_auth(s: Services) -> None:
    if not authorized(request.headers.get("Authorization"), s.settings):
        raise Unauthorized("missing or wrong credentials", field="Authorization")
