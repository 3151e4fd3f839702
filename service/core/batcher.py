"""Asyncio micro-batcher: concurrent retrievals are gathered and decoded as one batch.

The pattern is Ray Serve's batch queue: a bounded ``asyncio.Queue`` of (job, Future);
a worker takes the first job, then keeps taking until ``max_batch_size`` jobs or
``max_wait_s`` have passed, and runs the batch: one cache lookup, then ONE encoder call
for the misses and ONE beam search (requests with different filters included: each
distinct filter is one mask row), together in a worker thread so the event loop keeps
accepting requests meanwhile. Output length is checked against the batch length, and any
failure is set on every waiting future. A full queue is refused at once (503 +
Retry-After) rather than turned into unbounded latency, and ``close`` drains the queue
so in-flight requests finish during a graceful shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from service.core.cache import StateCache, cache_key
from service.errors import InternalError, NotReady, Overloaded, ServiceError
from service.metrics import ServiceMetrics
from service.model.engine import EncoderState, Engine, SearchHit

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobResult:
    hit: SearchHit
    cached: bool


@dataclass(eq=False)
class Job:
    """One retrieval waiting for its batch. ``engine`` is fixed at submit time."""

    engine: Engine
    history: np.ndarray  # int64 [T] truncated item indices, oldest first
    n: int
    beam: int
    exclude: np.ndarray  # int64 [E] item indices
    future: asyncio.Future[JobResult]
    allowed: np.ndarray | None = None  # bool [n_items] the filter's mask (None: no filter)
    enqueued_at: float = field(default_factory=time.perf_counter)


def batch_masks(jobs: list[Job], n_items: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The batch's distinct filter masks and each job's row, for ONE search.

    Jobs share a row when they hold the same mask object (the catalog's LRU hands equal
    filters the same array); unfiltered jobs share an all-true row, and a batch without
    filters gets ``(None, None)``, the search's unmasked path.
    Shape: -> allowed bool [M, n_items], allowed_of int64 [B].
    """
    if all(j.allowed is None for j in jobs):
        return None, None
    rows: dict[int, int] = {}
    masks: list[np.ndarray] = []
    of = np.empty(len(jobs), np.int64)
    for b, job in enumerate(jobs):
        key = id(job.allowed)
        if key not in rows:
            rows[key] = len(masks)
            masks.append(np.ones(n_items, bool) if job.allowed is None else job.allowed)
        of[b] = rows[key]
    return np.stack(masks), of


class MicroBatcher:
    """Gathers jobs into micro-batches and runs them on an engine, off the event loop."""

    def __init__(
        self,
        cache: StateCache,
        metrics: ServiceMetrics,
        *,
        max_batch_size: int,
        max_wait_s: float,
        queue_size: int,
        workers: int = 1,
        retry_after_s: int = 1,
        cache_prefix: str = "seater:enc:",
    ) -> None:
        self.cache = cache
        self.metrics = metrics
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.retry_after_s = retry_after_s
        self.cache_prefix = cache_prefix
        self._queue: asyncio.Queue[Job] = asyncio.Queue(maxsize=queue_size)
        self._n_workers = workers
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="seater-eng")
        self._workers: list[asyncio.Task[None]] = []
        self._writes: set[asyncio.Task[None]] = set()
        self._closing = False

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Start the worker tasks on the running loop."""
        if self._workers:
            return
        self._workers = [
            asyncio.create_task(self._worker(), name=f"seater-batcher-{i}")
            for i in range(self._n_workers)
        ]

    async def close(self, drain_timeout_s: float) -> None:
        """Refuse new jobs, finish queued and running ones (up to the timeout), stop."""
        self._closing = True
        try:
            await asyncio.wait_for(self._queue.join(), timeout=drain_timeout_s)
        except TimeoutError:
            log.warning("drain timed out with %d jobs queued", self._queue.qsize())
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        while not self._queue.empty():  # only after a drain timeout
            job = self._queue.get_nowait()
            if not job.future.done():
                job.future.set_exception(NotReady("service is shutting down"))
        await self.settle_writes()
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def settle_writes(self) -> None:
        """Wait for the cache write-backs scheduled so far (they run off the response path)."""
        if self._writes:
            await asyncio.gather(*list(self._writes), return_exceptions=True)

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

    # -- producer side ---------------------------------------------------------------------
    async def submit(
        self, engine: Engine, history: np.ndarray, n: int, beam: int, exclude: np.ndarray,
        allowed: np.ndarray | None = None,
    ) -> JobResult:
        """Queue one retrieval and wait for its batch. Raises Overloaded when full.

        ``allowed``: bool [n_items] the items a filter lets through (None: all).
        """
        if self._closing:
            raise NotReady("service is shutting down", self.retry_after_s)
        future: asyncio.Future[JobResult] = asyncio.get_running_loop().create_future()
        job = Job(engine, history, n, beam, exclude, future, allowed)
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            self.metrics.overload_rejections.inc()
            raise Overloaded(
                f"retrieval queue is full ({self._queue.maxsize} waiting); retry later",
                self.retry_after_s,
            ) from None
        self.metrics.queue_depth.set(self._queue.qsize())
        return await future

    # -- consumer side ---------------------------------------------------------------------
    async def _collect(self) -> list[Job]:
        """Wait for one job, then gather more until the batch is full or the wait is over."""
        batch = [await self._queue.get()]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait_s
        while len(batch) < self.max_batch_size:
            try:
                batch.append(self._queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except TimeoutError:
                break
        return batch

    async def _worker(self) -> None:
        while True:
            batch = await self._collect()
            self.metrics.queue_depth.set(self._queue.qsize())
            try:
                # A hot reload can leave jobs of two engines in one batch: run each apart.
                by_engine: dict[int, list[Job]] = {}
                for job in batch:
                    by_engine.setdefault(id(job.engine), []).append(job)
                for jobs in by_engine.values():
                    await self._run(jobs)
            except asyncio.CancelledError:  # stopped after a drain timeout: answer, then stop
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(NotReady("service is shutting down"))
                raise
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _run(self, jobs: list[Job]) -> None:
        """Run one single-engine batch; resolve every job's future one way or the other."""
        start = time.perf_counter()
        for job in jobs:
            self.metrics.queue_wait_seconds.observe(start - job.enqueued_at)
        jobs = [j for j in jobs if not j.future.done()]  # callers that gave up
        if not jobs:
            return
        self.metrics.batch_size.observe(len(jobs))
        engine = jobs[0].engine
        try:
            keys = [cache_key(self.cache_prefix, engine.version, j.history) for j in jobs]
            found = await self.cache.get_many(keys)
            loop = asyncio.get_running_loop()
            hits, fresh = await loop.run_in_executor(
                self._executor, self._encode_and_search, engine, jobs, keys, found
            )
        except Exception as exc:
            self.metrics.retrieval_errors.inc()
            log.exception("micro-batch of %d failed on model %s", len(jobs), engine.version)
            error = (
                exc
                if isinstance(exc, ServiceError)
                else InternalError("the model failed on this request's micro-batch; it is logged")
            )
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(error)
            return
        for job, hit, key in zip(jobs, hits, keys, strict=True):
            if not job.future.done():
                job.future.set_result(JobResult(hit=hit, cached=key not in fresh))
        if fresh:  # write back off the response path
            task = asyncio.create_task(self.cache.set_many(list(fresh.items())))
            self._writes.add(task)
            task.add_done_callback(self._writes.discard)

    def _encode_and_search(
        self,
        engine: Engine,
        jobs: list[Job],
        keys: list[str],
        found: list[EncoderState | None],
    ) -> tuple[list[SearchHit], dict[str, EncoderState]]:
        """In the engine thread: ONE encoder call for the distinct cache misses, then ONE
        beam search for the batch. One executor hop per batch, not two: a thread hand-off
        costs about as much as a B=1 decoder step."""
        missing: dict[str, np.ndarray] = {}
        for job, key, state in zip(jobs, keys, found, strict=True):
            if state is None and key not in missing:
                missing[key] = job.history
        fresh: dict[str, EncoderState] = {}
        if missing:
            t0 = time.perf_counter()
            encoded = engine.encode(list(missing.values()))
            self.metrics.encoder_seconds.observe(time.perf_counter() - t0)
            if len(encoded) != len(missing):
                raise InternalError(
                    f"encoder returned {len(encoded)} states for {len(missing)} histories"
                )
            # Searched as the cache will hand them back: a repeat answers identically.
            fresh = {key: self.cache.as_cached(s) for key, s in zip(missing, encoded, strict=True)}
        states = [s if s is not None else fresh[k] for s, k in zip(found, keys, strict=True)]
        n = np.array([j.n for j in jobs], dtype=np.int64)
        beam = np.array([j.beam for j in jobs], dtype=np.int64)
        allowed, allowed_of = batch_masks(jobs, engine.info.n_items)
        masks = {} if allowed is None else {"allowed": allowed, "allowed_of": allowed_of}
        t0 = time.perf_counter()
        hits = engine.search(states, n, beam, [j.exclude for j in jobs], **masks)
        self.metrics.beam_search_seconds.observe(time.perf_counter() - t0)
        if len(hits) != len(jobs):
            raise InternalError(f"search returned {len(hits)} results for {len(jobs)} requests")
        return hits, fresh
