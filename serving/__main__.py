"""Serve a registered model: `python -m serving --model attrition --alias production`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Iterator

import uvicorn
from mlflow.tracking import MlflowClient
from pydantic import ValidationError

from logstore.database import make_engine, migrate, safe_url, wait_for
from logstore.errors import LogStoreError
from registry_scripts.access import configure_mlflow
from registry_scripts.cli import fail, problems
from serving.errors import ServingError
from serving.proxy.app import create_app
from serving.proxy.auth import parse_keys
from serving.proxy.processes import die_with_parent
from serving.proxy.runtime import Runtime
from serving.settings import ServingSettings

logger = logging.getLogger("serving")


class _Server(uvicorn.Server):
    """uvicorn, with the signals left to `serve` (uvicorn would re-raise them after shutting down)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def parse_args(argv: list[str] | None = None) -> dict[str, object]:
    """The command line, as settings overrides."""
    parser = argparse.ArgumentParser(prog="python -m serving", description=__doc__)
    parser.add_argument("--model", help="registered model name (or SERVING_MODEL)")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--alias", help="alias to serve and follow (default: production)")
    target.add_argument("--stage", help="stage to serve and follow instead: Staging or Production")
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default 8000)")
    parser.add_argument("--poll-seconds", type=float, help="how often the registry is read (default 10)")
    parser.add_argument(
        "--shadow", help="alias of a challenger to shadow-score every request with (e.g. staging)"
    )
    return {key: value for key, value in vars(parser.parse_args(argv)).items() if value is not None}


async def serve(settings: ServingSettings) -> int:
    """Run the proxy and its backend until SIGINT or SIGTERM; every child is stopped on the way out."""
    keys = parse_keys(settings.api_keys)
    engine = make_engine(settings.database_url)
    logger.info("log store: %s", safe_url(engine))
    await asyncio.to_thread(wait_for, engine, settings.database_wait_seconds)
    await asyncio.to_thread(migrate, engine)
    runtime = Runtime(settings, engine=engine, keys=keys, client=MlflowClient())
    server = _Server(
        uvicorn.Config(
            create_app(runtime), host=settings.host, port=settings.port, lifespan="off",
            access_log=False, log_config=None, timeout_graceful_shutdown=int(settings.drain_seconds),
        )
    )  # fmt: skip
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(number: int) -> None:
        stopping.set()
        server.handle_exit(number, None)

    for number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(number, on_signal, number)
    try:
        starting = asyncio.create_task(runtime.start())
        stop_wait = asyncio.create_task(stopping.wait())
        await asyncio.wait({starting, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
            return 0
        stop_wait.cancel()
        starting.result()
        logger.info(
            "serving models:/%s%s (version %s) on http://%s:%d",
            settings.model, settings.target, runtime.backend.info.version if runtime.backend else "?",
            settings.host, settings.port,
        )  # fmt: skip
        await server.serve()
        return 0 if server.started else 1
    finally:
        await runtime.close()
        engine.dispose()
        logger.info("stopped")


def event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's event loop where it is installed (not on Windows): its sockets cost a request less CPU."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def main(argv: list[str] | None = None) -> int:
    """Validate the settings, then serve."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overrides = parse_args(argv)
    # Under `mlflow run -e serve` (or any supervisor), stop with the parent instead of outliving it.
    die_with_parent()
    try:
        settings = ServingSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        return fail(problems(exc, whole="settings"))
    configure_mlflow()
    try:
        with asyncio.Runner(loop_factory=event_loop) as runner:
            return runner.run(serve(settings))
    except (ServingError, LogStoreError) as exc:
        return fail(exc.message)


if __name__ == "__main__":
    sys.exit(main())
