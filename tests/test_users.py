"""People's own tokens and roles: the users file read strictly, with every fault at its
line:col and never a token_sha256 in a message; reloaded when it changes, a broken new
version keeping the people before; `alertpilot users add` making the entry."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import time
from pathlib import Path

import pytest

from webhook.cli import main
from webhook.users import (
    MAX_FILE_BYTES,
    ROLES,
    Person,
    Role,
    Users,
    UsersError,
    UsersFile,
    load_users,
    new_token,
    parse_users,
)
from workers.config import Settings


def sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


JANE, BOB = sha("ap_jane"), sha("ap_bob")
GOOD = f"""\
users:
  - name: jane
    role: responder
    token_sha256: {JANE}
    email: Jane@Example.com
    slack_id: U012ABCDEF
  - name: bob
    role: admin
    token_sha256: {BOB}
"""


def users_yaml(*names: str) -> str:
    """A users file of admins, each with the token `ap_<name>`."""
    entries = (f"  - {{name: {n}, role: admin, token_sha256: {sha('ap_' + n)}}}\n" for n in names)
    return "users:\n" + "".join(entries)


def names(users: Users) -> tuple[str, ...]:
    return tuple(person.name for person in users.people)


class Ticks:
    """A monotonic clock that moves only when a test moves it."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def replace(path: Path, text: str) -> None:
    """Write `text` to `path` at once, as a rename: a reader sees the old file or the new."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def test_a_good_file_gives_each_person_their_role_email_and_slack_id() -> None:
    users = parse_users(GOOD, "users.yaml")
    jane = Person("jane", "responder", email="Jane@Example.com", slack_id="U012ABCDEF")
    assert users.people == (jane, Person("bob", "admin"))
    assert users.by_name("jane") == jane
    assert users.by_email("jane@EXAMPLE.com") == jane
    assert users.by_slack_id("U012ABCDEF") == jane
    assert users.by_name("JANE") is None
    assert users.by_slack_id("u012abcdef") is None


def test_a_token_finds_its_person_and_neither_a_wrong_token_nor_the_hash_does() -> None:
    users = parse_users(GOOD, "users.yaml")
    assert users.by_token("ap_jane") == users.by_name("jane")
    assert users.by_token("ap_bob") == users.by_name("bob")
    assert users.by_token("ap_jane ") is None
    assert users.by_token("") is None
    assert users.by_token(JANE) is None


@pytest.mark.parametrize(
    ("role", "allowed"),
    [
        ("viewer", {"viewer"}),
        ("responder", {"viewer", "responder"}),
        ("admin", {"viewer", "responder", "admin"}),
    ],
)
def test_a_role_may_what_it_and_every_lesser_role_may(role: Role, allowed: set[str]) -> None:
    person = Person("jane", role)
    assert {needed for needed in ROLES if person.may(needed)} == allowed


@pytest.mark.parametrize("text", ["", "# nobody yet\n", "---\n", "users: []\n", "users:\n"])
def test_an_empty_file_or_list_means_nobody(text: str) -> None:
    assert parse_users(text, "users.yaml").people == ()


def test_new_tokens_are_prefixed_for_leak_scans_and_come_with_their_sha256() -> None:
    (token, digest), (other, _) = new_token(), new_token()
    assert token.startswith("ap_") and len(token) > 40 and token != other
    assert digest == sha(token)


def test_the_constructors_refuse_a_bad_role_and_two_people_with_one_email() -> None:
    with pytest.raises(ValueError, match="role must be viewer, responder or admin, got 'root'"):
        Person("jane", "root")  # type: ignore[arg-type]
    people = (Person("a", "viewer", email="x@example.com"), Person("b", "viewer", email="X@e.com"))
    with pytest.raises(ValueError, match="two people with the same email"):
        Users((people[0], Person("b", "viewer", email="X@Example.com")), (JANE, BOB))
    assert Users(people, (JANE, BOB)).by_email("x@e.COM") == people[1]


def entry(name: str = "jane", *more: str, digest: str = JANE) -> str:
    """One item of `users:` on 3 lines and more: the name's value at column 11, the
    token_sha256's at 19, each of `more` at 5."""
    return f"  - name: {name}\n    role: viewer\n    token_sha256: {digest}\n" + "".join(
        f"    {line}\n" for line in more
    )


def users(*entries: str) -> str:
    return "users:\n" + "".join(entries)


ANCHORED = users("  - &a\n" + entry().replace("  - ", "    "), "  - *a\n")
BAD = [
    pytest.param(
        users(entry(), entry(digest=BOB)),
        (5, 11, "users[1] (jane): the same name as users[0] (jane)"),
        id="duplicate name",
    ),
    pytest.param(
        users(entry(), entry("bob")),
        (7, 19, "users[1] (bob): the same token_sha256 as users[0] (jane)"),
        id="duplicate token_sha256",
    ),
    pytest.param(
        users(entry("jane", "email: j@x.io"), entry("bob", "email: J@X.IO", digest=BOB)),
        (9, 12, "users[1] (bob): the same email as users[0] (jane)"),
        id="duplicate email in another case",
    ),
    pytest.param(
        users(entry("jane", "slack_id: U1"), entry("bob", "slack_id: U1", digest=BOB)),
        (9, 15, "users[1] (bob): the same slack_id as users[0] (jane)"),
        id="duplicate slack id",
    ),
    pytest.param(
        f"users:\n  - name: jane\n    role: root\n    token_sha256: {JANE}\n",
        (3, 11, "users[0] (jane): role must be viewer, responder or admin"),
        id="bad role",
    ),
    pytest.param(
        users(entry("jane", "token: ap_jane")),
        (5, 5, "users[0] (jane): unknown key 'token' (known: name, role, token_sha256, email,"),
        id="unknown key",
    ),
    pytest.param(
        users(entry(digest=JANE.upper())),
        (4, 19, "users[0] (jane): token_sha256 must be 64 lowercase hex digits (a sha256)"),
        id="hash in upper case",
    ),
    pytest.param(
        users(entry(digest=JANE[:63])),
        (4, 19, "users[0] (jane): token_sha256 must be 64 lowercase hex digits"),
        id="hash too short",
    ),
    pytest.param(
        "users:\n  - name: jane\n    role: viewer\n",
        (2, 5, "users[0] (jane): missing token_sha256"),
        id="missing hash",
    ),
    pytest.param(
        users(entry("jane", "role: admin")),
        (5, 5, "users[0] (jane): role given twice"),
        id="key twice",
    ),
    pytest.param(
        users(f"  - {{name: 123, role: viewer, token_sha256: {JANE}}}\n"),
        (2, 12, "users[0]: name must be a string"),
        id="name read as a number",
    ),
    pytest.param(
        users(entry("Jane")),
        (2, 11, "users[0]: name must be 1-63 characters of a-z 0-9"),
        id="name in upper case",
    ),
    pytest.param(
        users(entry("jane", "slack_id: u012")),
        (5, 15, "users[0] (jane): slack_id must be 2-32 characters of A-Z 0-9"),
        id="slack id in lower case",
    ),
    pytest.param(
        users("  - jane\n"),
        (2, 5, "users[0]: must be a mapping of name, role, token_sha256, email, slack_id"),
        id="entry not a mapping",
    ),
    pytest.param("users: {name: jane}\n", (1, 8, "users must be a list"), id="users not a list"),
    pytest.param(
        "- users\n",
        (1, 1, "the top level must be a mapping with one key, users"),
        id="top level a list",
    ),
    pytest.param(
        "{}\n", (1, 1, "the top level must be a mapping with one key, users"), id="no users key"
    ),
    pytest.param(
        "users: []\nadmins: []\n",
        (2, 1, "unknown top-level key 'admins' (the one key is users)"),
        id="another top-level key",
    ),
    pytest.param(
        ANCHORED,
        (2, 5, "anchors and aliases (&name, *name) are not allowed in a users file"),
        id="anchor and alias",
    ),
    pytest.param(users(entry(), "  - *a\n"), (5, 5, "anchors and aliases"), id="alias alone"),
    pytest.param(
        "users: " + "[" * 20 + "]" * 20 + "\n",
        (1, 17, "nested more than 10 levels deep"),
        id="deep nesting",
    ),
    pytest.param(
        "users:\n  - name: [jane\n",
        (3, 1, "invalid YAML: while parsing a flow sequence, expected ',' or ']'"),
        id="invalid YAML",
    ),
    pytest.param(
        "users: []\n---\nusers: []\n",
        (2, 1, "invalid YAML: expected a single document in the stream, but found another"),
        id="two documents",
    ),
    pytest.param(
        users(entry("ja\x07ne")),
        (2, 13, "invalid YAML: character #x0007 is not allowed"),
        id="control character",
    ),
]


@pytest.mark.parametrize(("text", "fault"), BAD)
def test_a_bad_file_is_refused_at_the_line_and_column_at_fault_without_a_hash(
    text: str, fault: tuple[int, int, str]
) -> None:
    with pytest.raises(UsersError) as caught:
        parse_users(text, "secret/users.yaml")
    said = str(caught.value)
    line, col, message = fault
    assert said.startswith(f"secret/users.yaml:{line}:{col}: {message}")
    assert not re.search("[0-9a-f]{32}", said, re.IGNORECASE)
    assert "ap_jane" not in said


def test_a_file_larger_than_a_secret_may_be_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "users.yaml"
    path.write_text("users: []\n" + "#" * MAX_FILE_BYTES)
    with pytest.raises(UsersError, match=r"users\.yaml:1:1: larger than 1 MiB"):
        load_users(path)


def test_a_file_not_in_utf8_is_refused_at_the_bad_byte(tmp_path: Path) -> None:
    path = tmp_path / "users.yaml"
    path.write_bytes(b"users:\n  - name: \xc3\xa9\xe9\n")  # é in UTF-8, then in Latin-1
    with pytest.raises(UsersError, match=r"users\.yaml:2:12: not UTF-8 text"):
        load_users(path)


def test_no_users_file_gives_nobody_and_a_missing_one_is_an_error(tmp_path: Path) -> None:
    assert UsersFile(None).current().people == ()
    missing = tmp_path / "users.yaml"
    with pytest.raises(UsersError) as caught:
        UsersFile(missing).current()
    assert str(caught.value) == f"{missing}: no such file"


def test_a_broken_first_version_is_an_error_until_fixed(tmp_path: Path) -> None:
    path, clock = tmp_path / "users.yaml", Ticks()
    path.write_text("users: {}\n")
    users_file = UsersFile(path, clock=clock)
    with pytest.raises(UsersError, match=":1:8: users must be a list"):
        users_file.current()
    replace(path, users_yaml("jane"))
    clock.now += 2
    assert names(users_file.current()) == ("jane",)


def test_a_changed_file_is_read_once_the_interval_has_passed_not_before(tmp_path: Path) -> None:
    path, clock = tmp_path / "users.yaml", Ticks()
    path.write_text(users_yaml("jane"))
    users_file = UsersFile(path, interval=2.0, clock=clock)
    assert names(users_file.current()) == ("jane",)
    replace(path, users_yaml("jane", "bob"))
    clock.now += 1.9
    assert names(users_file.current()) == ("jane",)
    clock.now += 0.1
    assert names(users_file.current()) == ("jane", "bob")
    assert users_file.current().by_token("ap_bob") == Person("bob", "admin")


def test_an_unchanged_stat_means_the_file_is_not_read_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path, clock = tmp_path / "users.yaml", Ticks()
    path.write_text(users_yaml("jane"))
    users_file = UsersFile(path, clock=clock)
    first = users_file.current()
    before = path.stat()
    path.write_text(users_yaml("jane").replace("admin", "admix"))  # same inode, same size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    clock.now += 10
    assert users_file.current() is first
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000))
    clock.now += 10
    assert users_file.current() is first  # read this time, and refused
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warning.startswith(f"{path}:2:") and "role must be" in warning


def kubelet_write(volume: Path, version: str, text: str) -> None:
    """As the kubelet updates a Secret volume: a new directory, then `..data` swapped to it
    by a rename; `users.yaml` is a link through `..data`."""
    (volume / f"..{version}").mkdir()
    (volume / f"..{version}" / "users.yaml").write_text(text)
    os.utime(volume / f"..{version}" / "users.yaml", ns=(0, 0))
    (volume / "..data_tmp").symlink_to(f"..{version}")
    os.replace(volume / "..data_tmp", volume / "..data")
    if not os.path.lexists(volume / "users.yaml"):
        (volume / "users.yaml").symlink_to("..data/users.yaml")


def test_a_secret_update_swapping_the_data_link_is_picked_up(tmp_path: Path) -> None:
    clock = Ticks()
    kubelet_write(tmp_path, "2024_01", users_yaml("jane", "bob"))
    users_file = UsersFile(tmp_path / "users.yaml", clock=clock)
    assert names(users_file.current()) == ("jane", "bob")
    kubelet_write(tmp_path, "2024_02", users_yaml("jane", "rob"))  # same size and time
    clock.now += 2
    assert names(users_file.current()) == ("jane", "rob")


def test_a_broken_new_version_keeps_the_people_before_and_is_logged_once_at_its_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path, clock = tmp_path / "users.yaml", Ticks()
    path.write_text(GOOD)
    users_file = UsersFile(path, clock=clock)
    before = users_file.current()
    replace(path, GOOD.replace("role: admin", "role: root"))
    for _ in range(3):
        clock.now += 2
        assert users_file.current() is before
    (record,) = [r for r in caplog.records if r.levelno >= logging.WARNING]
    said = record.getMessage()
    assert said.startswith(f"{path}:8:11: users[1] (bob): role must be viewer, responder or admin")
    assert JANE not in said and BOB not in said
    assert JANE not in caplog.text and BOB not in caplog.text
    replace(path, GOOD.replace("role: admin", "role: viewer"))
    clock.now += 2
    assert users_file.current().by_token("ap_bob") == Person("bob", "viewer")


def test_a_deleted_file_keeps_the_people_before_and_is_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path, clock = tmp_path / "users.yaml", Ticks()
    path.write_text(users_yaml("jane"))
    users_file = UsersFile(path, clock=clock)
    before = users_file.current()
    path.unlink()
    for _ in range(3):
        clock.now += 2
        assert users_file.current() is before
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == [f"{path}: no such file; keeping the users loaded before"]
    path.write_text(users_yaml("bob"))
    clock.now += 2
    assert names(users_file.current()) == ("bob",)


def test_threads_reading_while_the_file_flips_always_get_one_whole_version(
    tmp_path: Path,
) -> None:
    path = tmp_path / "users.yaml"
    many = tuple(f"person{i}" for i in range(150))  # long enough to parse that threads overlap
    versions = {many: users_yaml(*many), ("jane", "bob"): users_yaml("jane", "bob")}
    replace(path, versions[many])
    users_file = UsersFile(path, interval=0.0)
    start, stop = threading.Barrier(9), threading.Event()
    seen: set[tuple[str, ...]] = set()
    failures: list[BaseException] = []

    def read() -> None:
        start.wait()  # all at once, the first call too
        try:
            while not stop.is_set():
                users = users_file.current()
                seen.add(names(users))
                last = users.people[-1]
                assert users.by_token(f"ap_{last.name}") == last
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=read) for _ in range(8)]
    for thread in threads:
        thread.start()
    start.wait()
    for flip in range(40):
        replace(path, list(versions.values())[(flip + 1) % 2])
        time.sleep(0.005)
    stop.set()
    for thread in threads:
        thread.join()
    assert failures == []
    assert seen == set(versions)


@pytest.mark.parametrize(
    ("argv", "person"),
    [
        (["jane", "--role", "responder"], Person("jane", "responder")),
        (
            ["123", "--role", "admin", "--email", "Ops@Example.com", "--slack-id", "U0123"],
            Person("123", "admin", email="Ops@Example.com", slack_id="U0123"),
        ),
        (["no", "--role", "viewer"], Person("no", "viewer")),  # YAML would read `no` as false
    ],
)
def test_users_add_prints_the_token_once_and_the_entry_that_lets_it_in(
    argv: list[str],
    person: Person,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    assert main(["users", "add", *argv]) == 0
    out, err = capsys.readouterr()
    token_line, blank, *entry_lines = out.splitlines(keepends=True)
    token = token_line.removeprefix("token: ").removesuffix("\n")
    assert token_line == f"token: {token}\n" and token.startswith("ap_")
    assert blank == "\n"
    assert all(line.startswith("  ") for line in entry_lines)
    users = parse_users("users:\n" + "".join(entry_lines), "pasted.yaml")
    assert users.people == (person,)
    assert users.token_sha256s == (sha(token),)
    assert users.by_token(token) == person
    assert err.count("\n") == 1 and "only" in err and token not in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["jane", "--role", "root"], "role must be viewer, responder or admin, got 'root'"),
        (["Jane", "--role", "viewer"], "name must be 1-63 characters of"),
        (["jane", "--role", "viewer", "--email", "jane"], "email must be an address"),
        (
            ["jane", "--role", "viewer", "--slack-id", "u0123"],
            "slack_id must be 2-32 characters of",
        ),
    ],
)
def test_users_add_refuses_bad_input_with_exit_2_and_prints_no_token(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["users", "add", *argv]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"alertpilot: {message}") and err.count("\n") == 1


@pytest.mark.parametrize(
    ("value", "expected"), [("", None), ("/no/such/users.yaml", Path("/no/such/users.yaml"))]
)
def test_the_users_file_setting_is_a_path_that_need_not_exist_yet(
    value: str, expected: Path | None
) -> None:
    assert Settings.from_env({"ALERTPILOT_USERS_FILE": value}).users_file == expected
    assert Settings.from_env({}).users_file is None
