"""The web page's browser sessions and CSRF tokens (webhook/web.py).

A session is a random id, the name of the person who signed in with their token on
`/login` ("" when the person comes from the trusted proxy, or nobody signs in), and
an expiry, signed with an HMAC: the cookie holds no token and cannot be forged or
extended without the key. The person is looked up in the users file on every
request, so removing them or changing their role takes effect at once.

Every form carries a CSRF token, the HMAC of the session id: a cross-site page can
make the browser send the cookie (older browsers ignore SameSite) but cannot read
the token. `Origin` and `Sec-Fetch-Site`, when the browser sends them, must say the
post comes from this site, as a second defence.

The key is derived from ALERTPILOT_SESSION_SECRET. Without it, signing in with a token
is off (a session signed with one process's random key would end at restart and fail
on the other `serve` processes); forms still work for the proxy's people and with no
auth (`dev`), signed with a random key of this process.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

COOKIE = "alertpilot_session"
LIFETIME = 12 * 3600
"""Seconds a session lasts from signing in; then the person signs in again."""
CSRF_FIELD = "csrf"
FETCH_HEADERS = ("Origin", "Sec-Fetch-Site")
"""What `same_site` reads of a request."""


@dataclass(frozen=True)
class Session:
    id: str
    person: str
    """Who signed in with their token; "" for a session that only carries CSRF tokens."""
    expires: int
    """Seconds since the epoch."""


class Signer:
    """Makes and checks session cookies and CSRF tokens with one key."""

    def __init__(self, secret: str | None) -> None:
        self.configured = bool(secret)
        base = secret.encode() if secret else secrets.token_bytes(32)
        self._key = hashlib.sha256(b"alertpilot web session\0" + base).digest()

    def new(self, person: str = "") -> Session:
        return Session(secrets.token_urlsafe(18), person, int(time.time()) + LIFETIME)

    def dump(self, session: Session) -> str:
        name = base64.urlsafe_b64encode(session.person.encode()).decode().rstrip("=")
        payload = f"{session.id}.{name}.{session.expires}"
        return f"{payload}.{self._mac('session', payload)}"

    def load(self, raw: str | None) -> Session | None:
        """The session a cookie holds; None for no cookie, a forged, altered or expired one."""
        parts = (raw or "").split(".")
        if len(parts) != 4 or len(raw or "") > 512:
            return None
        sid, name, expires, mac = parts
        if not hmac.compare_digest(mac, self._mac("session", f"{sid}.{name}.{expires}")):
            return None
        try:
            person = base64.urlsafe_b64decode(name + "=" * (-len(name) % 4)).decode()
            until = int(expires)
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
        return Session(sid, person, until) if until > time.time() else None

    def csrf(self, session: Session) -> str:
        return self._mac("csrf", session.id)

    def csrf_valid(self, session: Session | None, token: str) -> bool:
        return session is not None and hmac.compare_digest(token, self.csrf(session))

    def _mac(self, purpose: str, payload: str) -> str:
        digest = hmac.new(self._key, f"{purpose}\0{payload}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def same_site(headers: Mapping[str, str], host: str) -> bool:
    """Whether the browser's own headers say this request comes from this site: an
    `Origin` naming this host (any scheme: TLS may end at the proxy), a `Sec-Fetch-Site`
    of same-origin or none (typed or bookmarked). A header left out says nothing."""
    fetch_site = headers.get("Sec-Fetch-Site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return False
    origin = headers.get("Origin")
    if origin is None:
        return True
    return origin != "null" and urlsplit(origin).netloc.lower() == host.lower()
