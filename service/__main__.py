"""``python -m service --artifacts DIR [--host H] [--port P] [--workers N]``: run the app
under uvicorn, in one process or in N worker processes behind one port
(:mod:`service.supervisor`; default: one per core this container may use).

Arguments override the ``SEATER_*`` environment; everything else (cache, limits,
batching, the reload token) comes from the environment as documented in
service.settings - secrets never go on a command line. ``main(argv)`` is importable so
that ``seater serve`` can launch the same thing by import string.

A user's mistake - a bad flag or setting, a bundle with a missing or corrupt file - is
found before the server starts and answered with one ``error:`` line and exit status 2.
No bundle at the path yet is not a mistake: the service starts, says where it looks, and
is not ready until one appears there (see :func:`service.app.create_app`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from pydantic import ValidationError

from service.model.bundle import MANIFEST, BundleError, has_bundle, load_bundle
from service.settings import Settings

CLI_FLAGS = {"artifacts": "--artifacts", "host": "--host", "port": "--port",
             "workers": "--workers"}
REEXPORT = "re-export it (`seater export --run RUN --out DIR`) or pass a complete bundle"


class UsageError(Exception):
    """What the user must change before the service can start; printed as one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see python -m service --help)")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = _Parser(
        prog="python -m service", description="Serve a SEATER artifact bundle over HTTP."
    )
    parser.add_argument("--artifacts", help="bundle directory, or a pointer to one such as "
                        "artifacts/current (env SEATER_ARTIFACTS)")
    parser.add_argument("--host", help="bind address (env SEATER_HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (env SEATER_PORT, default 8000)")
    parser.add_argument("--workers", type=int, help="worker processes (env SEATER_WORKERS, "
                        "default 0 = one per core available)")
    return parser.parse_args(argv)


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Environment settings with the command-line values on top; UsageError if invalid."""
    overrides = {k: v for k, v in vars(args).items() if v is not None}
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise UsageError(_settings_problem(exc, set(overrides))) from None


def _settings_problem(exc: ValidationError, from_cli: set[str]) -> str:
    """Pydantic's errors as one sentence naming the flag or variable to change."""
    parts = []
    for e in exc.errors():
        field = str(e["loc"][0]) if e["loc"] else ""
        msg = str(e["msg"]).removeprefix("Value error, ")
        if not field:
            parts.append(msg)
            continue
        name = CLI_FLAGS[field] if field in from_cli else f"SEATER_{field.upper()}"
        parts.append(f"{name} {e.get('input')!r}: {msg}")
    return "; ".join(parts)


def check_bundle(path: Path | None) -> None:
    """Refuse a bundle that cannot be served (files, checksums, shapes) or a folder that is
    not one; accept a path with nothing there yet (the service waits for it)."""
    if path is None:
        return
    if not has_bundle(path):
        if path.is_dir() and any(path.iterdir()):
            raise UsageError(_not_a_bundle(path))
        return
    try:
        load_bundle(path)
    except BundleError as exc:
        raise UsageError(f"bundle {path} cannot be served: {exc}; {REEXPORT}") from None


def _not_a_bundle(path: Path) -> str:
    inner = sorted(p.name for p in path.iterdir() if has_bundle(p))
    if not inner:
        return f"{path} is not a bundle (no {MANIFEST}): pass a folder written by `seater export`"
    pick = "current" if "current" in inner else inner[-1]
    return (f"{path} is not a bundle but holds {len(inner)}: {', '.join(inner)}; pass one, "
            f"e.g. --artifacts {path / pick}")


def main(argv: Sequence[str] | None = None) -> None:
    try:
        settings = settings_from_args(parse_args(argv))
        check_bundle(settings.artifacts)
    except UsageError as exc:
        sys.stderr.write(f"error: {exc}\n")
        raise SystemExit(2) from None

    import uvicorn

    from service.app import create_app
    from service.logs import configure_logging
    from service.supervisor import run_workers, worker_count

    configure_logging(settings.log_level, settings.log_json)
    workers = worker_count(settings)
    if workers > 1:
        run_workers(settings, workers)
        return
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
