"""The model holder: which engine serves now, and the atomic swap behind hot reload.

A reload loads, verifies (checksums) and smoke-tests the new bundle in a thread, off
the event loop, while the old engine keeps serving. Only a fully working engine is
swapped in, by one reference assignment, so every request sees either the old or the new
model, never a mix; requests already queued keep the engine they captured at submit
time. Any failure leaves the old model in place and says why.

Bundle paths may be pointers (``artifacts/current``, a symlink the exporter moves): each
load follows the pointer anew, so a reload without a path picks up the latest export.
A service started before its first export waits for one (:meth:`ModelHolder.wait_for_bundle`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from service.errors import BundleRejected, Forbidden, NotReady, ReloadInProgress, ServiceError
from service.metrics import ServiceMetrics
from service.model.bundle import MANIFEST, has_bundle
from service.model.engine import Engine, smoke_check
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

    Under load, CPython's full collections over the loaded heap were the p99 latency
    tail. Objects of a replaced model are still freed by reference counting.
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

    @property
    def busy(self) -> bool:
        """A load is running."""
        return self._lock.locked()

    @property
    def path(self) -> Path | None:
        """The bundle path last asked for (may be a pointer such as artifacts/current)."""
        return self._path

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

    def _resolve(self, path: str | Path | None) -> tuple[Path, Path]:
        """(the path asked for, the bundle folder it leads to now). No path: the last one
        asked for, else SEATER_ARTIFACTS."""
        if path is None:
            asked = self._path or self._settings.artifacts
            if asked is None:
                raise BundleRejected("no bundle path given and SEATER_ARTIFACTS is not set")
            return Path(asked), Path(asked).resolve()
        resolved = Path(path).resolve()
        root = self._settings.effective_reload_root
        if root is not None and not resolved.is_relative_to(root):
            raise Forbidden(f"bundle path {resolved} is outside the reload root {root}")
        return Path(path), resolved

    async def load(self, path: str | Path | None = None, *,
                   folder: Path | None = None) -> SwapReport:
        """Load, verify and smoke-test a bundle, then swap it in; keep the old on failure.

        ``folder``: load this bundle folder but remember ``path`` as the one asked for (a
        worker following a reload that another worker resolved: the pointer may have
        moved since, and every worker must load the same bundle).
        """
        if self._lock.locked():
            raise ReloadInProgress("a reload is already running; try again when it finishes")
        async with self._lock:
            asked, resolved = self._resolve(path)
            if folder is not None:
                resolved = folder
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
            self._path = asked
            self._metrics.set_model_version(engine.version)
            self._metrics.reloads.labels(outcome="success").inc()
            seconds = time.perf_counter() - t0
            before = previous.version if previous else None
            where = str(resolved) if asked.absolute() == resolved else f"{asked} -> {resolved}"
            log.info("serving model %s from %s (was %s, %.2fs)", engine.version, where, before,
                     seconds)
            # The old engine is not closed here: queued jobs may still hold it; its
            # sessions are released when the last reference goes.
            return SwapReport(before, engine.version, resolved, seconds)

    async def wait_for_bundle(self, poll_s: float) -> None:
        """Until a model serves: load SEATER_ARTIFACTS as soon as a bundle is there.

        For a service that comes up before its first export (a container whose
        ``artifacts/current`` does not exist yet): it stays live and not ready meanwhile.
        A bundle that fails to load is tried again only once its manifest changes, so a
        broken export is logged once, not at every poll. A reload may win the race.
        """
        path = self._settings.artifacts
        if path is None:
            return
        log.warning("no bundle at %s yet: not ready until one is exported there "
                    "(looking every %gs)%s", _describe(path), poll_s, _siblings(path))
        tried = None
        while self._engine is None:
            stamp = _manifest_stamp(path)
            if stamp is not None and stamp != tried and not self._lock.locked():
                tried = stamp
                with contextlib.suppress(ServiceError):  # load() logged why
                    await self.load()
            await asyncio.sleep(poll_s)

    def close(self) -> None:
        """Release the serving engine at shutdown (after the batcher drained)."""
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.close()


def _manifest_stamp(path: Path) -> tuple[str, int] | None:
    """Which manifest the path leads to now, and its mtime; None while there is none."""
    try:
        manifest = (path / MANIFEST).resolve(strict=True)
        return str(manifest), manifest.stat().st_mtime_ns
    except OSError:
        return None


def _describe(path: Path) -> str:
    """``path``, and where it leads when it is (or passes through) a pointer."""
    absolute = path.absolute()
    target = path.resolve()
    return str(absolute) if target == absolute else f"{absolute} (-> {target})"


def _siblings(path: Path) -> str:
    """The bundles next to ``path``, in case it was mistyped; empty when there are none."""
    try:
        found = sorted(p.name for p in path.absolute().parent.iterdir() if has_bundle(p))
    except OSError:
        return ""
    return f"; bundles next to it: {', '.join(found)}" if found else ""
