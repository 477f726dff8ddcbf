"""Runs the HTTP and gRPC servers in one event loop over one ModelHub."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import threading
from typing import Optional

import uvicorn

from .config import Settings
from .grpc_service import set_health, start_grpc_server
from .http_app import create_app
from .hub import ModelHub

log = logging.getLogger(__name__)


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


class _UvicornServer(uvicorn.Server):
    """Signals are handled by ModelServer (uvicorn would re-raise SIGTERM after
    its shutdown and the process would die with -15 instead of exiting 0)."""

    @contextlib.contextmanager
    def capture_signals(self):
        yield


class ModelServer:
    """HTTP + gRPC over one hub. ``run()`` serves until ``stop()`` or a
    signal (when on the main thread)."""

    def __init__(self, settings: Settings, hub: Optional[ModelHub] = None) -> None:
        self.settings = settings
        self.hub = hub or ModelHub(settings)
        self.http_port = 0
        self.grpc_port = 0
        self._uvicorn: Optional[uvicorn.Server] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self.listening = threading.Event()

    async def run(self) -> None:
        s = self.settings
        self._loop = asyncio.get_running_loop()
        sock = _listen(s.host, s.port)
        self.http_port = sock.getsockname()[1]
        grpc_server, self.grpc_port, health = await start_grpc_server(
            self.hub, s.host, s.grpc_port)
        config = uvicorn.Config(create_app(self.hub), log_level=s.log_level, lifespan="off",
                                timeout_graceful_shutdown=5, access_log=False)
        self._uvicorn = _UvicornServer(config)
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._loop.add_signal_handler(sig, self.stop)
        serve = asyncio.ensure_future(self._uvicorn.serve(sockets=[sock]))
        log.info("HTTP listening on %s:%d", s.host, self.http_port)
        self.listening.set()  # the sockets accept (into their backlog) from here on
        try:
            if not self.hub.ready:
                await asyncio.get_running_loop().run_in_executor(None, self.hub.load)
                await set_health(health, True)
            await serve
        finally:
            if not serve.done():
                self._uvicorn.should_exit = True
                await asyncio.gather(serve, return_exceptions=True)
            await grpc_server.stop(grace=2)
            sock.close()

    def stop(self) -> None:
        """Ask run() to finish (thread-safe)."""
        if self._uvicorn is not None:
            if self._uvicorn.should_exit:  # second signal: do not wait for clients
                self._uvicorn.force_exit = True
            self._uvicorn.should_exit = True


class BackgroundServer(ModelServer):
    """ModelServer on its own thread and event loop (tests, embedding)."""

    def start(self, timeout: float = 120.0) -> "BackgroundServer":
        self._thread = threading.Thread(target=self._main, name="model-server", daemon=True)
        self._error: Optional[BaseException] = None
        self._thread.start()
        if not self.listening.wait(timeout):
            raise RuntimeError(f"server did not start: {self._error!r}")
        return self

    def _main(self) -> None:
        try:
            asyncio.run(self.run())
        except BaseException as exc:  # noqa: BLE001
            self._error = exc
            self.listening.set()
            raise

    def close(self, timeout: float = 30.0) -> None:
        self.stop()
        self._thread.join(timeout)
