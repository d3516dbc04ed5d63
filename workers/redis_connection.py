"""The one way alertpilot connects to Redis: `connect(settings)`, for the receiver, the
worker (and so RQ's scheduler, which copies the worker's connection), and every CLI
command that touches Redis.

`REDIS_URL` is one of:

- `redis://[[user]:password@]host[:port][/db]`, `rediss://...` (TLS) or
  `unix://[[user]:password@]/path/to/socket[?db=N]`: one server, as redis-py's
  `Redis.from_url` reads it (its query options too);
- `redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/service[/db]`:
  Redis Sentinel. Each `host:port` is a sentinel (port 26379 when left out; an IPv6
  address in brackets), `service` the name the sentinels monitor (`sentinel monitor
  <service> ...`), `db` the database (0 when left out). The user and password are the
  Redis servers' (primary and replicas), percent-encoded like any URL's; the sentinels'
  own password, if they ask for one, is `ALERTPILOT_REDIS_SENTINEL_PASSWORD` (or
  `_FILE`). No query options, and no TLS to the servers or the sentinels.

Through Sentinel, a connection is made to whichever server the sentinels name as
primary when it is made: redis-py's `SentinelConnectionPool` asks them again after a
connection error (and on a READONLY answer from a demoted primary), so after a
failover the next connections go to the new primary. RQ's scheduler rebuilds its own
pool from the worker's connection's class and arguments, the pool's sentinel handle
among them, so it follows the primary the same way.

Errors name REDIS_URL and what is wrong, and quote nothing of it: never its password.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from redis import Redis
from redis.connection import parse_url
from redis.sentinel import Sentinel

if TYPE_CHECKING:
    from workers.config import Settings

SENTINEL_SCHEME = "redis+sentinel://"
SENTINEL_PORT = 26379
SENTINEL_TIMEOUT = 1.0
"""Seconds to connect to one sentinel, and for its answer: discovery moves on to the
next sentinel after this, so a silent one costs a second, not the client's timeout."""
FORM = f"{SENTINEL_SCHEME}[[user]:password@]host[:port][,host[:port]...]/service[/db]"

_HOST = re.compile(
    r"\[(?P<ipv6>[0-9A-Fa-f:.]+)\](?::(?P<port6>[^:]*))?|(?P<host>[^:\[\]]*)(?::(?P<port>.*))?"
)
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,128}")
_HOSTNAME = re.compile(r"[A-Za-z0-9_.-]{1,253}")


class RedisUrlError(ValueError):
    """REDIS_URL is malformed; the message names it and never holds its credentials."""


@dataclass(frozen=True)
class SentinelAddress:
    """A `redis+sentinel://` REDIS_URL, parsed."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    """The Redis servers' password (not the sentinels')."""


def parse(url: str) -> SentinelAddress | None:
    """`url` checked: its Sentinel address, or None for one server's URL (redis-py's own
    form, left to `Redis.from_url`). Errors quote nothing of the URL: a password written
    without its `@` would be taken for a host or a service name."""
    if url.startswith(("redis://", "rediss://", "unix://")):
        _readable(url)
        return None
    if not url.startswith(SENTINEL_SCHEME):
        raise RedisUrlError(
            "REDIS_URL: must start with redis://, rediss://, unix:// or redis+sentinel://"
        )
    rest = url[len(SENTINEL_SCHEME) :]
    credentials, at, rest = rest.rpartition("@")  # a password may hold '/', '?' or '#'
    username, password = _credentials(credentials) if at else (None, None)
    if "?" in rest or "#" in rest:
        raise RedisUrlError(f"REDIS_URL: a Sentinel address takes no ?options or #fragment: {FORM}")
    hosts, _, path = rest.partition("/")
    parts = hosts.split(",")
    sentinels = tuple(_sentinel(part, n, len(parts)) for n, part in enumerate(parts, 1))
    service, _, db = path.partition("/")
    if not _NAME.fullmatch(service):
        raise RedisUrlError(
            f"REDIS_URL: expected the service name (letters, digits, _ . -) after the "
            f"sentinels: {FORM}"
        )
    return SentinelAddress(sentinels, service, _db(db), username, password)


def _credentials(userinfo: str) -> tuple[str | None, str | None]:
    user, colon, password = userinfo.partition(":")
    if not colon:
        raise RedisUrlError(f"REDIS_URL: credentials go as :password@ or user:password@: {FORM}")
    return unquote(user) or None, unquote(password) or None


def _sentinel(part: str, n: int, of: int) -> tuple[str, int]:
    found = _HOST.fullmatch(part)
    if found is None or not (found.group("ipv6") or _HOSTNAME.fullmatch(found.group("host"))):
        raise RedisUrlError(f"REDIS_URL: sentinel {n} of {of} is not host[:port]: {FORM}")
    port = found.group("port6") if found.group("ipv6") else found.group("port")
    if port is None:
        return found.group("ipv6") or found.group("host"), SENTINEL_PORT
    if not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536:
        raise RedisUrlError(f"REDIS_URL: sentinel {n} of {of}: the port must be 1-65535")
    return found.group("ipv6") or found.group("host"), int(port)


def _db(text: str) -> int:
    if text == "":
        return 0
    if not text.isascii() or not text.isdigit() or len(text) > 5:
        raise RedisUrlError("REDIS_URL: the database after the service name must be a number")
    return int(text)


def _readable(url: str) -> None:
    """One server's URL as redis-py will read it, checked now, not at the first connect:
    a password with an unencoded `/`, `?` or `#` would be read as a host and a port.
    The error quotes nothing of the URL."""
    try:
        found = parse_url(url)  # type: ignore[no-untyped-call]
        if url.startswith(("redis://", "rediss://")):
            urlsplit(url).port  # noqa: B018  (raises ValueError for a port it cannot read)
    except (ValueError, TypeError):
        raise RedisUrlError(
            "REDIS_URL: redis-py cannot read it (percent-encode / ? # @ % in the password)"
        ) from None
    if not isinstance(found, dict):
        raise RedisUrlError("REDIS_URL: redis-py cannot read it")


def connect(settings: Settings, **options: Any) -> Redis:
    """A client of REDIS_URL's Redis (its primary, through Sentinel). `options` are
    redis-py's connection options (timeouts) for the Redis servers, not the sentinels."""
    if settings.redis_url is None:
        raise RedisUrlError("REDIS_URL: not set")
    address = parse(settings.redis_url)
    if address is None:
        return Redis.from_url(settings.redis_url, **options)
    sentinels = Sentinel(
        address.sentinels,
        sentinel_kwargs={
            "password": settings.redis_sentinel_password,
            "socket_timeout": SENTINEL_TIMEOUT,
            "socket_connect_timeout": SENTINEL_TIMEOUT,
        },
    )
    primary: Redis = sentinels.master_for(
        address.service,
        db=address.db,
        username=address.username,
        password=address.password,
        **options,
    )
    return primary
