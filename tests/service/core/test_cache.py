"""Encoder-state cache: payload codec, LRU, the real Redis, and Redis failing."""

from __future__ import annotations

import hashlib
import socket

import numpy as np
import pytest
import redis

from service.core.breaker import CircuitBreaker
from service.core.cache import (
    LruCache,
    PayloadError,
    RedisCache,
    cache_key,
    decode_state,
    encode_state,
)
from service.metrics import ServiceMetrics
from service.model.engine import EncoderMemory, UserVector
from tests.service.conftest import REDIS_URL, metric, running
from tests.service.fakes import external_id
from tests.service.proxy import TcpProxy

pytestmark = pytest.mark.anyio
BODY = {"history": [external_id(i) for i in (3, 1, 4, 1, 5)], "n": 4}


def state(t: int = 5, seed: int = 0) -> EncoderMemory:
    rng = np.random.default_rng(seed)
    k = rng.standard_normal((2, 3, t, 4)).astype(np.float32)
    return EncoderMemory(k, -k, np.zeros(t, np.float32))


def closed_port() -> int:
    """A loopback port with nothing listening (bound then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cache_errors(client) -> float:
    """Failed lookups plus failed write-backs: both count towards the breaker."""
    return sum(metric(client, "seater_cache_errors_total", {"op": op}) for op in ("get", "set"))


@pytest.mark.parametrize(("dtype", "tol"), [("float32", 0.0), ("float16", 2e-3)])
def test_payload_round_trip(dtype, tol):
    s = state()
    back = decode_state(encode_state(s, dtype))
    assert back.memory_k.dtype == np.float32 and back.memory_k.shape == s.memory_k.shape
    np.testing.assert_allclose(back.memory_k, s.memory_k, atol=tol * 4, rtol=tol)
    np.testing.assert_allclose(back.memory_v, s.memory_v, atol=tol * 4, rtol=tol)
    np.testing.assert_array_equal(back.memory_bias, s.memory_bias)
    full = len(encode_state(s, "float32"))
    half = len(encode_state(s, "float16"))
    assert half < 0.6 * full


def test_a_padding_bias_survives_float16_and_a_user_vector_round_trips_as_itself():
    s = state(t=3)
    s = EncoderMemory(s.memory_k, s.memory_v, np.array([-1e9, 0.0, 0.0], np.float32))
    assert decode_state(encode_state(s, "float16")).memory_bias[0] == np.float32(-1e9)
    user = UserVector(np.array([0.5, -2.0, 3.25], np.float32))
    back = decode_state(encode_state(user, "float16"))
    assert type(back) is UserVector and back.vector.dtype == np.float32
    np.testing.assert_array_equal(back.vector, user.vector)  # exact in float16


@pytest.mark.parametrize(
    "payload",
    [b"", b"SEAT", encode_state(state(), "float32")[:-1], b"XXXX" + bytes(40), b"\x00" * 100,
     encode_state(state(), "float32") + b"\0",
     encode_state(UserVector(np.ones(4, np.float32)))[:9]],  # cut inside the shapes
)
def test_corrupt_payloads_raise_payload_error(payload):
    with pytest.raises(PayloadError):
        decode_state(payload)


def test_cache_key_depends_on_version_and_history_only():
    h = np.array([1, 2, 3])
    assert cache_key("p:", "v1", h) == cache_key("p:", "v1", np.array([1, 2, 3], np.int32))
    assert cache_key("p:", "v1", h) != cache_key("p:", "v2", h)
    assert cache_key("p:", "v1", h) != cache_key("p:", "v1", np.array([3, 2, 1]))
    assert cache_key("p:", "v1", h).startswith("p:v1:")
    # The payload format is part of the key: another format's entries are misses.
    assert cache_key("p:", "v1", h) != "p:v1:" + hashlib.blake2b(
        h.astype("<i8").tobytes(), digest_size=16).hexdigest()


async def test_lru_evicts_the_least_recently_used():
    metrics = ServiceMetrics()
    lru = LruCache(2, metrics)
    await lru.set_many([("a", state()), ("b", state())])
    assert (await lru.get_many(["a"]))[0] is not None  # a is now the most recent
    await lru.set_many([("c", state())])
    got = await lru.get_many(["a", "b", "c"])
    assert [g is not None for g in got] == [True, False, True]


@pytest.mark.redis
async def test_redis_cache_round_trips_with_ttl(redis_prefix):
    metrics = ServiceMetrics()
    cache = RedisCache(
        REDIS_URL, ttl_s=60, timeout_s=0.5, dtype="float32",
        breaker=CircuitBreaker(3, 1.0), metrics=metrics,
    )  # fmt: skip
    s = state()
    await cache.set_many([(f"{redis_prefix}k1", s)])
    got = await cache.get_many([f"{redis_prefix}k1", f"{redis_prefix}nope"])
    await cache.close()
    np.testing.assert_array_equal(got[0].memory_k, s.memory_k)
    assert got[1] is None
    ttl = redis.Redis.from_url(REDIS_URL).ttl(f"{redis_prefix}k1")
    assert 0 < ttl <= 60


@pytest.mark.redis
@pytest.mark.parametrize("dtype", ["float16", "float32"])
async def test_as_cached_is_bit_for_bit_what_redis_hands_back(redis_prefix, dtype):
    cache = RedisCache(
        REDIS_URL, ttl_s=60, timeout_s=0.5, dtype=dtype,
        breaker=CircuitBreaker(3, 1.0), metrics=ServiceMetrics(),
    )  # fmt: skip
    s = state(t=7, seed=4)
    s = EncoderMemory(s.memory_k / 3, s.memory_v / 7, s.memory_bias)  # not exact in float16
    await cache.set_many([(f"{redis_prefix}k", s)])
    (got,) = await cache.get_many([f"{redis_prefix}k"])
    await cache.close()
    want = cache.as_cached(s)
    for name in ("memory_k", "memory_v", "memory_bias"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name))
    assert (dtype == "float32") == np.array_equal(want.memory_k, s.memory_k)


async def test_the_in_process_cache_keeps_the_state_as_it_was_searched():
    lru = LruCache(4, ServiceMetrics())
    s = state()
    await lru.set_many([("k", lru.as_cached(s))])
    assert (await lru.get_many(["k"]))[0] is s and lru.as_cached(s) is s


@pytest.mark.redis
async def test_http_repeat_is_a_redis_hit_and_the_key_is_versioned(make_settings, redis_prefix):
    settings = make_settings(redis_url=REDIS_URL, cache_prefix=redis_prefix)
    async with running(settings) as client:
        first = await client.post("/retrieve", json=BODY)
        await client.app.state.batcher.settle_writes()
        second = await client.post("/retrieve", json=BODY)
        hits = metric(client, "seater_cache_hits_total")
        backend = client.app.state.cache.backend
    assert backend == "redis"
    assert (first.json()["cached"], second.json()["cached"]) == (False, True)
    assert first.json()["items"] == second.json()["items"]
    assert hits == 1
    keys = list(redis.Redis.from_url(REDIS_URL).scan_iter(match=f"{redis_prefix}*"))
    assert len(keys) == 1 and keys[0].decode().startswith(f"{redis_prefix}v1:")


async def test_redis_unreachable_still_answers_200_counts_errors_and_opens_the_breaker(
    make_settings,
):
    settings = make_settings(
        redis_url=f"redis://127.0.0.1:{closed_port()}/0",
        breaker_threshold=2,
        breaker_cooldown_s=60,
        redis_timeout_ms=50,
    )
    async with running(settings) as client:
        answers = [await client.post("/retrieve", json=BODY) for _ in range(5)]
        errors = cache_errors(client)
        bypassed = metric(client, "seater_cache_bypassed_total", {"op": "get"})
        is_open = metric(client, "seater_cache_breaker_open")
    assert [r.status_code for r in answers] == [200] * 5
    assert all(not r.json()["cached"] for r in answers)
    assert errors == 2 and bypassed >= 3 and is_open == 1  # threshold 2, then skipped


@pytest.mark.redis
async def test_redis_dying_mid_test_degrades_to_no_cache_without_errors(
    make_settings, redis_prefix
):
    proxy = await TcpProxy("127.0.0.1", 6379).start()
    settings = make_settings(
        redis_url=proxy.url, cache_prefix=redis_prefix, breaker_threshold=3, redis_timeout_ms=100
    )
    async with running(settings) as client:
        before = await client.post("/retrieve", json=BODY)
        await client.app.state.batcher.settle_writes()
        hit = await client.post("/retrieve", json=BODY)
        await proxy.stop()  # Redis "crashes": connections cut, port closed
        after = [await client.post("/retrieve", json=BODY) for _ in range(5)]
        errors = cache_errors(client)
        bypassed = metric(client, "seater_cache_bypassed_total", {"op": "get"})
    assert (before.status_code, hit.json()["cached"]) == (200, True)
    assert [r.status_code for r in after] == [200] * 5
    assert all(r.json()["items"] == before.json()["items"] for r in after)
    assert not any(r.json()["cached"] for r in after)
    assert errors >= 3 and bypassed >= 1


async def test_breaker_half_opens_after_cooldown_and_closes_on_success():
    now = [0.0]
    changes = []
    breaker = CircuitBreaker(2, 10.0, clock=lambda: now[0], on_change=changes.append)
    breaker.record_failure()
    assert breaker.allow()
    breaker.record_failure()
    assert not breaker.allow() and breaker.is_open
    now[0] = 10.5
    assert breaker.allow()  # the one half-open trial
    assert not breaker.allow()  # ... and only one
    breaker.record_failure()  # trial failed: another cooldown
    assert not breaker.allow()
    now[0] = 21.0
    assert breaker.allow()
    breaker.record_success()
    assert breaker.allow() and not breaker.is_open
    assert changes == [True, False]
