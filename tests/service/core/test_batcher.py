"""Micro-batching: concurrent requests share engine calls, yet each gets its own answer."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from service.core.batcher import MicroBatcher
from service.core.cache import NullCache
from service.errors import InternalError, NotReady
from service.metrics import ServiceMetrics
from tests.service.conftest import metric, running
from tests.service.fakes import FakeEngine, FakeLoader, external_id

pytestmark = pytest.mark.anyio


def request(i: int) -> dict:
    """Distinct histories, n, beams and exclusions per request."""
    history = [external_id((i * 13 + j * 7) % 300) for j in range(3 + i % 5)]
    return {
        "history": history,
        "n": 1 + i % 7,
        "beam_size": 8 + 3 * i,
        "exclude": [external_id(i), external_id(i + 1)],
        "exclude_seen": i % 2 == 0,
    }


def started(max_batch_size: int, max_wait_s: float, queue_size: int) -> MicroBatcher:
    """A batcher without a cache, its workers running on this loop."""
    metrics = ServiceMetrics()
    batcher = MicroBatcher(NullCache(metrics), metrics, max_batch_size=max_batch_size,
                           max_wait_s=max_wait_s, queue_size=queue_size)
    batcher.start()
    return batcher


async def test_concurrent_requests_are_batched_and_each_answer_equals_its_solo_answer(
    make_settings,
):
    loader = FakeLoader(search_delay_s=0.03)
    settings = make_settings(max_batch_size=32, max_wait_ms=20, cache_enabled=False)
    async with running(settings, loader) as client:
        solo = [(await client.post("/retrieve", json=request(i))).json() for i in range(16)]
        engine = loader.engines[0]
        engine.calls.clear()
        together = await asyncio.gather(
            *(client.post("/retrieve", json=request(i)) for i in range(16))
        )
        count = metric(client, "seater_batch_size_count")
        total = metric(client, "seater_batch_size_sum")
    assert [r.status_code for r in together] == [200] * 16
    assert [r.json()["items"] for r in together] == [s["items"] for s in solo]
    sizes = engine.search_batch_sizes()
    assert sum(sizes) == 16 and max(sizes) >= 8, sizes  # one or two calls, not sixteen
    assert total == 32 and count < 32  # 16 solo batches + the concurrent ones
    searches = [c for c in engine.calls if c[0] == "search"]
    n_seen = sorted(n for c in searches for n in c[2])
    assert n_seen == sorted(1 + i % 7 for i in range(16))  # per-request n reached the engine


async def test_two_batch_workers_decode_batches_side_by_side_with_the_same_answers(
    make_settings,
):
    """While one batch decodes (ONNX Runtime releases the GIL), the next one is gathered
    and decoded by the second worker; answers must not mix between batches."""
    loader = FakeLoader(search_delay_s=0.05)
    settings = make_settings(max_batch_size=4, max_wait_ms=1, cache_enabled=False,
                             batch_workers=2)
    async with running(settings, loader) as client:
        solo = [(await client.post("/retrieve", json=request(i))).json() for i in range(16)]
        engine = loader.engines[0]
        engine.max_in_flight = 0
        together = await asyncio.gather(
            *(client.post("/retrieve", json=request(i)) for i in range(16))
        )
    assert [r.status_code for r in together] == [200] * 16
    assert [r.json()["items"] for r in together] == [s["items"] for s in solo]
    assert engine.max_in_flight == 2  # the two workers overlapped; never more than two


async def test_one_encoder_call_per_batch_for_distinct_misses(make_settings):
    loader = FakeLoader(search_delay_s=0.03)
    async with running(make_settings(max_wait_ms=20), loader) as client:
        same = {"history": [external_id(3), external_id(4)], "n": 2}
        await asyncio.gather(*(client.post("/retrieve", json=same) for _ in range(6)))
    encodes = [c[1] for c in loader.engines[0].calls if c[0] == "encode"]
    # The smoke test encoded 2; then one call, one history, for six identical requests.
    assert encodes == [2, 1]


class _ShortEngine(FakeEngine):
    def search(self, states, n, beam, exclude):
        return super().search(states, n, beam, exclude)[:-1]


async def test_a_short_engine_output_fails_every_future_of_the_batch():
    batcher = started(max_batch_size=8, max_wait_s=0.05, queue_size=16)
    engine = _ShortEngine()
    h = np.array([1, 2, 3])
    results = await asyncio.gather(
        *(batcher.submit(engine, h, 2, 4, np.zeros(0, np.int64)) for _ in range(3)),
        return_exceptions=True,
    )
    await batcher.close(1.0)
    assert all(isinstance(r, InternalError) for r in results), results


async def test_close_drains_queued_jobs_and_then_refuses_new_ones():
    batcher = started(max_batch_size=2, max_wait_s=0.0, queue_size=64)
    engine = FakeEngine(search_delay_s=0.02)
    tasks = [
        asyncio.create_task(batcher.submit(engine, np.array([i]), 1, 4, np.zeros(0, np.int64)))
        for i in range(10)
    ]
    await asyncio.sleep(0)  # all queued; most still waiting behind the slow engine
    await batcher.close(5.0)
    results = await asyncio.gather(*tasks)
    assert len(results) == 10 and all(len(r.hit.items) == 1 for r in results)
    with pytest.raises(NotReady):
        await batcher.submit(engine, np.array([1]), 1, 4, np.zeros(0, np.int64))


async def test_a_caller_that_gives_up_does_not_break_the_batch():
    batcher = started(max_batch_size=8, max_wait_s=0.05, queue_size=16)
    engine = FakeEngine(search_delay_s=0.05)
    none = np.zeros(0, np.int64)
    quitter = asyncio.create_task(batcher.submit(engine, np.array([1]), 1, 4, none))
    stayer = asyncio.create_task(batcher.submit(engine, np.array([2]), 1, 4, none))
    await asyncio.sleep(0.01)
    quitter.cancel()
    result = await stayer
    await batcher.close(1.0)
    assert len(result.hit.items) == 1 and quitter.cancelled()
