"""The ingress replica serving HTTP itself (``ingress.http_front: {host, port}``): a client's
connection goes straight to the process that answers it, with no Serve proxy in between.

Behind Serve's proxy every request costs two processes on its path: the proxy parses HTTP,
pickles the request to the ingress replica, and the replica calls back to the proxy for the
body and to hear of a hang-up (docs/performance.md, "The ingress serving HTTP itself"). Here
the replica runs uvicorn on the same event loop as the API, on a fixed address:

- The socket is bound with ``SO_REUSEPORT``, so several ingress replicas on one node (or a new
  one beside the one it replaces) share the port, and the kernel spreads connections over
  them; a replica that stops closes its socket first (a connection still in its accept queue
  is reset, and the client's retry reaches another) and finishes the requests it has.
- The HTTP edge is the one Serve's proxy runs (launch/http_edge.py): header time limit,
  malformed HTTP in the envelope, safe request ids, the bound on unread bodies per client.
- Request ids: the API's own ``RequestId`` middleware mints or echoes them and puts them on
  responses (app/ingress.py turns that on with a front; Serve's proxy does it otherwise).
- A client's hang-up cancels the request's handler, streamed or not (:class:`HangUpWatch`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator

import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from launch.http_edge import MAX_UNREAD_BODIES_PER_CLIENT, EdgeGuard, bound_http_parsing

logger = logging.getLogger(__name__)

# How long a stopping replica lets the requests it has finish (its socket is closed first):
# well inside Serve's graceful_shutdown_timeout_s (20 s by default), after which Serve kills
# the replica, so that the usage meter's last flush (after this) still happens.
STOP_GRACE_S = 10


class HangUpWatch:
    """Cancels a request's handler when its client hangs up before the reply is complete.

    uvicorn tells of a hang-up only through ``receive``, which a handler stops calling once it
    has the body: so once the last part of the body has been read, a watcher keeps calling it.
    A reply that completes also ends the watch (uvicorn then answers ``http.disconnect`` too,
    which is not a hang-up)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        handler = asyncio.current_task()
        assert handler is not None
        replied = False
        hung_up = False
        watcher: asyncio.Task[None] | None = None

        async def watch() -> None:
            nonlocal hung_up
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    if not replied:
                        hung_up = True
                        handler.cancel()
                    return

        async def receive_then_watch() -> Message:
            nonlocal watcher
            message = await receive()
            body_done = message["type"] != "http.request" or not message.get("more_body")
            if body_done and watcher is None and message["type"] == "http.request":
                watcher = asyncio.get_running_loop().create_task(watch())
            return message

        async def send_noting_the_end(message: Message) -> None:
            nonlocal replied
            if message["type"] == "http.response.body" and not message.get("more_body"):
                replied = True
            await send(message)

        try:
            await self.app(scope, receive_then_watch, send_noting_the_end)
        except asyncio.CancelledError:
            # The client is gone and the cancellation was ours: swallowed, unless another
            # one (the front stopping) came too.
            if not hung_up or handler.uncancel() > 0:
                raise
        finally:
            if watcher is not None and not watcher.done():
                watcher.cancel()


class HttpFront:
    """uvicorn serving ``app`` on ``host:port`` from this process's running event loop."""

    def __init__(self, app: ASGIApp, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.app = EdgeGuard(HangUpWatch(app),
                             max_unread_bodies=MAX_UNREAD_BODIES_PER_CLIENT)
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        bound_http_parsing()
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as e:
            sock.close()
            raise RuntimeError(f"The ingress cannot listen on {self.host}:{self.port}: {e}. "
                               "Another program holds the port: stop it or choose another "
                               "ingress.http_front.port.") from e
        server = _Server(uvicorn.Config(
            self.app, host=self.host, port=self.port, lifespan="off", access_log=False,
            # The client's address is the socket's: no forwarded header may change it.
            proxy_headers=False, log_config=None, log_level=None, timeout_keep_alive=90,
            timeout_graceful_shutdown=STOP_GRACE_S))
        self._server = server
        self._task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
        # Listening once uvicorn has started: the replica is not ready before.
        while not server.started:
            if self._task.done():
                self._task.result()  # its error, if it failed to start
                raise RuntimeError(f"The ingress's HTTP front on {self.host}:{self.port} "
                                   "stopped while starting.")
            await asyncio.sleep(0.01)
        logger.info("Serving HTTP on %s:%d", self.host, self.port)

    async def stop(self) -> None:
        """Stop taking connections, let the open requests finish (within a grace period)."""
        if self._server is None or self._task is None:
            return
        requests = list(self._server.server_state.tasks)
        self._server.should_exit = True
        await self._task  # uvicorn cancels the requests still open after STOP_GRACE_S ...
        if requests:  # ... and those then end (their usage metered) before the meter closes
            await asyncio.wait(requests, timeout=1)


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The replica's process and its signals are Ray's: Serve stops the replica, and the
        # replica stops the front (HttpFront.stop).
        yield
