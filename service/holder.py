"""The model holder: which engine serves now, and the atomic swap behind hot reload.

A reload loads, verifies (checksums) and smoke-tests the new bundle in a thread, off
the event loop, while the old engine keeps serving. Only a fully working engine is
swapped in, by one reference assignment, so every request sees either the old or the new
model, never a mix; requests already queued keep the engine they captured at submit
time. Any failure leaves the old model in place and says why.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from service.engine import Engine, smoke_check
from service.errors import BundleRejected, Forbidden, NotReady, ReloadInProgress
from service.metrics import ServiceMetrics
from service.settings import Settings

log = logging.getLogger(__name__)

EngineLoader = Callable[[Path, Settings], Engine]
"""Builds a verified engine from a bundle directory; raises on any problem."""


@dataclass(frozen=True)
class SwapReport:
    previous_version: str | None
    version: str
    path: Path
    seconds: float


def freeze_heap() -> None:
    """Move every object alive now (the model, its catalog, the app) out of the
    collector's reach, so later full collections scan only per-request garbage.

    Measured on Beauty with 16 closed-loop users: CPython's gen-2 collections over the
    loaded heap were the whole p99 tail (60 ms at p50 18 ms); frozen, p99 is ~25 ms.
    Objects of a replaced model are still freed by reference counting.
    """
    gc.collect()
    gc.freeze()


class ModelHolder:
    """Holds the serving engine; ``reload`` replaces it atomically or not at all."""

    def __init__(self, loader: EngineLoader, settings: Settings, metrics: ServiceMetrics) -> None:
        self._loader = loader
        self._settings = settings
        self._metrics = metrics
        self._engine: Engine | None = None
        self._path: Path | None = None
        self._lock = asyncio.Lock()

    @property
    def engine(self) -> Engine | None:
        return self._engine

    @property
    def ready(self) -> bool:
        return self._engine is not None

    def require(self) -> Engine:
        """The serving engine, or NotReady (503) while none is loaded."""
        engine = self._engine
        if engine is None:
            raise NotReady("no model is loaded yet; retry shortly")
        return engine

    def _load_verified(self, path: Path) -> Engine:
        engine = self._loader(path, self._settings)
        smoke_check(engine)
        return engine

    def _resolve(self, path: str | Path | None) -> Path:
        if path is None:
            current = self._path or self._settings.artifacts
            if current is None:
                raise BundleRejected("no bundle path given and SEATER_ARTIFACTS is not set")
            return Path(current).resolve()
        resolved = Path(path).resolve()
        root = self._settings.effective_reload_root
        if root is not None and not resolved.is_relative_to(root):
            raise Forbidden(f"bundle path {resolved} is outside the reload root {root}")
        return resolved

    async def load(self, path: str | Path | None = None) -> SwapReport:
        """Load, verify and smoke-test a bundle, then swap it in; keep the old on failure."""
        if self._lock.locked():
            raise ReloadInProgress("a reload is already running; try again when it finishes")
        async with self._lock:
            resolved = self._resolve(path)
            previous = self._engine
            t0 = time.perf_counter()
            try:
                engine = await asyncio.to_thread(self._load_verified, resolved)
            except Exception as exc:
                self._metrics.reloads.labels(outcome="failed").inc()
                kept = f"still serving {previous.version}" if previous else "no model loaded"
                log.error("bundle %s rejected (%s): %s", resolved, kept, exc)
                raise BundleRejected(f"bundle {resolved} rejected ({kept}): {exc}") from exc
            self._engine = engine  # the atomic swap
            if self._settings.gc_freeze:
                freeze_heap()
            self._path = resolved
            self._metrics.set_model_version(engine.version)
            self._metrics.reloads.labels(outcome="success").inc()
            seconds = time.perf_counter() - t0
            before = previous.version if previous else None
            log.info(
                "serving model %s from %s (was %s, %.2fs)",
                engine.version,
                resolved,
                before,
                seconds,
            )
            # The old engine is not closed here: queued jobs may still hold it; its
            # sessions are released when the last reference goes.
            return SwapReport(before, engine.version, resolved, seconds)

    def close(self) -> None:
        """Release the serving engine at shutdown (after the batcher drained)."""
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.close()
