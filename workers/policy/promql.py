"""A runbook's PromQL, checked offline: `policy validate` refuses what Prometheus would.

A `promql` step's query is a Jinja2 template over the alert's labels. It is rendered in
the sandbox the runner uses, over stand-in labels (every label is `x`), and the result is
parsed by promql-parser (GreptimeTeam's Rust port of Prometheus's parser, which
type-checks as Prometheus does: `rate(x)` without a range is refused). One parser, in
process, wherever the policy loads: `policy validate` in CI and the loader in the pods
give the same verdict (a promtool where one is installed would not: Debian's 2.42 and the
port disagree on newer functions, and a policy CI accepted must load in production).
tests/test_policy_promql.py checks its verdicts against Debian's promtool.

Where the port differs from promtool (measured): it refuses backslashes in raw (backtick)
strings, which Prometheus takes as they are (`` =~`.+\\.example\\.com` ``), so those are
handed to it as the equivalent double-quoted strings; it knows Prometheus 3's functions
(`histogram_avg`, `limitk`...) and no longer `holt_winters`, where promtool 2.42 is the
other way round.

Bounds: a query that renders longer than the step's own limit is refused unparsed (the
port's time grows with nesting, and ~10,000 levels overflow its stack and kill the
process), and the port runs in a thread with a stack of its own, whatever the caller's.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Mapping

import promql_parser
from jinja2 import StrictUndefined, TemplateSyntaxError

from workers.sandbox import Sandbox

MAX_RENDERED = 2000
"""Characters of a rendered query (the step's `query` holds at most as many)."""
MAX_MESSAGE = 200
PLACEHOLDER = "x"
"""Every stand-in label's value: valid in a matcher's string, a metric or a label name."""
_STACK_BYTES = 16 * 1024 * 1024
"""The port's thread: 2,000 characters need under 2 MiB (measured)."""
_STACK_LOCK = threading.Lock()
TEMPLATES = Sandbox(autoescape=False, undefined=StrictUndefined)
"""As the runner's (workers/runbook_steps.py): an unknown name fails there too."""


class StandInLabels(Mapping[str, str]):
    """Any label: `labels.service`, `labels["service"]` and `labels.get("x")` are all `x`."""

    def __getitem__(self, key: str) -> str:
        return PLACEHOLDER

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def promql_problem(query: str) -> str | None:
    """Why the query template is not PromQL Prometheus would run (one line), or None."""
    try:
        template = TEMPLATES.from_string(query)
    except TemplateSyntaxError as exc:
        return _short(f"template error: {exc.message or exc}")
    try:
        rendered = template.render(labels=StandInLabels())
    except Exception as exc:  # anything a template can raise (as the runner's, which reports)
        return _short(f"template does not render: {type(exc).__name__}: {exc}")
    if len(rendered) > MAX_RENDERED:
        return f"PromQL: renders to more than {MAX_RENDERED} characters"
    if not rendered.strip():
        return "PromQL: renders empty"
    said = _port(rendered)
    return _short(f"PromQL: {said}") if said else None


def _short(message: str) -> str:
    line = " ".join(message.split())
    return line if len(line) <= MAX_MESSAGE else line[: MAX_MESSAGE - 3] + "..."


def _port(expr: str) -> str:
    """promql-parser's complaint about `expr` ("" when it has none), in a roomy stack."""
    said: list[str] = []

    def parse() -> None:
        try:
            promql_parser.parse(_raw_strings_quoted(expr))
            said.append("")
        except BaseException as exc:  # ValueError; a Rust panic is a BaseException
            said.append(str(exc) or type(exc).__name__)

    with _STACK_LOCK:  # the size applies to threads started while it is set
        before = threading.stack_size(_STACK_BYTES)
        try:
            thread = threading.Thread(target=parse, name="promql-parse", daemon=True)
            thread.start()
        finally:
            threading.stack_size(before)
    thread.join()
    return said[0] if said else "the parser failed"


_TOKENS = re.compile(
    r'"(?:[^"\\]|\\.)*(?:"|\\?\Z)'  # a string, or one left open (it runs to the end)
    r"|'(?:[^'\\]|\\.)*(?:'|\\?\Z)"
    r"|#[^\n]*"  # a comment
    r"|`[^`]*(?:`|\Z)",  # a raw string
    re.S,
)


def _raw_strings_quoted(expr: str) -> str:
    """Backtick strings as the double-quoted strings that say the same."""

    def quoted(match: re.Match[str]) -> str:
        token = match.group(0)
        if not token.startswith("`") or len(token) < 2 or not token.endswith("`"):
            return token  # not a raw string, or one left open: as it is
        inner = token[1:-1].replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{inner}"'

    return _TOKENS.sub(quoted, expr) if "`" in expr else expr
