"""The receiver's gunicorn worker: gthread, where no client holds a thread or the main loop
for longer than the read timeout.

What gunicorn 27's gthread does, and what changes here:

- It hands every accepted connection to a thread, which waits up to 5 s for a first
  byte before giving it back to the poller: idle connections delay everyone. Here a new
  connection waits on the poller (a file descriptor, no thread) and is closed if it
  sends nothing within the read timeout.
- It reads a request with blocking calls and no timeout, and the worker's heartbeat
  comes from its main loop, so `timeout` never ends a thread stuck there: a client
  sending half its headers, or its body a byte a second, holds a thread for good. Here
  a client has the read timeout, from connecting (or, kept alive, from its next
  request's first byte), to send headers and body. A read past it sees the end of the
  stream: unfinished headers end the connection quietly, a short body gets werkzeug's
  400, and a warning names the client.
- It closes a connection on its main loop, lingering up to 2 s for the client's FIN
  (RFC 9112 section 9.6): a client that never closes stops everything for 2 s. Here
  the linger happens on the poller.

So a slow client holds a thread for the read timeout at most, and only
`ALERTPILOT_WEB_THREADS` of them at once (per worker) delay the others at all.
"""

from __future__ import annotations

import contextlib
import errno
import selectors
import socket
import time
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Any

from gunicorn import util
from gunicorn.http.unreader import SocketUnreader
from gunicorn.workers.gthread import TConn, ThreadWorker

LINGER_S = 2.0
"""How long a closing connection waits for the client's FIN (gunicorn's own figure)."""
LINGER_DRAIN_BYTES = 64 * 1024
"""What a closing connection reads and discards at most while it waits."""


class Connection(TConn):  # type: ignore[misc]
    """A client connection whose requests must arrive within `read_timeout`."""

    def __init__(
        self,
        cfg: Any,
        sock: socket.socket,
        client: Any,
        server: Any,
        *,
        read_timeout: float,
        linger: Callable[[Connection], None],
    ) -> None:
        super().__init__(cfg, sock, client, server)
        self.read_timeout = read_timeout
        self.linger = linger
        self.deadline = 0.0
        self.expired = False
        """A read hit the deadline: the client was cut off."""
        self.drained = 0
        self.expect_request()

    def expect_request(self) -> None:
        """The next request must be read whole within the read timeout from now."""
        self.deadline = time.monotonic() + self.read_timeout

    def init(self) -> None:
        """gunicorn's set-up (parser, TLS), then its socket reads bounded by the deadline."""
        fresh = self.parser is None
        super().init()
        if fresh and type(self.parser.unreader) is SocketUnreader:
            bounded = BoundedReader(self)
            bounded.buf = self.parser.unreader.buf
            self.parser.unreader = bounded

    def close(self, graceful: bool = False) -> None:
        if graceful:
            self.linger(self)
        else:
            util.close(self.sock)


class BoundedReader(SocketUnreader):  # type: ignore[misc]
    """gunicorn's socket reader; a read past the connection's deadline sees end of stream."""

    def __init__(self, conn: Connection) -> None:
        super().__init__(conn.sock)
        self.conn = conn

    def chunk(self, size_hint: int | None = None) -> bytes:
        remaining = self.conn.deadline - time.monotonic()
        if remaining <= 0:
            return self._expire()
        previous = self.sock.gettimeout()  # gunicorn's own, while it drains a body
        self.sock.settimeout(remaining if previous is None else min(previous, remaining))
        try:
            data: bytes = super().chunk(size_hint)
        except TimeoutError:
            if time.monotonic() < self.conn.deadline:
                raise
            return self._expire()
        finally:
            self.sock.settimeout(previous)
        return data

    def _expire(self) -> bytes:
        """End of stream from now on, for gunicorn and for the close that follows."""
        self.conn.expired = True
        with contextlib.suppress(OSError):  # already gone
            self.sock.shutdown(socket.SHUT_RD)
        return b""


class ReceiverWorker(ThreadWorker):  # type: ignore[misc]
    """gthread, changed as the module says; `serve` gives it `ALERTPILOT_WEB_THREADS`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        from webhook.wsgi import settings  # preloaded in the master, as the app is

        self.read_timeout = settings.web_read_timeout_seconds
        self.lingering: deque[Connection] = deque()

    def accept(self, listener: socket.socket) -> None:
        """Park the new connection on the poller until it sends something."""
        try:
            sock, client = listener.accept()
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                return
            raise
        self.nr_conns += 1
        conn = Connection(
            self.cfg,
            sock,
            client,
            listener.getsockname(),
            read_timeout=self.read_timeout,
            linger=self.linger,
        )
        # murder_pending closes it at its deadline. Every connection parked here has the
        # same timeout from accept, so the deque stays in deadline order, as it expects.
        conn.timeout = conn.deadline
        self.pending_conns.append(conn)
        self.poller.register(
            sock, selectors.EVENT_READ, partial(self.on_pending_socket_readable, conn)
        )

    def enqueue_req(self, conn: Connection) -> None:
        """A kept-alive connection's next request (readable again, or read ahead) starts its
        own deadline; a new connection's counts from accept."""
        if conn.initialized:
            conn.expect_request()
        super().enqueue_req(conn)

    def handle(self, conn: Connection) -> Any:
        result = super().handle(conn)
        if not conn.expired:
            return result
        self.log.warning(
            "closed %s: no whole request within ALERTPILOT_WEB_READ_TIMEOUT (%gs)",
            conn.client,
            conn.read_timeout,
        )
        return False

    def linger(self, conn: Connection) -> None:
        """Send FIN, then wait on the poller for the client's (main loop only)."""
        try:
            conn.sock.shutdown(socket.SHUT_WR)
            conn.sock.setblocking(False)
        except OSError:
            util.close(conn.sock)
            return
        conn.timeout = time.monotonic() + LINGER_S
        self.lingering.append(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.drain, conn))

    def drain(self, conn: Connection, sock: socket.socket) -> None:
        try:
            data = sock.recv(LINGER_DRAIN_BYTES)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        conn.drained += len(data)
        if not data or conn.drained >= LINGER_DRAIN_BYTES:
            self.end_linger(conn)

    def end_linger(self, conn: Connection) -> None:
        self.lingering.remove(conn)
        self.poller.unregister(conn.sock)
        util.close(conn.sock)

    def murder_pending(self) -> None:
        """gunicorn's sweep of idle new connections, then of lingering ones (same order)."""
        super().murder_pending()
        now = time.monotonic()
        while self.lingering and self.lingering[0].timeout <= now:
            self.end_linger(self.lingering[0])
