"""``python -m service --artifacts DIR [--host H] [--port P]``: run the app under uvicorn.

Arguments override the ``SEATER_*`` environment; everything else (cache, limits,
batching, the reload token) comes from the environment as documented in
service.settings - secrets never go on a command line. ``main(argv)`` is importable so
that ``seater serve`` can launch the same thing by import string.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from service.settings import Settings


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m service", description="Serve a SEATER artifact bundle over HTTP."
    )
    parser.add_argument("--artifacts", help="bundle directory (env SEATER_ARTIFACTS)")
    parser.add_argument("--host", help="bind address (env SEATER_HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (env SEATER_PORT, default 8000)")
    return parser.parse_args(argv)


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Environment settings with the command-line values on top."""
    overrides = {k: v for k, v in vars(args).items() if v is not None}
    return Settings(**overrides)


def main(argv: Sequence[str] | None = None) -> None:
    import uvicorn

    from service.app import create_app
    from service.logs import configure_logging

    settings = settings_from_args(parse_args(argv))
    configure_logging(settings.log_level, settings.log_json)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,  # our JSON logging, configured above
        access_log=False,  # the request-context middleware logs each request
        timeout_graceful_shutdown=settings.graceful_shutdown_s,
        proxy_headers=True,
    )


if __name__ == "__main__":
    main()
