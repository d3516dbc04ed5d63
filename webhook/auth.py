"""Who may post notifications and read incidents: a bearer token or basic auth.

Both are compared in constant time. With neither configured, every request is
allowed; `serve` refuses to start that way unless told `--insecure-no-auth`.
"""

from __future__ import annotations

import base64
import binascii
import hmac

from workers.config import Settings


def authorized(header: str | None, settings: Settings) -> bool:
    if not settings.auth_configured:
        return True
    if not header:
        return False
    scheme, _, credentials = header.partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer" and settings.webhook_token:
        tokens = [settings.webhook_token, settings.webhook_previous_token or ""]
        # Compare with both (constant time each) so timing does not tell which matched.
        matches = [_same(credentials.strip(), token) for token in tokens if token]
        return any(matches)
    if scheme == "basic" and settings.webhook_username and settings.webhook_password:
        try:
            user, _, password = (
                base64.b64decode(credentials.strip(), validate=True).decode().partition(":")
            )
        except (binascii.Error, UnicodeDecodeError):
            return False
        # Both comparisons always run, so timing does not tell which part was wrong.
        user_ok = _same(user, settings.webhook_username)
        password_ok = _same(password, settings.webhook_password)
        return user_ok and password_ok
    return False


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())
