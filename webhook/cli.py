"""`alertpilot` command line: dev, serve, worker, policy validate.

Every command reads its settings from the environment first and stops with one
line naming the variable when one is wrong.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from webhook.policy.loader import PolicyError, load_policy
from webhook.settings import Settings, SettingsError


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env(os.environ)
    except SettingsError as exc:
        print(f"alertpilot: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    code: int = args.run(args, settings)
    return code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="alertpilot", description=__doc__)
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
    serve.set_defaults(run=_serve)

    worker = commands.add_parser("worker", help="RQ worker with scheduler")
    worker.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    worker.set_defaults(run=_worker)

    policy = commands.add_parser("policy", help="policy tooling").add_subparsers(
        required=True, metavar="ACTION"
    )
    validate = policy.add_parser("validate", help="check a policy directory")
    validate.add_argument("directory", nargs="?", type=Path, default=None)
    validate.set_defaults(run=_validate)
    return parser


def _validate(args: argparse.Namespace, settings: Settings) -> int:
    directory: Path = args.directory or settings.policies_dir
    try:
        policy = load_policy(directory)
    except PolicyError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"{len(exc.problems)} problem(s) in {directory}", file=sys.stderr)
        return 1
    print(
        f"{directory}: OK ({len(policy.severities)} severities, {len(policy.routes)} routes, "
        f"hash {policy.content_hash[:12]})"
    )
    return 0


def _check_policies(directory: Path) -> bool:
    try:
        load_policy(directory)
    except PolicyError as exc:
        print(f"alertpilot: invalid policies in {directory}:\n{exc}", file=sys.stderr)
        return False
    return True


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from webhook.serve import exec_gunicorn

    if settings.redis_url is None:
        print("alertpilot: REDIS_URL: required for serve", file=sys.stderr)
        return 2
    if not settings.auth_configured and not args.insecure_no_auth:
        print(
            "alertpilot: ALERTPILOT_WEBHOOK_TOKEN: set it (or ALERTPILOT_WEBHOOK_USERNAME and "
            "_PASSWORD), or pass --insecure-no-auth",
            file=sys.stderr,
        )
        return 2
    if not _check_policies(settings.policies_dir):
        return 2
    return exec_gunicorn(settings)


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    from webhook.worker import run_worker

    if settings.redis_url is None:
        print("alertpilot: REDIS_URL: required for worker", file=sys.stderr)
        return 2
    return run_worker(settings.redis_url, settings.queue_name, burst=args.burst)


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
