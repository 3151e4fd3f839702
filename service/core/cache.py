"""Encoder-state cache: Redis when ``REDIS_URL`` is set, an in-process LRU otherwise.

The encoder runs once per distinct (model version, truncated history); its states are
stored as a compact binary payload (small header + float16/float32 arrays) under a key
made of the prefix, the version and a hash of the history. A fresh state is first put
into the form a later lookup returns (:meth:`StateCache.as_cached`, e.g. rounded to
float16) and only then searched, so a request answers the same items in the same order
whether its state was just computed, cached by this replica or by another one. The cache
is an optimisation only: every backend error (timeout, refused connection, corrupt
payload) is counted and answered as a miss, never raised, and a circuit breaker stops
paying the timeout while Redis is down.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import struct
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import fields
from typing import Protocol, TypeVar

import numpy as np
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from service.core.breaker import CircuitBreaker
from service.metrics import ServiceMetrics
from service.model.engine import STATE_TYPES, EncoderState, state_arrays
from service.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")

# magic, payload format, dtype code, state type (index in STATE_TYPES), number of arrays;
# then per array its ndim (u8) and shape (u32 each); then the arrays' bytes in that order.
_HEADER = struct.Struct("<4sBBBB")
_MAGIC = b"SEAT"
_FORMAT = 3  # 3: any state type of service.model.engine (2 knew only EncoderMemory)
_DTYPES = {0: np.dtype("<f4"), 1: np.dtype("<f2")}
_CODES = {np.dtype("<f4"): 0, np.dtype("<f2"): 1}
_F32 = np.dtype("<f4")


class PayloadError(ValueError):
    """A cached payload does not decode (truncated, foreign, or another format)."""


def cache_key(prefix: str, version: str, history: np.ndarray) -> str:
    """``prefix + version + ":" + hash(history)``; history is the truncated item indices.

    The hash is personalised with the payload format, so a service writing another
    format never looks up these entries (a miss, not a decode error).
    """
    digest = hashlib.blake2b(
        np.ascontiguousarray(history, dtype="<i8").tobytes(),
        digest_size=16,
        person=f"seater-state-{_FORMAT}".encode(),
    ).hexdigest()
    return f"{prefix}{version}:{digest}"


def encode_state(state: EncoderState, dtype: str = "float16") -> bytes:
    """Header, shapes, then each array in ``dtype`` (its FULL_PRECISION ones in float32)."""
    dt = np.dtype(dtype).newbyteorder("<")
    arrays = state_arrays(state)
    parts = [_HEADER.pack(_MAGIC, _FORMAT, _CODES[dt], STATE_TYPES.index(type(state)),
                          len(arrays))]
    for a in arrays.values():
        parts.append(struct.pack(f"<B{a.ndim}I", a.ndim, *a.shape))
    for name, a in arrays.items():
        stored = _F32 if name in state.FULL_PRECISION else dt
        parts.append(np.ascontiguousarray(a, dtype=stored).tobytes())
    return b"".join(parts)


def decode_state(payload: bytes) -> EncoderState:
    """Inverse of :func:`encode_state`; arrays come back as float32. Raises PayloadError."""
    try:
        magic, fmt, code, kind, count = _HEADER.unpack_from(payload)
        if magic != _MAGIC or fmt != _FORMAT or code not in _DTYPES or kind >= len(STATE_TYPES):
            raise PayloadError(f"unknown payload format {magic!r}/{fmt}/{code}/{kind}")
        cls = STATE_TYPES[kind]
        names = [f.name for f in fields(cls)]
        if count != len(names):
            raise PayloadError(f"{cls.__name__} has {len(names)} arrays, payload {count}")
        off = _HEADER.size
        shapes = []
        for _ in names:
            (ndim,) = struct.unpack_from("<B", payload, off)
            shapes.append(struct.unpack_from(f"<{ndim}I", payload, off + 1))
            off += 1 + 4 * ndim
    except struct.error as exc:
        raise PayloadError(f"payload header is truncated: {exc}") from None
    stored = [_F32 if name in cls.FULL_PRECISION else _DTYPES[code] for name in names]
    sizes = [math.prod(shape) for shape in shapes]
    expected = off + sum(size * dt.itemsize for size, dt in zip(sizes, stored, strict=True))
    if len(payload) != expected:
        raise PayloadError(f"payload has {len(payload)} bytes, header implies {expected}")
    arrays = {}
    for name, shape, size, dt in zip(names, shapes, sizes, stored, strict=True):
        arrays[name] = np.frombuffer(payload, dt, size, off).reshape(shape).astype(np.float32)
        off += size * dt.itemsize
    return cls(**arrays)


class StateCache(Protocol):
    """What the batcher needs from a cache. Implementations never raise on backend errors."""

    backend: str

    def as_cached(self, state: EncoderState) -> EncoderState:
        """``state`` exactly as a later ``get_many`` will return it. Pure: safe in any thread."""
        ...

    async def get_many(self, keys: Sequence[str]) -> list[EncoderState | None]: ...

    async def set_many(self, items: Sequence[tuple[str, EncoderState]]) -> None: ...

    async def close(self) -> None: ...


class NullCache:
    """Caching disabled: every lookup is a miss."""

    backend = "off"

    def __init__(self, metrics: ServiceMetrics) -> None:
        self._metrics = metrics

    def as_cached(self, state: EncoderState) -> EncoderState:
        return state

    async def get_many(self, keys: Sequence[str]) -> list[EncoderState | None]:
        self._metrics.cache_misses.inc(len(keys))
        return [None] * len(keys)

    async def set_many(self, items: Sequence[tuple[str, EncoderState]]) -> None:
        return None

    async def close(self) -> None:
        return None


class LruCache:
    """In-process LRU of decoded states, for single replicas without Redis.

    Only touched from the event loop, so an ``OrderedDict`` needs no lock.
    """

    backend = "lru"

    def __init__(self, max_entries: int, metrics: ServiceMetrics) -> None:
        self.max_entries = max_entries
        self._metrics = metrics
        self._data: OrderedDict[str, EncoderState] = OrderedDict()

    def __len__(self) -> int:
        return len(self._data)

    def as_cached(self, state: EncoderState) -> EncoderState:
        return state  # the very object is kept

    async def get_many(self, keys: Sequence[str]) -> list[EncoderState | None]:
        out: list[EncoderState | None] = []
        for key in keys:
            state = self._data.get(key)
            if state is not None:
                self._data.move_to_end(key)
            out.append(state)
        hits = sum(s is not None for s in out)
        self._metrics.cache_hits.inc(hits)
        self._metrics.cache_misses.inc(len(keys) - hits)
        return out

    async def set_many(self, items: Sequence[tuple[str, EncoderState]]) -> None:
        if self.max_entries == 0:
            return
        for key, state in items:
            self._data[key] = state
            self._data.move_to_end(key)
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)

    async def close(self) -> None:
        self._data.clear()


class RedisCache:
    """Redis-backed cache with short timeouts, no retries and a circuit breaker.

    One ``MGET`` per micro-batch for lookups and one pipelined ``SET .. EX`` for writes,
    so the cache costs at most one round trip per stage, bounded by ``timeout_s``.
    """

    backend = "redis"

    def __init__(
        self,
        url: str,
        *,
        ttl_s: int,
        timeout_s: float,
        dtype: str,
        breaker: CircuitBreaker,
        metrics: ServiceMetrics,
        client: Redis | None = None,
    ) -> None:
        self.ttl_s = ttl_s
        self.timeout_s = timeout_s
        self.dtype = dtype
        self.breaker = breaker
        self._metrics = metrics
        self._client = client or Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )

    async def _guarded(self, op: str, coro_factory: Callable[[], Awaitable[T]], n: int) -> T | None:
        """Run one backend call under the breaker and a hard timeout; None on failure."""
        if not self.breaker.allow():
            self._metrics.cache_bypassed.labels(op=op).inc(n)
            return None
        try:
            result = await asyncio.wait_for(coro_factory(), timeout=self.timeout_s * 2)
        except Exception as exc:  # any backend failure degrades to "no cache"
            self.breaker.record_failure()
            self._metrics.cache_errors.labels(op=op).inc()
            log.warning("redis %s failed: %s: %s", op, type(exc).__name__, exc)
            return None
        self.breaker.record_success()
        return result

    def as_cached(self, state: EncoderState) -> EncoderState:
        """Through the payload codec, so a fresh state carries the stored ``dtype``'s rounding."""
        return decode_state(encode_state(state, self.dtype))

    async def get_many(self, keys: Sequence[str]) -> list[EncoderState | None]:
        if not keys:
            return []
        raw = await self._guarded("get", lambda: self._client.mget(list(keys)), len(keys))
        out: list[EncoderState | None] = [None] * len(keys)
        if raw is not None:
            for i, payload in enumerate(raw):
                if payload is None:
                    continue
                try:
                    out[i] = decode_state(payload)
                except PayloadError as exc:
                    self._metrics.cache_errors.labels(op="decode").inc()
                    log.warning("dropping undecodable cache entry %s: %s", keys[i], exc)
        hits = sum(s is not None for s in out)
        self._metrics.cache_hits.inc(hits)
        self._metrics.cache_misses.inc(len(keys) - hits)
        return out

    async def set_many(self, items: Sequence[tuple[str, EncoderState]]) -> None:
        if not items:
            return
        payloads = [(key, encode_state(state, self.dtype)) for key, state in items]

        async def write() -> None:
            async with self._client.pipeline(transaction=False) as pipe:
                for key, payload in payloads:
                    pipe.set(key, payload, ex=self.ttl_s)
                await pipe.execute()

        await self._guarded("set", write, len(items))

    async def close(self) -> None:
        try:
            await self._client.aclose()
        except Exception as exc:  # closing a dead connection must not fail shutdown
            log.warning("closing redis client: %s", exc)


def build_cache(settings: Settings, metrics: ServiceMetrics) -> StateCache:
    """Redis when ``REDIS_URL`` is set, else the in-process LRU (or nothing if disabled)."""
    if not settings.cache_enabled:
        return NullCache(metrics)
    if settings.redis_url:
        breaker = CircuitBreaker(
            settings.breaker_threshold,
            settings.breaker_cooldown_s,
            on_change=lambda is_open: metrics.cache_breaker_open.set(int(is_open)),
        )
        return RedisCache(
            settings.redis_url,
            ttl_s=settings.cache_ttl_s,
            timeout_s=settings.redis_timeout_ms / 1000.0,
            dtype=settings.cache_dtype,
            breaker=breaker,
            metrics=metrics,
        )
    return LruCache(settings.lru_size, metrics)
