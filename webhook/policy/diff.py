"""`alertpilot policy diff`: what a policy change does to real alerts.

Both policy sets (the base as a directory or a git ref, and the working one,
which may lie outside the repository) evaluate one corpus: the alerts of the
policy tests' cases, plus recorded notifications (`--replay`, JSON lines as
`alertpilot replay export` writes). Every alert whose route, severity or
actions differ is printed with the old and new value, then one summary line.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from webhook.payload import PayloadError, parse
from webhook.policy.testing import load_cases
from workers.policy.engine import Match, Policy, evaluate
from workers.policy.loader import load_policy
from workers.policy.manifests import FOLDER as MANIFESTS
from workers.policy.runbooks import FOLDER as RUNBOOKS


class DiffError(ValueError):
    """The base or the replay file cannot be read; the message says which and why."""


@dataclass(frozen=True)
class Sample:
    labels: dict[str, str]
    annotations: dict[str, str]
    group_key: str
    source: str
    """Where the alert came from: a test case's file:line, or a replay file's file:line."""


@dataclass(frozen=True)
class Plan:
    route: str
    severity: str
    actions: str

    @classmethod
    def of(cls, matches: list[Match]) -> Plan:
        return cls(
            route=" + ".join(m.route for m in matches),
            severity=" + ".join(m.severity for m in matches),
            actions=" + ".join(", ".join(a.name for a in m.actions) or "none" for m in matches),
        )


def load_base(base: str, directory: Path, *, committed: Path | None = None) -> Policy:
    """`base` is a policy directory, or a git ref.

    A ref is read in the repository that holds `directory`, at its path there.
    A `directory` outside any repository (a copy tried out elsewhere) gets the
    repository of `committed` (the configured policy directory), at its path,
    else that of the current directory, at the current directory's path.
    """
    path = Path(base)
    if path.is_dir():
        return load_policy(path)
    top, relative = _in_repository(base, [directory, committed, Path.cwd()])
    with tempfile.TemporaryDirectory(prefix="alertpilot-base-") as scratch:
        _export(base, top, relative, Path(scratch))
        return load_policy(Path(scratch))


def _in_repository(ref: str, candidates: list[Path | None]) -> tuple[Path, str]:
    """The first candidate inside a git work tree: (its repository's top, its path there)."""
    for candidate in filter(None, candidates):
        top = _toplevel(candidate) if candidate.is_dir() else None
        if top is not None:
            return top, candidate.resolve().relative_to(top.resolve()).as_posix()
    raise DiffError(f"{ref}: not a policy directory, and no git repository here to read it in")


def _toplevel(directory: Path) -> Path | None:
    """The top of the git work tree that holds `directory`, or None outside any.

    Any other refusal (a repository of another user, say) is an error, not a
    reason to read the ref in the next candidate's repository instead.
    """
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"],
            cwd=directory,
            env={**os.environ, "LC_ALL": "C"},  # the message below, untranslated
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
    except FileNotFoundError:
        raise DiffError("git is not installed") from None
    except subprocess.TimeoutExpired:
        raise DiffError(f"{directory}: git did not answer within 30s") from None
    if done.returncode == 0:
        return Path(done.stdout.strip())
    if "not a git repository" in done.stderr:
        return None
    reason = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "git failed"
    raise DiffError(f"{directory}: {reason}")


def _export(ref: str, top: Path, relative: str, into: Path) -> None:
    tree = f"{ref}:" if relative == "." else f"{ref}:{relative}"
    _git(["rev-parse", "--verify", "--end-of-options", f"{ref}^{{tree}}"], top, ref=ref)
    # From the top: inside a subdirectory, ls-tree also filters by the working directory.
    listing = _git(["ls-tree", "-z", "--end-of-options", tree], top, ref=ref)
    for entry in filter(None, listing.split("\0")):
        meta, _, name = entry.partition("\t")
        path = f"{tree}{name}" if relative == "." else f"{tree}/{name}"
        if meta.split()[1] == "blob" and name.endswith((".yaml", ".yml")):
            (into / name).write_text(_git(["show", path], top, ref=ref), encoding="utf-8")
        elif meta.split()[1] == "tree" and name in SUBFOLDERS:
            (into / name).mkdir()
            _export_folder(ref, top, path, into / name)


SUBFOLDERS = (MANIFESTS, RUNBOOKS)
"""The folders of a policy set that its routes name files in."""


def _export_folder(ref: str, top: Path, tree: str, into: Path) -> None:
    listing = _git(["ls-tree", "-z", "--end-of-options", tree], top, ref=ref)
    for entry in filter(None, listing.split("\0")):
        meta, _, name = entry.partition("\t")
        if meta.split()[1] == "blob" and name.endswith((".yaml", ".yml")):
            text = _git(["show", f"{tree}/{name}"], top, ref=ref)
            (into / name).write_text(text, encoding="utf-8")


def _git(args: list[str], cwd: Path, *, ref: str) -> str:
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            encoding="utf-8",
            check=True,
            timeout=30,
        )
    except FileNotFoundError:
        raise DiffError("git is not installed") from None
    except subprocess.TimeoutExpired:
        raise DiffError(f"{ref}: git did not answer within 30s") from None
    except subprocess.CalledProcessError as exc:
        reason = exc.stderr.strip().splitlines()[-1] if exc.stderr.strip() else "git failed"
        raise DiffError(f"{ref}: not a policy directory, nor a git ref here ({reason})") from None
    return done.stdout


def corpus(directory: Path, replay: Path | None = None) -> list[Sample]:
    """The test cases' alerts and the replayed ones, each alert once."""
    samples: list[Sample] = []
    tests = directory / "tests"
    if tests.is_dir():
        for case in load_cases(tests):
            for alert in case.alerts:
                where = f"{case.file}:{case.line}"
                samples.append(Sample(alert.labels, alert.annotations, alert.group_key, where))
    if replay is not None:
        samples += _replayed(replay)
    unique: dict[str, Sample] = {}
    for sample in samples:
        unique.setdefault(json.dumps([sample.labels, sample.group_key], sort_keys=True), sample)
    return list(unique.values())


def _replayed(path: Path) -> Iterable[Sample]:
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise DiffError(f"{path}: {exc.strerror}") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            notification = parse(json.loads(line))
        except (ValueError, PayloadError) as exc:
            raise DiffError(f"{path}:{number}:1: not an Alertmanager notification: {exc}") from None
        for alert in notification.alerts:
            yield Sample(
                alert.labels, alert.annotations, notification.group_key, f"{path}:{number}"
            )


def diff(base: Policy, head: Policy, samples: list[Sample]) -> tuple[str, int]:
    """The report and the number of alerts whose plan changes."""
    lines: list[str] = []
    counts = {"route": 0, "severity": 0, "actions": 0}
    changed = 0
    for sample in samples:
        before, after = (_plan(policy, sample) for policy in (base, head))
        if before == after:
            continue
        changed += 1
        lines.append(f"~ {_labels(sample.labels)}  ({sample.source})")
        for field in counts:
            old, new = getattr(before, field), getattr(after, field)
            if old != new:
                counts[field] += 1
                lines.append(f"    {field:<9} {old} -> {new}")
    summary = ", ".join(f"{field} {count}" for field, count in counts.items() if count)
    lines.append(f"{changed} of {len(samples)} alerts change" + (f": {summary}" if summary else ""))
    return "\n".join(lines), changed


def _plan(policy: Policy, sample: Sample) -> Plan:
    return Plan.of(
        evaluate(policy, sample.labels, annotations=sample.annotations, group_key=sample.group_key)
    )


def _labels(labels: dict[str, str]) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


__all__ = ["DiffError", "Sample", "corpus", "diff", "load_base"]
