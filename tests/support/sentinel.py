"""Redis under Sentinel on loopback, for failover tests: a primary, one replica and three
sentinels (quorum 2) that notice a dead primary after `DOWN_AFTER_MS`.

Every process is a real redis-server (or redis-sentinel) on a free loopback port, with
its files in the test's directory; `sentinel_cluster` kills them all however the test
ends, and every wait is bounded.
"""

from __future__ import annotations

import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from redis import Redis
from redis.exceptions import RedisError

from tests.support.redis_server import free_port

SERVICE = "apha"
QUORUM = 2
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 3000
READY_TIMEOUT_S = 20.0
FAILOVER_WAIT_S = 30.0


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} is not installed (make test installs it)")
    return found


def _ask(port: int, *command: str) -> object:
    """One command to the server or sentinel on `port`, on a connection of its own."""
    with Redis(port=port, socket_timeout=1, socket_connect_timeout=1, decode_responses=True) as c:
        return c.execute_command(*command)


def _info(port: int) -> dict[str, object]:
    """INFO replication of the server on `port`, parsed."""
    with Redis(port=port, socket_timeout=1, socket_connect_timeout=1, decode_responses=True) as c:
        found: dict[str, object] = c.info("replication")
        return found


def _wait(what: str, check: Callable[[], object], timeout: float, logs: Path) -> None:
    """Poll `check` (Redis errors count as not yet) until true; fail naming `what`,
    with the tail of every log under `logs`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except RedisError:
            pass
        time.sleep(0.05)
    tails = "\n".join(f"--- {p.name}\n{p.read_text()[-1500:]}" for p in sorted(logs.glob("*.log")))
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{tails}")


class SentinelCluster:
    """The servers and sentinels; `url` is alertpilot's REDIS_URL for them."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.server_ports = [free_port(), free_port()]
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.processes: dict[int, subprocess.Popen[bytes]] = {}
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        self.url = f"redis+sentinel://{hosts}/{SERVICE}/0"

    # --- starting -------------------------------------------------------------------

    def start(self) -> None:
        primary, replica = self.server_ports
        self._server(primary)
        self._server(replica, replica_of=primary)
        # Sentinels learn the replica from the primary's INFO on connecting: start them
        # once it is attached, or they learn it only at the next INFO, 10 s later.
        self._wait("the replica in sync", lambda: self._linked(replica))
        ids = {port: secrets.token_hex(20) for port in self.sentinel_ports}
        for port in self.sentinel_ports:
            self._sentinel(port, primary, replica, ids)
        self._wait("three sentinels that agree, with the replica", self._quorum)

    def _server(self, port: int, *, replica_of: int | None = None) -> None:
        args = [_binary("redis-server"), "--port", str(port), "--bind", "127.0.0.1"]
        args += ["--save", "", "--appendonly", "no", "--dir", str(self.workdir)]
        args += ["--repl-diskless-sync-delay", "0"]  # a replica syncs at once, not 5 s on
        args += ["--logfile", str(self.workdir / f"redis-{port}.log")]
        if replica_of is not None:
            args += ["--replicaof", "127.0.0.1", str(replica_of)]
        self._spawn(port, args)
        self._wait(f"redis-server on {port}", lambda: _ask(port, "PING"))

    def _sentinel(self, port: int, primary: int, replica: int, ids: dict[int, str]) -> None:
        """A sentinel told its peers and the replica up front (as in the config sentinels
        write themselves), not left to find them by hello messages every 2 s."""
        lines = [
            f"port {port}",
            "bind 127.0.0.1",
            f"dir {self.workdir}",
            f"logfile {self.workdir / f'sentinel-{port}.log'}",
            f"sentinel myid {ids[port]}",
            f"sentinel monitor {SERVICE} 127.0.0.1 {primary} {QUORUM}",
            f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}",
            f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}",
            f"sentinel parallel-syncs {SERVICE} 1",
            f"sentinel known-replica {SERVICE} 127.0.0.1 {replica}",
        ]
        lines += [
            f"sentinel known-sentinel {SERVICE} 127.0.0.1 {other} {ids[other]}"
            for other in self.sentinel_ports
            if other != port
        ]
        config = self.workdir / f"sentinel-{port}.conf"  # a sentinel rewrites its own
        config.write_text("\n".join(lines) + "\n")
        self._spawn(port, [_binary("redis-sentinel"), str(config)])
        self._wait(f"redis-sentinel on {port}", lambda: _ask(port, "PING"))

    def _spawn(self, port: int, args: list[str]) -> None:
        self.processes[port] = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def _linked(self, replica: int) -> bool:
        return _info(replica).get("master_link_status") == "up"

    def _quorum(self) -> bool:
        for port in self.sentinel_ports:
            replicas = _ask(port, "SENTINEL", "REPLICAS", SERVICE)
            others = _ask(port, "SENTINEL", "SENTINELS", SERVICE)
            assert isinstance(replicas, list) and isinstance(others, list)
            if len(others) != len(self.sentinel_ports) - 1 or len(replicas) != 1:
                return False
            if "OK" not in str(_ask(port, "SENTINEL", "CKQUORUM", SERVICE)):
                return False
        return True

    def _wait(
        self, what: str, check: Callable[[], object], timeout: float = READY_TIMEOUT_S
    ) -> None:
        _wait(what, check, timeout, self.workdir)

    # --- what tests do --------------------------------------------------------------

    def named_primary(self, sentinel: int) -> int | None:
        """The primary's port as the sentinel on `sentinel` names it (None: it names none)."""
        found = _ask(sentinel, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
        return int(found[1]) if isinstance(found, list) and len(found) == 2 else None

    def primary_port(self) -> int:
        """The primary's port, as the first sentinel that answers names it."""
        for port in self.sentinel_ports:
            try:
                found = self.named_primary(port)
            except RedisError:
                continue
            if found is not None:
                return found
        raise AssertionError("no sentinel names a primary")

    def wait_synced(self) -> None:
        """Until the primary's replicas acknowledge everything written to it so far."""
        port = self.primary_port()
        target = _info(port)["master_repl_offset"]

        def acknowledged() -> bool:
            info = _info(port)
            found = [v for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)]
            return bool(found) and all(int(r["offset"]) >= int(target) for r in found)  # type: ignore[call-overload]

        self._wait("the replicas to acknowledge every write", acknowledged)

    def kill_primary(self) -> int:
        """SIGKILL the primary (no shutdown, no last write); its port."""
        port = self.primary_port()
        process = self.processes.pop(port)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        return port

    @contextmanager
    def replica_cut_off(self) -> Iterator[None]:
        """While inside, the replica gets nothing more from the primary: it is stopped
        (SIGSTOP) and the primary drops its link, so the replica cannot reconnect and
        take what it missed from the backlog. Writes made meanwhile are on the primary
        only, and a client's WAIT for them blocks. The replica goes on (SIGCONT) on
        the way out."""
        primary = self.primary_port()
        replica = next(port for port in self.server_ports if port != primary)
        process = self.processes[replica]
        process.send_signal(signal.SIGSTOP)
        try:
            _ask(primary, "CLIENT", "KILL", "TYPE", "replica")
            yield
        finally:
            process.send_signal(signal.SIGCONT)

    def wait_for_failover(self, old: int, timeout: float = FAILOVER_WAIT_S) -> int:
        """Until every sentinel names the replica primary and it answers as one; its port."""
        new = next(port for port in self.server_ports if port != old)

        def switched() -> bool:
            named = [self.named_primary(port) for port in self.sentinel_ports]
            return named == [new] * len(named) and _info(new)["role"] == "master"

        self._wait(f"the failover to {new}", switched, timeout)
        return new

    def rejoin(self, port: int) -> None:
        """Start the killed server again, empty, as a replica of the current primary (as
        a restarted pod that asks the sentinels first would), until it is in sync."""
        self._server(port, replica_of=self.primary_port())
        self._wait(f"{port} in sync with the new primary", lambda: self._linked(port))

    # --- stopping -------------------------------------------------------------------

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
        for process in self.processes.values():
            process.wait(timeout=10)
        self.processes.clear()


@contextmanager
def sentinel_cluster(workdir: Path) -> Iterator[SentinelCluster]:
    """A primary, a replica and three sentinels, ready (the sentinels agree on the primary,
    know its replica and each other); every process killed on the way out."""
    workdir.mkdir(parents=True, exist_ok=True)
    cluster = SentinelCluster(workdir)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
