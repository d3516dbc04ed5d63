"""People with their own token and a role, read from a users file that changes under us.

The file is mounted from a Kubernetes Secret, so it is replaced while the process
runs (the kubelet swaps a `..data` symlink) and it is written by hand: `UsersFile`
notices a new version by its stat, and a broken one never takes away the people
already loaded. It holds only the sha256 of each token, so a copy of the file lets
nobody in; messages about it never quote a token_sha256 and name a person by index.

The reader composes YAML nodes and never constructs them (every value is a string),
and refuses, at the line:col at fault, before it costs much:

- More than MAX_FILE_BYTES: a Secret holds at most 1 MiB.
- Anchors and aliases: nothing here needs them, and aliases are the "billion laughs".
- Nesting deeper than MAX_DEPTH: the file needs four levels.

It does as `workers.policy.source` does rather than use it: that reader constructs
values, locates keys rather than values, and speaks of policy files in its messages.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import os
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

log = logging.getLogger(__name__)

Role = Literal["viewer", "responder", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "responder", "admin")
"""Ascending power: each role may do everything the roles before it may."""

MAX_FILE_BYTES = 1024 * 1024
MAX_DEPTH = 10
TOKEN_PREFIX = "ap_"  # noqa: S105 - a prefix, not a secret
"""Starts every token `new_token` makes, so a leak scan recognises one."""

_RULES: dict[str, tuple[re.Pattern[str], str]] = {
    "name": (
        re.compile(r"[a-z0-9][a-z0-9._-]{0,62}"),
        "1-63 characters of a-z 0-9 . _ -, the first a letter or digit",
    ),
    "role": (re.compile("|".join(ROLES)), ", ".join(ROLES[:-1]) + f" or {ROLES[-1]}"),
    "token_sha256": (re.compile(r"[0-9a-f]{64}"), "64 lowercase hex digits (a sha256)"),
    "email": (re.compile(r"[^@\s]{1,64}@[^@\s]+\.[^@\s]+"), "an address like jane@example.com"),
    "slack_id": (re.compile(r"[A-Z0-9]{2,32}"), "2-32 characters of A-Z 0-9 (like U012ABCDEF)"),
}
_REQUIRED = ("name", "role", "token_sha256")
_UNIQUE = ("name", "token_sha256", "email", "slack_id")
_STR = "tag:yaml.org,2002:str"
_NULL = "tag:yaml.org,2002:null"


def _problem(key: str, value: object) -> str | None:
    """What is wrong with `value` for `key`, without quoting it (it may be a token_sha256)."""
    pattern, expected = _RULES[key]
    if not isinstance(value, str):
        return f"{key} must be a string"
    if len(value) > 254 or not pattern.fullmatch(value):
        return f"{key} must be {expected}"
    return None


@dataclass(frozen=True)
class Person:
    """Someone with their own token; their email and Slack id find them from a chat
    command or a link, their role says what they may do."""

    name: str
    role: Role
    email: str | None = None
    slack_id: str | None = None

    def __post_init__(self) -> None:
        for key in ("name", "role", "email", "slack_id"):
            value = getattr(self, key)
            if value is not None and (problem := _problem(key, value)):
                raise ValueError(f"{problem}, got {value!r}")

    def may(self, needed: Role) -> bool:
        """Whether this person's role includes `needed` (an admin may all a responder may)."""
        return ROLES.index(self.role) >= ROLES.index(needed)


class UsersError(ValueError):
    """The users file is missing, unreadable or wrong: `path:line:col: what is wrong`."""


@dataclass(frozen=True)
class Users:
    """Everyone in one version of the users file. Rejects two people sharing a name, token,
    email (in any case) or Slack id, so each lookup finds one person at most."""

    people: tuple[Person, ...] = ()
    token_sha256s: tuple[str, ...] = field(default=(), repr=False)
    """Each person's token_sha256, in the order of `people`."""
    _index: dict[tuple[str, str], Person] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.token_sha256s) != len(self.people):
            raise ValueError(f"{len(self.people)} people, {len(self.token_sha256s)} token_sha256s")
        if any(_problem("token_sha256", digest) for digest in self.token_sha256s):
            raise ValueError("token_sha256s: each must be 64 lowercase hex digits")
        index: dict[tuple[str, str], Person] = {}
        for person, digest in zip(self.people, self.token_sha256s, strict=True):
            email = person.email.casefold() if person.email else None
            keys = zip(_UNIQUE, (person.name, digest, email, person.slack_id), strict=True)
            for key, value in keys:
                if value is not None and index.setdefault((key, value), person) is not person:
                    raise ValueError(f"two people with the same {key}")
        object.__setattr__(self, "_index", index)

    def by_token(self, token: str) -> Person | None:
        """Whose token this is. Every digest is compared, each in constant time, so the time
        taken tells nothing of which one matched, nor how much of one."""
        given = _sha256(token)
        found = None
        for person, digest in zip(self.people, self.token_sha256s, strict=True):
            if hmac.compare_digest(given, digest):
                found = person
        return found

    def by_name(self, name: str) -> Person | None:
        return self._index.get(("name", name))

    def by_email(self, email: str) -> Person | None:
        """Case-insensitive: people write their address as they like."""
        return self._index.get(("email", email.casefold()))

    def by_slack_id(self, slack_id: str) -> Person | None:
        return self._index.get(("slack_id", slack_id))


NO_USERS = Users()
"""Nobody: what an unset ALERTPILOT_USERS_FILE, or an empty users file, gives."""


def new_token() -> tuple[str, str]:
    """A new API token and its sha256 hex digest, the one the users file holds."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    return token, _sha256(token)


def _sha256(token: str) -> str:
    # surrogatepass: any str hashes (a header never holds one, but nothing here may raise).
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def entry_yaml(person: Person, token_sha256: str) -> str:
    """`person` as one item of the `users:` list, indented to paste under it (quoted where
    YAML would read a name such as `no` or `123` as something other than a string)."""
    entry = {"name": person.name, "role": person.role, "token_sha256": token_sha256}
    entry |= {key: value for key in ("email", "slack_id") if (value := getattr(person, key))}
    text = yaml.safe_dump([entry], sort_keys=False, allow_unicode=True, width=1000)
    return "".join(f"  {line}" for line in text.splitlines(keepends=True))


def load_users(path: Path) -> Users:
    """The users in the file at `path`; UsersError if it is missing, unreadable or wrong."""
    try:
        _, data = _read(path)
    except OSError as exc:
        raise UsersError(_unreadable(path, exc)) from None
    return _parse_bytes(data, str(path))


def parse_users(text: str, path: str) -> Users:
    """The users in `text`, read from `path` (named in messages); UsersError at the first
    fault. An empty document, `users:` and `users: []` mean nobody."""
    root = _compose(text, path)
    people: list[Person] = []
    digests: list[str] = []
    first: dict[tuple[str, str], str] = {}
    for index, node in enumerate(_entries(root, path)):
        who, fields = _fields(node, index, path)
        for key in _UNIQUE:
            if key not in fields:
                continue
            value = fields[key].value.casefold() if key == "email" else fields[key].value
            if (seen := first.setdefault((key, value), who)) != who:
                raise _at(path, fields[key], f"{who}: the same {key} as {seen}")
        values = {key: scalar.value for key, scalar in fields.items()}
        digests.append(values.pop("token_sha256"))
        people.append(Person(**values))
    return Users(tuple(people), tuple(digests))


def _entries(root: yaml.Node | None, path: str) -> list[yaml.Node]:
    if root is None or (isinstance(root, yaml.ScalarNode) and root.tag == _NULL):
        return []
    top = "the top level must be a mapping with one key, users"
    if not isinstance(root, yaml.MappingNode):
        raise _at(path, root, top)
    users: yaml.Node | None = None
    for key, value in root.value:
        if not (_is_string(key) and key.value == "users"):
            raise _at(path, key, f"unknown top-level key{_shown(key)} (the one key is users)")
        if users is not None:
            raise _at(path, key, "users given twice")
        users = value
    if users is None:
        raise _at(path, root, top)
    if isinstance(users, yaml.ScalarNode) and users.tag == _NULL:
        return []
    if not isinstance(users, yaml.SequenceNode):
        raise _at(path, users, "users must be a list")
    return list(users.value)


def _fields(node: yaml.Node, index: int, path: str) -> tuple[str, dict[str, yaml.ScalarNode]]:
    """Who the entry is (`users[2] (jane)`) and its fields, each a valid string."""
    who = f"users[{index}]"
    if not isinstance(node, yaml.MappingNode):
        raise _at(path, node, f"{who}: must be a mapping of {', '.join(_RULES)}")
    names = [v.value for k, v in node.value if _is_string(k, "name") and _is_string(v)]
    if names and _problem("name", names[0]) is None:
        who = f"{who} ({names[0]})"
    fields: dict[str, yaml.ScalarNode] = {}
    for key, value in node.value:
        if not (_is_string(key) and key.value in _RULES):
            raise _at(path, key, f"{who}: unknown key{_shown(key)} (known: {', '.join(_RULES)})")
        if key.value in fields:
            raise _at(path, key, f"{who}: {key.value} given twice")
        if not _is_string(value):
            raise _at(path, value, f"{who}: {key.value} must be a string")
        if problem := _problem(key.value, value.value):
            raise _at(path, value, f"{who}: {problem}")
        fields[key.value] = value
    if missing := [key for key in _REQUIRED if key not in fields]:
        raise _at(path, node, f"{who}: missing {', '.join(missing)}")
    return who, fields


def _is_string(node: yaml.Node, value: str | None = None) -> bool:
    is_str = isinstance(node, yaml.ScalarNode) and node.tag == _STR
    return is_str and (value is None or node.value == value)


def _shown(key: yaml.Node) -> str:
    """` 'key'` when it is short enough to be a mistyped key rather than a pasted secret."""
    return f" {key.value!r}" if _is_string(key) and len(key.value) <= 32 else ""


def _at(path: str, node: yaml.Node, message: str) -> UsersError:
    mark = node.start_mark
    return UsersError(f"{path}:{mark.line + 1}:{mark.column + 1}: {message}")


def _compose(text: str, path: str) -> yaml.Node | None:
    try:
        reader = _Reader(text)
    except yaml.reader.ReaderError as exc:  # a control character, checked before parsing
        line, col = _position(text, exc.position)
        message = f"invalid YAML: character #x{exc.character:04x} is not allowed"
        raise UsersError(f"{path}:{line}:{col}: {message}") from None
    try:
        return reader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        refused = isinstance(exc, _Refused)
        what = ", ".join(part for part in (exc.context, exc.problem) if part)
        message = what if refused else f"invalid YAML: {what}"
        raise UsersError(f"{path}:{line}:{col}: {message}") from None
    finally:
        reader.dispose()


class _Refused(yaml.MarkedYAMLError):
    """What the reader will not take, at its mark."""


class _Reader(yaml.SafeLoader):
    """PyYAML's safe loader, used to compose only, refusing anchors, aliases, deep nesting."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event: Any = self.peek_event()  # type: ignore[no-untyped-call]
        if getattr(event, "anchor", None) is not None:
            refused = "anchors and aliases (&name, *name) are not allowed in a users file"
            raise _Refused(problem=refused, problem_mark=event.start_mark)
        if self.depth >= MAX_DEPTH:
            refused = f"nested more than {MAX_DEPTH} levels deep"
            raise _Refused(problem=refused, problem_mark=event.start_mark)
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _position(text: str, index: int) -> tuple[int, int]:
    """1-based line and column of `index` into `text`."""
    return text.count("\n", 0, index) + 1, index - text.rfind("\n", 0, index)


_Stamp = tuple[int, int, int]


class UsersFile:
    """The users file, read again when it changes; what the receiver asks on each request.

    At most every `interval` seconds (by `clock`) one caller stats the path, following
    links, and reads it only if its stamp changed; in between, `current()` takes no lock
    and makes no system call. Two writes of the same size within the file system's time
    granularity, in place, look unchanged: replace the file instead (as the kubelet does).

    Until a version has loaded, `current()` raises UsersError (so a process can refuse to
    start). After that, a broken, unreadable or deleted file keeps the people loaded
    before; the fault is logged once, as `path:line:col: what`, and the file is checked
    again every interval. With no path there is nobody.
    """

    def __init__(
        self,
        path: Path | None,
        *,
        interval: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not interval >= 0:
            raise ValueError(f"interval: must be at least 0 seconds, got {interval!r}")
        self.path = path
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        """One check at a time; the others wait for it, then take what it decided."""
        self._users: Users | None = None
        """The people of the newest version that loaded; None until one has."""
        self._fault: str | None = None
        """Why the file as it now is does not give `_users`; None when it does."""
        self._stamp: _Stamp | None = None
        """The stamp of the version last read, good or bad: read it again once it changes."""
        self._next_check = -math.inf

    def current(self) -> Users:
        if self.path is None:
            return NO_USERS
        users = self._users
        if users is not None and self._clock() < self._next_check:
            return users
        with self._lock:
            now = self._clock()
            if now >= self._next_check:
                self._next_check = now + self._interval
                self._check(self.path)
            if self._users is None:
                raise UsersError(self._fault or f"{self.path}: not read yet")
            return self._users

    def _check(self, path: Path) -> None:
        try:
            if _stamp(os.stat(path)) == self._stamp:
                return
            stamp, data = _read(path)
        except OSError as exc:
            self._stamp = None  # once it is back, read it even if it looks the same
            self._reject(_unreadable(path, exc), new_version=False)
            return
        self._stamp = stamp
        try:
            users = _parse_bytes(data, str(path))
        except UsersError as exc:
            self._reject(str(exc), new_version=True)
            return
        self._users, self._fault = users, None
        log.info("%s: %d people loaded", path, len(users.people))

    def _reject(self, fault: str, *, new_version: bool) -> None:
        """Keep the people loaded before; log a fault once, not at every check."""
        if self._users is not None and (new_version or fault != self._fault):
            log.warning("%s; keeping the users loaded before", fault)
        self._fault = fault


def _read(path: Path) -> tuple[_Stamp, bytes]:
    """The file's stamp and bytes, from one open file (past MAX_FILE_BYTES, read no further)."""
    with path.open("rb") as file:
        stamp = _stamp(os.fstat(file.fileno()))
        return stamp, file.read(MAX_FILE_BYTES + 1)


def _stamp(stat: os.stat_result) -> _Stamp:
    """A Secret update swaps a link to a new inode; an edit in place changes time or size."""
    return stat.st_mtime_ns, stat.st_size, stat.st_ino


def _unreadable(path: Path, exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return f"{path}: no such file"
    return f"{path}: cannot read: {exc.strerror or type(exc).__name__}"


def _parse_bytes(data: bytes, path: str) -> Users:
    if len(data) > MAX_FILE_BYTES:
        limit = f"{MAX_FILE_BYTES // (1024 * 1024)} MiB"
        raise UsersError(f"{path}:1:1: larger than {limit}, the most a users file may be")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = data[: exc.start].decode()
        line, col = _position(before, len(before))
        raise UsersError(f"{path}:{line}:{col}: not UTF-8 text ({exc.reason})") from None
    return parse_users(text, path)
