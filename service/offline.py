"""Offline batch retrieval (``seater recommend``): top-n for many users through the
service's own engine, retriever and micro-batcher, written to Parquet or JSONL.

It is the path of ``POST /retrieve``: the :class:`~service.core.retrieval.Retriever`
validates each request and shapes its answer, the
:class:`~service.core.batcher.MicroBatcher` groups ``batch_size`` of them into one encoder
call and one beam search, and filters become mask rows in that search. So an offline
answer is what the service answers for the same history. No cache (each user is asked
once): encoder states stay float32, as in the service without Redis. Requests are kept in
flight ``batch_size x (workers + 1)`` at a time, so every batch is full while the next
one gathers, and results are written in input order as they complete.

Never imports torch or ``training``: the training CLI reads the dataset and passes
external-id lists here, importing this module by name.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pydantic import ValidationError

from service.core.batcher import MicroBatcher
from service.core.cache import NullCache
from service.core.holder import ModelHolder
from service.core.retrieval import Retriever
from service.errors import ServiceError
from service.metrics import ServiceMetrics
from service.model.bundle import BundleError, has_bundle
from service.model.engine import Engine, SmokeTestFailed, smoke_check
from service.model.filters import FilterError
from service.schemas import ItemFilters, RetrievedItem, RetrieveRequest
from service.settings import (
    HARD_MAX_BEAM,
    HARD_MAX_EXCLUDE,
    HARD_MAX_HISTORY,
    HARD_MAX_N,
    Settings,
)

log = logging.getLogger(__name__)

FORMATS = (".parquet", ".jsonl")
MAX_BATCH = 1024  # Settings.max_batch_size's bound
PARQUET_ROWS = 1 << 16  # rows per Parquet row group


class OfflineError(ValueError):
    """A user's mistake (options, bundle, filters): one message naming it and the fix."""


@dataclass(frozen=True)
class OfflineConfig:
    """One ``seater recommend`` job. ``filters`` is JSON text, as POST /retrieve's
    ``filters``; ``threads`` are ONNX Runtime threads per graph call (0: one per core; 1:
    also one batch at a time)."""

    bundle: Path
    out: Path
    n: int = 10
    beam: int = 50
    filters: str | None = None
    batch_size: int = 64
    threads: int = 0
    exclude_seen: bool = True
    progress: bool = True

    def check(self) -> None:
        problems = [
            f"--out must end in {' or '.join(FORMATS)}, not {self.out.name!r}"
            if self.out.suffix.lower() not in FORMATS else "",
            f"--n must be 1..{HARD_MAX_N}, not {self.n}" if not 1 <= self.n <= HARD_MAX_N
            else "",
            f"--beam must be {self.n} (--n) .. {HARD_MAX_BEAM}, not {self.beam}"
            if not self.n <= self.beam <= HARD_MAX_BEAM else "",
            f"--batch-size must be 1..{MAX_BATCH}, not {self.batch_size}"
            if not 1 <= self.batch_size <= MAX_BATCH else "",
            f"--threads must be 0..256, not {self.threads}" if not 0 <= self.threads <= 256
            else "",
        ]
        problems = [p for p in problems if p]
        if problems:
            raise OfflineError("; ".join(problems))


@dataclass(frozen=True)
class Summary:
    """What a run did; ``users`` counts every user asked for."""

    out: Path
    model_version: str
    users: int
    answered: int
    skipped: int  # no history item the model knows
    rows: int
    unknown_ids: int  # history ids the model does not know, dropped
    seconds: float

    @property
    def users_per_s(self) -> float:
        return self.users / max(self.seconds, 1e-9)

    def line(self) -> str:
        return (f"{self.answered} users, {self.rows} rows from model {self.model_version} in "
                f"{self.seconds:.1f}s ({self.users_per_s:.0f} users/s); {self.skipped} users "
                f"skipped (no item the model knows), {self.unknown_ids} unknown history ids "
                "dropped")


class Recommender:
    """A loaded bundle and a checked config; :meth:`run` answers a list of users."""

    def __init__(self, config: OfflineConfig, engine: Engine, filters: ItemFilters | None,
                 settings: Settings) -> None:
        self.config = config
        self.engine = engine
        self.filters = filters
        self.settings = settings

    @classmethod
    def open(cls, config: OfflineConfig) -> Recommender:
        """Check everything a run needs before any data is read: options, the bundle
        (verified, smoke-tested), the filters against its metadata."""
        from service.model.load import load_engine

        config.check()
        filters = parse_filters(config.filters)
        if not has_bundle(config.bundle):
            raise OfflineError(
                f"no bundle at {config.bundle}: pass --bundle DIR, a folder written by "
                "`seater export` (its default, artifacts/current, is the latest export)")
        settings = offline_settings(config)
        try:
            engine = load_engine(config.bundle, settings)
            smoke_check(engine)
        except (BundleError, SmokeTestFailed) as exc:
            raise OfflineError(f"bundle {config.bundle} cannot be served: {exc}") from None
        if filters is not None:
            try:
                engine.catalog.filters.mask(filters.canonical())
            except FilterError as exc:
                raise OfflineError(f"--filters {exc.field}: {exc} (model {engine.version})"
                                   ) from None
        return cls(config, engine, filters, settings)

    @property
    def workers(self) -> int:
        return 1 if self.config.threads == 1 else self.settings.batch_workers

    def run(self, users: Sequence[str], histories: Sequence[Sequence[str]]) -> Summary:
        """Top-n for ``users[i]`` from ``histories[i]`` (external item ids, oldest first),
        written to ``config.out`` (replaced only once complete)."""
        from tqdm import tqdm

        if len(users) != len(histories):
            raise OfflineError(f"{len(users)} users for {len(histories)} histories")
        c = self.config
        c.out.parent.mkdir(parents=True, exist_ok=True)
        log.info("recommending %d items for %d users with model %s (beam %d, batches of %d, "
                 "%d worker(s))", c.n, len(users), self.engine.version, c.beam, c.batch_size,
                 self.workers)
        start = time.perf_counter()
        sink = open_sink(c.out, titles=self.engine.catalog.titles is not None)
        with tqdm(total=len(users), unit="user", disable=not c.progress, leave=False) as bar:
            try:
                counts = asyncio.run(self._drive(zip(users, histories, strict=True), sink, bar))
            except BaseException:
                sink.abort()
                raise
        sink.close()
        summary = Summary(c.out, self.engine.version, len(users), counts["answered"],
                          len(users) - counts["answered"], counts["rows"],
                          counts["unknown_ids"], time.perf_counter() - start)
        log.info("%s: %s", c.out, summary.line())
        return summary

    def request(self, history: Sequence[str]) -> RetrieveRequest | None:
        """The POST /retrieve body for one user (None: no item of it is known).

        The most recent ``HARD_MAX_HISTORY`` ids are the history (the engine encodes
        its last ``max_history``); older seen items go to ``exclude``, so every item
        the user has seen stays out of the answer.
        """
        recent = list(history[-HARD_MAX_HISTORY:])
        if not recent or not (self.engine.catalog.lookup(recent) >= 0).any():
            return None
        older: list[str] = []
        if self.config.exclude_seen and len(history) > HARD_MAX_HISTORY:
            seen = set(recent)
            older = list(dict.fromkeys(i for i in history[:-HARD_MAX_HISTORY]
                                       if i not in seen))[-HARD_MAX_EXCLUDE:]
        return RetrieveRequest(history=recent, n=self.config.n, beam_size=self.config.beam,
                               exclude_seen=self.config.exclude_seen, exclude=older,
                               filters=self.filters)

    async def _drive(self, pairs: Iterable[tuple[str, Sequence[str]]], sink: Sink,
                     bar: Any) -> dict[str, int]:
        metrics = ServiceMetrics()
        holder = ModelHolder(lambda _path, _settings: self.engine, self.settings, metrics)
        await holder.load()
        window = self.config.batch_size * (self.workers + 1)
        batcher = MicroBatcher(NullCache(metrics), metrics,
                               max_batch_size=self.config.batch_size,
                               max_wait_s=self.settings.max_wait_ms / 1000.0,
                               queue_size=window, workers=self.workers)
        batcher.start()
        retriever = Retriever(holder, batcher, self.settings)
        counts = {"answered": 0, "rows": 0, "unknown_ids": 0}
        pending: deque[tuple[str, asyncio.Task]] = deque()

        async def emit() -> None:
            user, task = pending.popleft()
            answer = await task
            sink.write(user, answer.items)
            counts["answered"] += 1
            counts["rows"] += len(answer.items)
            counts["unknown_ids"] += len(answer.unknown_ids)
            bar.update(1)

        try:
            for user, history in pairs:
                req = self._request_for(user, history)
                if req is None:
                    counts["unknown_ids"] += int((self.engine.catalog.lookup(history) < 0).sum())
                    bar.update(1)
                    continue
                pending.append((user, asyncio.create_task(retriever.retrieve(req))))
                if len(pending) >= window:
                    await emit()
            while pending:
                await emit()
        except ServiceError as exc:
            raise OfflineError(f"retrieval failed: {exc.message}") from exc
        finally:
            for _, task in pending:
                task.cancel()
            await asyncio.gather(*(t for _, t in pending), return_exceptions=True)
            await batcher.close(self.settings.drain_timeout_s)
        return counts

    def _request_for(self, user: str, history: Sequence[str]) -> RetrieveRequest | None:
        try:
            return self.request(history)
        except ValidationError as exc:
            raise OfflineError(f"user {user!r}: {_errors(exc)}") from None


def parse_filters(text: str | None) -> ItemFilters | None:
    """``--filters`` JSON -> the request schema's filters (None: no filter)."""
    if text is None or not text.strip():
        return None
    try:
        return ItemFilters.model_validate_json(text)
    except ValidationError as exc:
        raise OfflineError(f"--filters: {_errors(exc)}; expected JSON such as "
                           '\'{"categories": ["Beauty > Makeup"], '
                           '"attributes": {"brand": ["Acme"]}}\'') from None


def _errors(exc: ValidationError) -> str:
    parts = []
    for e in exc.errors()[:5]:
        loc = ".".join(str(p) for p in e["loc"])
        parts.append(f"{loc}: {e['msg']}" if loc else e["msg"])
    return "; ".join(parts)


def offline_settings(config: OfflineConfig) -> Settings:
    """The service's settings for one offline job: no cache, no Redis, the hard limits
    (a log's histories may be longer than a request's default cap)."""
    return Settings(
        artifacts=config.bundle, redis_url=None, cache_enabled=False, reload_enabled=False,
        max_batch_size=config.batch_size, max_wait_ms=1.0, queue_size=1_000_000,
        max_history_length=HARD_MAX_HISTORY, max_n=HARD_MAX_N, max_beam=HARD_MAX_BEAM,
        max_exclude=HARD_MAX_EXCLUDE, default_beam=config.beam, strict_ids=False,
        intra_op_threads=config.threads, encoder_intra_op_threads=config.threads,
        gc_freeze=False, log_json=False)


# -- output --------------------------------------------------------------------------------
class Sink(Protocol):
    def write(self, user: str, items: Sequence[RetrievedItem]) -> None: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...


def open_sink(out: Path, titles: bool) -> Sink:
    """A writer for ``out``'s format, writing to a temporary file beside it."""
    if out.suffix.lower() == ".jsonl":
        return JsonlSink(out, titles)
    return ParquetSink(out, titles)


class _AtomicFile:
    """Written under a temporary name, renamed into place by ``close`` (a failed run
    leaves no half-written output)."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")

    def publish(self) -> None:
        os.replace(self.tmp, self.out)

    def discard(self) -> None:
        self.tmp.unlink(missing_ok=True)


class JsonlSink(_AtomicFile):
    """One ``{"user", "items": [{"item", "score"[, "title"]}]}`` line per user."""

    def __init__(self, out: Path, titles: bool) -> None:
        super().__init__(out)
        self.titles = titles
        self._fh = self.tmp.open("w", encoding="utf-8")

    def write(self, user: str, items: Sequence[RetrievedItem]) -> None:
        rows = [{"item": i.id, "score": i.score, **({"title": i.title} if self.titles else {})}
                for i in items]
        self._fh.write(json.dumps({"user": user, "items": rows}) + "\n")

    def close(self) -> None:
        self._fh.close()
        self.publish()

    def abort(self) -> None:
        self._fh.close()
        self.discard()


class ParquetSink(_AtomicFile):
    """Columns ``user, rank, item, score[, title]``, one row per recommended item (rank
    from 1), in row groups of ``PARQUET_ROWS``."""

    def __init__(self, out: Path, titles: bool) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        super().__init__(out)
        self._pa = pa
        fields = [("user", pa.string()), ("rank", pa.int32()), ("item", pa.string()),
                  ("score", pa.float32())] + ([("title", pa.string())] if titles else [])
        self.schema = pa.schema(fields)
        self._writer = pq.ParquetWriter(self.tmp, self.schema)
        self._columns: dict[str, list[Any]] = {name: [] for name, _ in fields}

    def write(self, user: str, items: Sequence[RetrievedItem]) -> None:
        cols = self._columns
        cols["user"].extend([user] * len(items))
        cols["rank"].extend(range(1, len(items) + 1))
        cols["item"].extend(i.id for i in items)
        cols["score"].extend(i.score for i in items)
        if "title" in cols:
            cols["title"].extend(i.title for i in items)
        if len(cols["user"]) >= PARQUET_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self._columns["user"]:
            self._writer.write_table(self._pa.table(self._columns, schema=self.schema))
            self._columns = {name: [] for name in self._columns}

    def close(self) -> None:
        self._flush()
        self._writer.close()
        self.publish()

    def abort(self) -> None:
        self._writer.close()
        self.discard()

