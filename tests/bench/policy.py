"""Policy evaluation benchmark: per-alert cost as the number of routes grows.

Run with `make bench`. For 10, 100, 1,000 and 10,000 routes it reports the
median time of `evaluate` for one alert, and the ratio to the 10-route set
measured in the same run (flat is the goal), next to a full scan of every
route as the baseline the index is there to beat. Target: below 20 us median
at 1,000 routes.
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from pathlib import Path

from workers.policy import Policy, evaluate, load_policy

SIZES = (10, 100, 1_000, 10_000)
ALERTS = 5_000
SEVERITIES = """\
severities:
  SEV1: {name: High, response_time: 15m}
  SEV2: {name: Medium, response_time: 1h}
default: {severity: SEV2, actions: [notify]}
"""


def write_routes(directory: Path, count: int) -> None:
    """Routes like a large organisation's: one alert name each, scoped by service.

    One in fifty is a team route with no alertname matcher, so the index has
    a second level (team) to merge in. Every route is distinct: policy
    validation rejects routes an earlier one shadows.
    """
    lines = ["routes:"]
    for i in range(count):
        if i % 50 == 49:
            matchers = [f'team="team-{i}"', 'severity=~"critical|page"']
        else:
            matchers = [f'alertname="Alert{i}"', f'service=~"svc-{i % 40}|svc-{(i + 1) % 40}"']
        quoted = ", ".join(f"'{m}'" for m in matchers)
        lines.append(f"  - name: r{i}\n    matchers: [{quoted}]\n    severity: SEV{1 + i % 2}")
        lines.append(f"    actions: [page, notify, {{scale_up: {{by: {1 + i % 3}}}}}]")
    (directory / "00-severities.yaml").write_text(SEVERITIES)
    (directory / "10-routes.yaml").write_text("\n".join(lines) + "\n")


def alerts(count: int, routes: int, rng: random.Random) -> list[dict[str, str]]:
    return [
        {
            "alertname": f"Alert{rng.randrange(routes * 2)}",  # half match no route
            "service": f"svc-{rng.randrange(40)}",
            "team": f"team-{rng.randrange(10)}",
            "severity": rng.choice(["critical", "warning"]),
            "namespace": "production",
        }
        for _ in range(count)
    ]


def per_alert(policy: Policy, sample: list[dict[str, str]], *, full_scan: bool) -> float:
    times = []
    for labels in sample:
        start = time.perf_counter()
        if full_scan:
            next((r for r in policy.routes if r.matches(labels)), policy.default)
        else:
            evaluate(policy, labels, group_key="g")
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    rng = random.Random(1)
    print(f"policy evaluation benchmark, median per alert over {ALERTS} alerts")
    print(f"  {'routes':>7} {'indexed':>10} {'vs 10':>7} {'full scan':>11}")
    base = None
    for size in SIZES:
        with tempfile.TemporaryDirectory() as directory:
            write_routes(Path(directory), size)
            policy = load_policy(Path(directory))
        sample = alerts(ALERTS, size, rng)
        indexed = per_alert(policy, sample, full_scan=False)
        scan = per_alert(policy, sample[:500], full_scan=True)
        base = base or indexed
        print(f"  {size:>7} {indexed * 1e6:8.1f} us {indexed / base:6.2f}x {scan * 1e6:8.1f} us")


if __name__ == "__main__":
    main()
