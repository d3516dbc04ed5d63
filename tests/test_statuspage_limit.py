"""Statuspage allows one request per second per token: every worker shares one limiter."""

from __future__ import annotations

import threading

from redis import Redis

from tests.support.statuspage_standin import StatuspageStandIn
from workers.statuspage import RateLimiter, Statuspage

KEY = "sp-key-limit"


def test_workers_sharing_a_token_stay_under_one_request_per_second(redis: Redis) -> None:
    with StatuspageStandIn(page_id="pg1", api_key=KEY, min_interval=1.0) as sp:
        slot = Statuspage.limiter_key("aptest:", KEY)

        def worker(n: int) -> None:
            # Each "worker" has its own session and limiter object; only Redis is shared.
            client = Statuspage(
                base_url=sp.base_url,
                page_id="pg1",
                api_key=KEY,
                ca_bundle=sp.ca_path,
                limiter=RateLimiter(redis, slot),
            )
            client.create({"name": f"incident {n}", "status": "investigating"})

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert sp.rate_limited == 0
        assert len(sp.incidents) == 3
