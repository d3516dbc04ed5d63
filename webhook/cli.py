"""`alertpilot` command line: the service's processes and the tools around them.

Every command reads its settings from the environment first and stops with one
line naming the variable when one is wrong; except `incidents` and `actions`, a
person's clients of the HTTP API (webhook/people_cli.py): they read only their URL
and token, so a broken setting of the service cannot stop them.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import ipaddress
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from webhook import failed_jobs, oncall_cli, people_cli
from webhook.policy import commands as commands_
from webhook.worker import HEARTBEAT_FILE
from workers.config import Settings, SettingsError
from workers.policy.loader import KUSTOMIZATION, PolicyError, load_policy


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    client = getattr(args, "client", None)
    if client is not None:
        done: int = client(args, os.environ)
        return done
    try:
        settings = Settings.from_env(os.environ)
    except SettingsError as exc:
        print(f"alertpilot: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    needs = getattr(args, "needs_redis", None)
    if needs and settings.redis_url is None:
        print(f"alertpilot: REDIS_URL: required for {needs}", file=sys.stderr)
        return 2
    code: int = args.run(args, settings)
    return code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="alertpilot", description=__doc__)
    parser.add_argument("--version", action="version", version=f"alertpilot {_version()}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    dev = commands.add_parser("dev", help="receiver + worker in one process tree, for a laptop")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=9095)
    dev.add_argument("--policies", type=Path, default=None, help="policy directory")
    dev.add_argument(
        "--data-dir", type=Path, default=Path(".alertpilot"), help="embedded Redis data"
    )
    dev.set_defaults(run=_dev)

    serve = commands.add_parser("serve", help="production receiver (gunicorn)")
    serve.add_argument(
        "--insecure-no-auth", action="store_true", help="accept notifications without credentials"
    )
    serve.set_defaults(run=_serve, needs_redis="serve")

    worker = commands.add_parser("worker", help="RQ worker with scheduler")
    worker.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    worker.add_argument(
        "--heartbeat-dir",
        type=Path,
        default=None,
        help=f"touch DIR/{HEARTBEAT_FILE} on every scheduler loop (a liveness probe's signal)",
    )
    worker.set_defaults(run=_worker, needs_redis="worker")

    _policy_parsers(commands)

    deploy = commands.add_parser(
        "deploy", help="Kubernetes objects made from the policy"
    ).add_subparsers(required=True, metavar="ACTION")
    rbac = deploy.add_parser(
        "rbac", help="mitigation Role and RoleBinding per allowed namespace (YAML)"
    )
    rbac.add_argument("directory", nargs="?", type=Path, default=None, help="policy directory")
    rbac.add_argument("--namespace", default="alertpilot", help="the namespace alertpilot runs in")
    rbac.set_defaults(run=_deploy_rbac)
    policies = deploy.add_parser(
        "policies", help="write DIR/kustomization.yaml, which ships the policies to the pods"
    )
    policies.add_argument(
        "--dir", type=Path, default=Path("policies"), help="policy directory (policies)"
    )
    policies.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if the file is stale"
    )
    policies.set_defaults(run=_deploy_policies)

    replay = commands.add_parser("replay", help="recorded notifications").add_subparsers(
        required=True, metavar="ACTION"
    )
    export = replay.add_parser("export", help="write them as JSON lines, oldest first")
    export.set_defaults(run=_replay_export, needs_redis="replay export")

    mitigations = commands.add_parser("mitigations", help="the kill switch").add_subparsers(
        required=True, metavar="ACTION"
    )
    pause = mitigations.add_parser("pause", help="stop every mitigation (recorded as blocked)")
    pause.add_argument("--reason", required=True, help="shown on every blocked mitigation")
    pause.set_defaults(run=_pause, needs_redis="mitigations")
    resume = mitigations.add_parser("resume", help="let mitigations run again")
    resume.set_defaults(run=_resume, needs_redis="mitigations")

    people_cli.register(commands)
    oncall_cli.register(commands)

    jobs = commands.add_parser("jobs", help="jobs that failed for good").add_subparsers(
        required=True, metavar="ACTION"
    )
    failed = jobs.add_parser("failed", help="list failed jobs with their reason")
    failed.set_defaults(run=failed_jobs.list_failed, needs_redis="jobs")
    retry = jobs.add_parser(
        "retry", help="queue failed jobs again (an effect already made is not repeated)"
    )
    retry.add_argument("job_ids", nargs="+", metavar="JOB_ID")
    retry.set_defaults(run=failed_jobs.retry, needs_redis="jobs")

    users = commands.add_parser("users", help="people's own tokens").add_subparsers(
        required=True, metavar="ACTION"
    )
    add = users.add_parser("add", help="a new token, and the users file entry that lets it in")
    add.add_argument("name", metavar="NAME")
    add.add_argument("--role", required=True, help="viewer, responder or admin")
    add.add_argument("--email", default=None)
    add.add_argument("--slack-id", default=None, help="their Slack member id (U012ABCDEF)")
    add.set_defaults(run=_users_add)
    return parser


def _version() -> str:
    try:
        return importlib.metadata.version("alertpilot")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout, not installed
        return "unknown"


def _policy_parsers(commands: Any) -> None:
    policy = commands.add_parser("policy", help="policy tooling").add_subparsers(
        required=True, metavar="ACTION"
    )
    validate = policy.add_parser("validate", help="check a policy directory")
    validate.add_argument("directory", nargs="?", type=Path, default=None)
    validate.set_defaults(
        run=lambda a, s: commands_.validate(
            a.directory or s.policies_dir, sys.stdout, sys.stderr, env=os.environ
        )
    )
    test = policy.add_parser("test", help="run the policy unit tests in DIR/tests")
    test.add_argument("directory", nargs="?", type=Path, default=None)
    test.set_defaults(
        run=lambda a, s: commands_.run_policy_tests(a.directory or s.policies_dir, sys.stdout)
    )
    explain = policy.add_parser("explain", help="why an alert gets its plan")
    source = explain.add_mutually_exclusive_group(required=True)
    source.add_argument("--labels", help="name=value[,name=value...]")
    source.add_argument("--notification", type=Path, help="an Alertmanager notification file")
    explain.add_argument("--policies", type=Path, default=None)
    explain.set_defaults(run=_explain)
    diff = policy.add_parser("diff", help="what a policy change does to recorded alerts")
    diff.add_argument("base", help="base policy directory or git ref")
    diff.add_argument("directory", nargs="?", type=Path, default=None)
    diff.add_argument("--replay", type=Path, default=None, help="notifications, JSON lines")
    diff.add_argument("--fail-on-change", action="store_true", help="exit 1 if any alert changes")
    diff.set_defaults(
        run=lambda a, s: commands_.policy_diff(
            a.base,
            a.directory or s.policies_dir,
            sys.stdout,
            sys.stderr,
            replay=a.replay,
            fail_on_change=a.fail_on_change,
            committed=s.policies_dir,
        )
    )
    schema = policy.add_parser("schema", help="print the JSON Schema of policy files")
    schema.add_argument(
        "--runbook", action="store_true", help="of a runbooks/ file (runbook.schema.json)"
    )
    schema.set_defaults(
        run=lambda a, s: print(commands_.schema("runbook" if a.runbook else "policy"), end="") or 0
    )


def _deploy_rbac(args: argparse.Namespace, settings: Settings) -> int:
    from webhook.rbac import render

    directory = args.directory or settings.policies_dir
    try:
        text = render(load_policy(directory), namespace=args.namespace)
    except PolicyError as exc:
        print(f"alertpilot: invalid policies in {directory}:\n{exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"alertpilot: --namespace: {exc}", file=sys.stderr)
        return 2
    print(text, end="")
    return 0


def _deploy_policies(args: argparse.Namespace, settings: Settings) -> int:
    from webhook import deploy_policies

    try:
        if not args.check:
            print(f"wrote {deploy_policies.write(args.dir)}")
            return 0
        problem = deploy_policies.stale(args.dir)
    except (ValueError, OSError) as exc:
        print(f"alertpilot: {exc}", file=sys.stderr)
        return 1
    if problem is None:
        print(f"{args.dir / KUSTOMIZATION} is up to date")
        return 0
    print(
        f"alertpilot: {problem}: run `alertpilot deploy policies --dir {args.dir}` "
        "and commit the result",
        file=sys.stderr,
    )
    return 1


def _explain(args: argparse.Namespace, settings: Settings) -> int:
    directory = args.policies or settings.policies_dir
    try:
        labels = commands_.parse_labels(args.labels) if args.labels else None
    except ValueError as exc:
        print(f"alertpilot: {exc}", file=sys.stderr)
        return 2
    return commands_.explain_alerts(
        directory,
        sys.stdout,
        sys.stderr,
        labels=labels,
        notification=args.notification,
        dry_run=settings.dry_run,
    )


def _pause(args: argparse.Namespace, settings: Settings) -> int:
    return _switch(settings, args.reason)


def _resume(args: argparse.Namespace, settings: Settings) -> int:
    return _switch(settings, None)


def _switch(settings: Settings, reason: str | None) -> int:
    from workers import kill_switch
    from workers.incident.keys import Keys
    from workers.redis_connection import connect

    redis, keys = connect(settings), Keys(settings.key_prefix)
    if reason is None:
        kill_switch.resume(redis, keys)
        print("mitigations resumed")
    else:
        user = os.environ.get("USER") or "unknown"
        print(f"mitigations paused: {kill_switch.pause(redis, keys, reason, by=user)}")
    return 0


def _replay_export(args: argparse.Namespace, settings: Settings) -> int:
    from redis.exceptions import RedisError

    from webhook.replay import export
    from workers.incident.keys import Keys
    from workers.redis_connection import connect

    try:
        count = export(connect(settings), Keys(settings.key_prefix), sys.stdout)
    except RedisError as exc:
        print(f"alertpilot: Redis: {type(exc).__name__}", file=sys.stderr)
        return 1
    print(f"exported {count} notifications", file=sys.stderr)
    return 0


def _users_add(args: argparse.Namespace, settings: Settings) -> int:
    from webhook.users import Person, entry_yaml, new_token

    try:
        person = Person(args.name, args.role, email=args.email, slack_id=args.slack_id)
    except ValueError as exc:
        print(f"alertpilot: {exc}", file=sys.stderr)
        return 2
    token, token_sha256 = new_token()
    print(f"token: {token}\n")
    print(entry_yaml(person, token_sha256), end="")
    print(
        f"alertpilot: the token is shown only this once: give it to {person.name} now "
        "(the users file keeps only its sha256)",
        file=sys.stderr,
    )
    return 0


def _check_policies(directory: Path, *, secrets: bool = False) -> bool:
    """Refuse to start on an invalid set; with `secrets`, on an unset secret reference too."""
    try:
        policy = load_policy(directory, env=os.environ if secrets else None)
    except PolicyError as exc:
        print(f"alertpilot: invalid policies in {directory}:\n{exc}", file=sys.stderr)
        return False
    unset = [p for p in policy.warnings if p.code == "secret"]
    for problem in unset:
        print(f"alertpilot: {problem}", file=sys.stderr)
    return not unset


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from webhook.serve import exec_gunicorn

    if not settings.auth_configured and not args.insecure_no_auth:
        print(
            "alertpilot: ALERTPILOT_WEBHOOK_TOKEN: set it (or ALERTPILOT_WEBHOOK_USERNAME and "
            "_PASSWORD), or pass --insecure-no-auth",
            file=sys.stderr,
        )
        return 2
    if settings.trusted_proxies and not settings.session_secret:
        # Each gunicorn worker would sign the page's forms with its own random key: a form
        # served by one and posted to another would be refused as cross-site.
        print(
            "alertpilot: ALERTPILOT_SESSION_SECRET: required with ALERTPILOT_TRUSTED_PROXIES "
            "(the web page's forms are signed with it across serve's processes)",
            file=sys.stderr,
        )
        return 2
    if not _check_policies(settings.policies_dir):
        return 2
    return exec_gunicorn(settings)


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    from webhook.worker import run_worker

    if not _check_policies(settings.policies_dir, secrets=not settings.dry_run):
        return 2
    return run_worker(settings, heartbeat_dir=args.heartbeat_dir, burst=args.burst)


def _dev(args: argparse.Namespace, settings: Settings) -> int:
    from webhook.dev import run_dev

    if args.policies is not None:
        settings = _replace(settings, policies_dir=args.policies)
    if not settings.auth_configured and not _loopback(args.host):
        print(
            f"alertpilot: --host {args.host}: without ALERTPILOT_WEBHOOK_TOKEN, dev listens "
            "on loopback only",
            file=sys.stderr,
        )
        return 2
    if not _check_policies(settings.policies_dir):
        return 2
    return run_dev(settings, host=args.host, port=args.port, data_dir=args.data_dir)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _replace(settings: Settings, **changes: object) -> Settings:
    from dataclasses import replace

    return replace(settings, **changes)  # type: ignore[arg-type]


if __name__ == "__main__":
    raise SystemExit(main())
