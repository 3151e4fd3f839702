"""The whole service on REAL bundles (the real export code), over HTTP through the ASGI app
with its lifespan and the real Redis: answers equal the offline evaluation, a cache hit
answers exactly what the uncached request did, Redis failing, hot reload under load, and
a tampered bundle that must not replace the serving one."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
import redis

from service.core.cache import decode_state, encode_state
from service.model.load import load_engine
from service.settings import Settings
from tests.service.bundles import (
    copy_bundle,
    export_version,
    external_ids,
    offline_top,
    tamper,
    user_histories,
)
from tests.service.conftest import REDIS_URL, TOKEN, metric, running
from tests.service.proxy import TcpProxy

pytestmark = pytest.mark.anyio
AUTH = {"Authorization": f"Bearer {TOKEN}"}
N, BEAM = 10, 20


@pytest.fixture(scope="module")
def tiny_v2(tiny_bundle, tmp_path_factory):
    """A second real version: the tiny model with perturbed weights, exported again."""
    return export_version(tiny_bundle, tmp_path_factory.mktemp("v2"), "tiny-v2", seed=7)


@pytest.fixture
def root(tiny_bundle, tmp_path) -> Path:
    """A reload root holding a copy of v1 (the app may only load bundles inside it)."""
    copy_bundle(tiny_bundle.path, tmp_path / "tiny-v1")
    return tmp_path


def real_settings(root: Path, **overrides) -> Settings:
    values = {
        "artifacts": root / "tiny-v1", "providers": "cpu", "intra_op_threads": 1,
        "redis_url": None, "max_wait_ms": 5.0, "log_json": False,
        "reload_enabled": True, "reload_token": TOKEN,
    }  # fmt: skip
    return Settings(**{**values, **overrides})


def expected(model, tree, ids: list[str], histories: list[list[int]]) -> list[list[str]]:
    """The offline evaluation's top-n per history, as external ids."""
    offline = offline_top(model, tree, histories, N, BEAM)
    return [[ids[i] for i in row if i >= 0] for row in offline.items], offline.scores


def body(ids: list[str], history: list[int]) -> dict:
    return {"history": [ids[i] for i in history], "n": N, "beam_size": BEAM}


async def test_top_n_over_http_equals_the_offline_evaluation_and_repeats_hit_redis(
    tiny_bundle, root, redis_prefix
):
    ids = external_ids(tiny_bundle.path)
    histories = user_histories(tiny_bundle, 8)
    want, want_scores = expected(tiny_bundle.model, tiny_bundle.tree, ids, histories)
    # float32 states in Redis: the offline (float32) answer is the one to match exactly.
    settings = real_settings(root, redis_url=REDIS_URL, cache_prefix=redis_prefix,
                             cache_dtype="float32")
    async with running(settings, loader=load_engine) as client:
        first = await asyncio.gather(*(client.post("/retrieve", json=body(ids, h))
                                       for h in histories))  # one micro-batch, mostly
        await client.app.state.batcher.settle_writes()
        again = [await client.post("/retrieve", json=body(ids, h)) for h in histories]
        hits = metric(client, "seater_cache_hits_total")
        batches = metric(client, "seater_batch_size_count")
    assert [r.status_code for r in first] == [200] * len(histories)
    for r, items, scores in zip(first, want, want_scores, strict=True):
        got = r.json()
        assert [i["id"] for i in got["items"]] == items
        np.testing.assert_allclose([i["score"] for i in got["items"]], scores[: len(items)],
                                   atol=1e-4)
        assert got["model_version"] == "tiny-v1" and got["cached"] is False
        assert all(len(i["code"]) == tiny_bundle.tree.max_depth for i in got["items"])
    assert batches < 2 * len(histories)  # the concurrent first round shared batches
    assert [r.json()["cached"] for r in again] == [True] * len(histories)
    for r, f in zip(again, first, strict=True):
        assert [i["id"] for i in r.json()["items"]] == [i["id"] for i in f.json()["items"]]
        np.testing.assert_allclose([i["score"] for i in r.json()["items"]],
                                   [i["score"] for i in f.json()["items"]], atol=1e-5)
    assert hits == len(histories)
    keys = list(redis.Redis.from_url(REDIS_URL).scan_iter(match=f"{redis_prefix}*"))
    assert len(keys) == len({tuple(h[-12:]) for h in histories})
    assert all(k.decode().startswith(f"{redis_prefix}tiny-v1:") for k in keys)


async def test_redis_stopping_mid_test_still_answers_200_with_the_real_model(
    tiny_bundle, root, redis_prefix
):
    ids = external_ids(tiny_bundle.path)
    history = user_histories(tiny_bundle, 1, seed=3)[0]
    proxy = await TcpProxy("127.0.0.1", 6379).start()
    settings = real_settings(root, redis_url=proxy.url, cache_prefix=redis_prefix,
                             breaker_threshold=2, redis_timeout_ms=100)
    async with running(settings, loader=load_engine) as client:
        before = await client.post("/retrieve", json=body(ids, history))
        await client.app.state.batcher.settle_writes()
        hit = await client.post("/retrieve", json=body(ids, history))
        await proxy.stop()  # Redis "crashes": connections cut, port closed
        after = [await client.post("/retrieve", json=body(ids, history)) for _ in range(4)]
        opened = metric(client, "seater_cache_breaker_open")
    assert (before.status_code, hit.status_code, hit.json()["cached"]) == (200, 200, True)
    assert [r.status_code for r in after] == [200] * 4
    assert all(r.json()["items"] == before.json()["items"] for r in after)
    assert not any(r.json()["cached"] for r in after) and opened == 1


async def test_hot_reload_to_a_second_real_version_under_load_loses_no_request(
    tiny_bundle, tiny_v2, root
):
    v2_path, v2_model = tiny_v2
    copy_bundle(v2_path, root / "tiny-v2")
    ids = external_ids(tiny_bundle.path)
    histories = user_histories(tiny_bundle, 6, seed=5)
    want = {
        "tiny-v1": expected(tiny_bundle.model, tiny_bundle.tree, ids, histories)[0],
        "tiny-v2": expected(v2_model, tiny_bundle.tree, ids, histories)[0],
    }
    assert want["tiny-v1"] != want["tiny-v2"]  # the versions are told apart by their answers
    async with running(real_settings(root), loader=load_engine) as client:

        async def load(rounds: int) -> list:
            out = []
            for r in range(rounds):
                i = r % len(histories)
                out.append((i, await client.post("/retrieve", json=body(ids, histories[i]))))
            return out

        clients = [asyncio.create_task(load(15)) for _ in range(6)]
        await asyncio.sleep(0.05)  # requests in flight before and during the swap
        reload = await client.post("/v1/admin/reload", headers=AUTH,
                                   json={"path": str(root / "tiny-v2")})
        answers = [a for task in clients for a in await task]
        after = await client.post("/retrieve", json=body(ids, histories[0]))
    assert reload.status_code == 200, reload.text
    assert [r.status_code for _, r in answers] == [200] * 90
    versions = {r.json()["model_version"] for _, r in answers}
    assert "tiny-v1" in versions
    for i, r in answers:  # every answer is wholly one version's, never a mix
        got = r.json()
        assert [x["id"] for x in got["items"]] == want[got["model_version"]][i]
    assert after.json()["model_version"] == "tiny-v2"
    assert [x["id"] for x in after.json()["items"]] == want["tiny-v2"][0]


async def test_a_tampered_bundle_is_rejected_and_the_old_model_keeps_serving(
    tiny_bundle, tiny_v2, root
):
    bad = tamper(copy_bundle(tiny_v2[0], root / "tiny-v2-bad"), "decoder.onnx")
    ids = external_ids(tiny_bundle.path)
    history = user_histories(tiny_bundle, 1, seed=9)[0]
    async with running(real_settings(root), loader=load_engine) as client:
        before = await client.post("/retrieve", json=body(ids, history))
        r = await client.post("/v1/admin/reload", headers=AUTH, json={"path": str(bad)})
        model = (await client.get("/v1/model")).json()
        after = await client.post("/retrieve", json=body(ids, history))
        failed = metric(client, "seater_reloads_total", {"outcome": "failed"})
    assert r.status_code == 422 and r.json()["code"] == "bundle_rejected"
    assert "checksum mismatch for decoder.onnx" in r.json()["message"]
    assert "still serving tiny-v1" in r.json()["message"]
    assert model["version"] == "tiny-v1" and model["kind"] == "seater" and failed == 1
    assert after.status_code == 200 and after.json()["items"] == before.json()["items"]


def reordered_by_the_cache(tiny_bundle, dtype: str) -> list[list[int]]:
    """History prefixes whose top-N comes out in another order from states round-tripped
    through the cache's ``dtype`` than from fresh float32 states (near-ties)."""
    engine = load_engine(tiny_bundle.path, real_settings(tiny_bundle.path.parent))
    histories = [[int(i) for i in seq[:end]] for seq in tiny_bundle.data.sequences
                 for end in range(1, min(len(seq), 12) + 1)]
    arrays = [np.asarray(h) for h in histories]
    fresh = engine.encode(arrays)
    thawed = [decode_state(encode_state(s, dtype)) for s in fresh]
    n, beam = np.full(len(arrays), N), np.full(len(arrays), BEAM)
    a = engine.search(fresh, n, beam, arrays)
    b = engine.search(thawed, n, beam, arrays)
    return [h for h, x, y in zip(histories, a, b, strict=True)
            if x.items.tolist() != y.items.tolist()]


@pytest.mark.redis
async def test_a_redis_hit_answers_exactly_what_the_uncached_request_answered(
    tiny_bundle, root, redis_prefix
):
    """The first answer must come from the state Redis will hand back (float16), not from
    the float32 one only this request ever sees: same items, same order, same scores."""
    near_ties = reordered_by_the_cache(tiny_bundle, "float16")
    assert near_ties, "the tiny model has no near-ties for float16 to reorder"
    ids = external_ids(tiny_bundle.path)
    settings = real_settings(root, redis_url=REDIS_URL, cache_prefix=redis_prefix,
                             cache_dtype="float16")
    async with running(settings, loader=load_engine) as client:
        pairs = []
        for h in near_ties:
            first = await client.post("/retrieve", json=body(ids, h))
            await client.app.state.batcher.settle_writes()
            pairs.append((first.json(), (await client.post("/retrieve", json=body(ids, h))).json()))
    def order(answer: dict) -> list[str]:
        return [i["id"] for i in answer["items"]]

    assert [(f["cached"], a["cached"]) for f, a in pairs] == [(False, True)] * len(pairs)
    assert [order(a) for _, a in pairs] == [order(f) for f, _ in pairs]
    assert [a["items"] for _, a in pairs] == [f["items"] for f, _ in pairs]  # scores too


async def test_an_in_process_cache_hit_answers_exactly_what_the_uncached_request_answered(
    tiny_bundle, root
):
    ids = external_ids(tiny_bundle.path)
    histories = user_histories(tiny_bundle, 6, seed=11)
    async with running(real_settings(root), loader=load_engine) as client:
        assert client.app.state.cache.backend == "lru"
        pairs = []
        for h in histories:
            first = await client.post("/retrieve", json=body(ids, h))
            await client.app.state.batcher.settle_writes()
            pairs.append((first.json(), (await client.post("/retrieve", json=body(ids, h))).json()))
    for first, again in pairs:
        assert (first["cached"], again["cached"]) == (False, True)
        assert again["items"] == first["items"]
