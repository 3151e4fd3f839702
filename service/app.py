"""The app factory and its lifespan: nothing is built at import time.

``create_app(settings, engine_loader=...)`` wires routes, error mapping and middleware;
the lifespan builds the model holder (loading the bundle), the cache client and the
micro-batcher on ``app.state`` and closes them in reverse order after uvicorn has let
in-flight requests finish. With no bundle at SEATER_ARTIFACTS yet, the app starts live but
not ready and loads the bundle when one appears there. Tests inject a fake
``engine_loader``; production uses :func:`service.model.load.load_engine`. ``factory()`` is
the uvicorn ``--factory`` entry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from service.api.middleware import BodySizeLimitMiddleware, RequestContextMiddleware
from service.api.routes import admin, health, model, retrieve
from service.api.routes import metrics as metrics_routes
from service.core.batcher import MicroBatcher
from service.core.cache import build_cache
from service.core.holder import EngineLoader, ModelHolder
from service.core.retrieval import Retriever
from service.core.workers import GroupMember, WorkerGroup
from service.errors import install_error_handlers
from service.logs import configure_logging
from service.metrics import ServiceMetrics
from service.model.bundle import has_bundle
from service.model.engine import Engine
from service.settings import Settings

log = logging.getLogger(__name__)


def onnx_loader(path: Path, settings: Settings) -> Engine:
    """Default loader: the ONNX Runtime engine (imported here so tests need no bundle)."""
    from service.model.load import load_engine

    return load_engine(path, settings)


def create_app(
    settings: Settings | None = None, engine_loader: EngineLoader | None = None
) -> FastAPI:
    """Build one service instance. ``settings`` default: read from the environment."""
    settings = settings or Settings()
    loader = engine_loader or onnx_loader
    metrics = ServiceMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        holder = ModelHolder(loader, settings, metrics)
        cache = build_cache(settings, metrics)
        batcher = MicroBatcher(
            cache,
            metrics,
            max_batch_size=settings.max_batch_size,
            max_wait_s=settings.max_wait_ms / 1000.0,
            queue_size=settings.queue_size,
            workers=settings.batch_workers,
            retry_after_s=settings.retry_after_s,
            cache_prefix=settings.cache_prefix,
        )
        member = _member(holder, settings)
        app.state.holder = holder
        app.state.cache = cache
        app.state.batcher = batcher
        app.state.member = member
        app.state.retriever = Retriever(holder, batcher, settings)
        tasks: list[asyncio.Task[None]] = []
        try:
            # a worker started after a reload serves the group's bundle, not SEATER_ARTIFACTS
            if not (member is not None and await member.start()):
                tasks += await _first_load(holder, settings)
            if member is not None:
                tasks.append(asyncio.create_task(member.follow()))
            batcher.start()
            log.info("service started (cache: %s)", cache.backend)
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await batcher.close(settings.drain_timeout_s)
            await cache.close()
            holder.close()
            if member is not None:
                member.leave()
            metrics.close()
            log.info("service stopped")

    app = FastAPI(
        title="SEATER retrieval",
        version="1",
        description="Generative retrieval: top-n items for a user history by constrained "
        "beam search over a balanced tree of item IDs.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    install_error_handlers(app)
    for router in (retrieve.router, model.router, health.router, metrics_routes.router):
        app.include_router(router)
    if settings.reload_enabled:
        app.include_router(admin.router)
    # Added last = outermost: the request id is set before the body limit can answer.
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestContextMiddleware, metrics=metrics)
    return app


async def _first_load(holder: ModelHolder, settings: Settings) -> list[asyncio.Task[None]]:
    """Load SEATER_ARTIFACTS now, or start waiting for a bundle to appear there."""
    if settings.artifacts is None:
        log.warning("SEATER_ARTIFACTS is not set: not ready until a reload loads a model")
    elif has_bundle(settings.artifacts):
        await holder.load()
    else:
        return [asyncio.create_task(holder.wait_for_bundle(settings.artifacts_poll_s))]
    return []


def _member(holder: ModelHolder, settings: Settings) -> GroupMember | None:
    """This process's place among the container's workers; None when it serves alone."""
    if settings.state_dir is None:
        return None
    group = WorkerGroup(settings.state_dir, expected=max(settings.workers, 1))
    return GroupMember(holder, group, settings.group_poll_s, settings.reload_sync_timeout_s)


def factory() -> FastAPI:
    """``uvicorn --factory service.app:factory``: settings from env, logging configured."""
    settings = Settings()
    configure_logging(settings.log_level, settings.log_json)
    return create_app(settings)
