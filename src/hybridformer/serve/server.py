"""Run the app under uvicorn: in the foreground (``hybridformer serve``) or in a thread (tests, benchmarks)."""

from __future__ import annotations

import importlib.util
import logging
import signal
import threading
import time

import uvicorn

from hybridformer.config import ConfigError
from hybridformer.serve.app import create_app
from hybridformer.serve.config import ServeConfig
from hybridformer.serve.models import ServedModel

__all__ = ["serve", "ServerThread", "uvicorn_config", "http_stack"]

log = logging.getLogger("hybridformer.serve")


def http_stack(choice: str) -> tuple[str, str]:
    """uvicorn's (loop, http) for ServeConfig.http_stack: ("uvloop", "httptools") or ("asyncio", "h11").

    Raises:
        ConfigError: ``fast`` was asked for and uvloop or httptools is not installed.
    """
    missing = [name for name in ("uvloop", "httptools") if importlib.util.find_spec(name) is None]
    if choice == "asyncio":
        return "asyncio", "h11"
    if not missing:
        return "uvloop", "httptools"
    if choice == "fast":
        raise ConfigError(f"http_stack: fast needs {' and '.join(missing)} (pip install {' '.join(missing)}), "
                          f"or use auto / asyncio")
    log.warning("%s not installed: serving with asyncio + h11 (more CPU per request)", " and ".join(missing))
    return "asyncio", "h11"


def uvicorn_config(models: list[ServedModel], config: ServeConfig) -> uvicorn.Config:
    """uvicorn settings: our app, one process, graceful shutdown bounded by drain_timeout_s."""
    loop, http = http_stack(config.http_stack)
    return uvicorn.Config(
        create_app(models, config), host=config.host, port=config.port, log_level="warning", loop=loop, http=http,
        timeout_graceful_shutdown=config.drain_timeout_s, timeout_keep_alive=config.keep_alive_s,
        access_log=False, lifespan="on",
    )


def _exit_quietly(signum: int, frame: object) -> None:
    raise SystemExit(0)


def serve(models: list[ServedModel], config: ServeConfig) -> None:
    """Serve until SIGINT/SIGTERM, then drain: stop accepting, finish in-flight requests, exit.

    uvicorn re-raises the signal once it has drained; the handlers installed here turn that into a
    normal exit (status 0) rather than a death by signal or a KeyboardInterrupt trace.
    """
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _exit_quietly)
    uvicorn.Server(uvicorn_config(models, config)).run()


class ServerThread:
    """A real uvicorn server on 127.0.0.1 in a background thread.

    ``with ServerThread(models, config) as server: httpx.get(server.url + "/health")``; leaving
    the block shuts it down gracefully (the same path as SIGTERM) and joins the thread.
    """

    def __init__(self, models: list[ServedModel], config: ServeConfig) -> None:
        self.config = config
        self.server = uvicorn.Server(uvicorn_config(models, config))
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)

    @property
    def app(self):
        return self.server.config.app

    @property
    def url(self) -> str:
        sockets = self.server.servers[0].sockets
        host, port = sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    def start(self, timeout: float = 30.0) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)

    def __enter__(self) -> ServerThread:
        return self if self.thread.is_alive() else self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
