"""POST /retrieve over HTTP against the app (fake engine): answers, limits, errors."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from tests.service.conftest import metric, running
from tests.service.fakes import (
    FakeEngine,
    FakeLoader,
    external_id,
    fake_brand,
    fake_categories,
)

pytestmark = pytest.mark.anyio

HISTORY = [external_id(i) for i in (5, 17, 42, 99)]


def expected_ids(history: list[int], n: int, beam: int = 50, exclude: set[int] = frozenset()):
    """What the fake model must return, computed without the service."""
    scores = FakeEngine().scores(np.array(history))
    scores[min(4 * beam, len(scores)) :] = -np.inf
    scores[list(exclude)] = -np.inf
    order = [i for i in np.argsort(-scores, kind="stable")[:n] if np.isfinite(scores[i])]
    return [external_id(i) for i in order]


async def test_top_n_matches_the_model_and_is_well_formed(make_settings):
    async with running(make_settings()) as client:
        r = await client.post("/retrieve", json={"history": HISTORY, "n": 7})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [item["id"] for item in body["items"]] == expected_ids(
        [5, 17, 42, 99], 7, exclude={5, 17, 42, 99}
    )
    scores = [item["score"] for item in body["items"]]
    assert scores == sorted(scores, reverse=True) and all(s < 0 for s in scores)
    depth = FakeEngine().depth
    assert all(len(item["code"]) == depth for item in body["items"])
    assert body["model_version"] == "v1"
    assert body["cached"] is False and body["history_used"] == 4 and body["unknown_ids"] == []
    assert len(r.headers["x-request-id"]) == 32


async def test_request_id_is_echoed_when_sane_and_replaced_when_not(make_settings):
    async with running(make_settings()) as client:
        ok = await client.get("/v2/health/live", headers={"X-Request-ID": "abc-123"})
        bad = await client.get("/v2/health/live", headers={"X-Request-ID": "x" * 500})
    assert ok.headers["x-request-id"] == "abc-123"
    assert bad.headers["x-request-id"] != "x" * 500


async def test_generated_request_ids_are_distinct_within_and_across_app_instances(make_settings):
    async with running(make_settings()) as a, running(make_settings()) as b:
        ids = [(await c.get("/v2/health/live")).headers["x-request-id"]
               for c in (a, a, a, b, b)]
    assert len(set(ids)) == 5 and all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert ids[0][:16] != ids[3][:16]  # each process draws its own random prefix


async def test_repeat_request_hits_the_lru_cache_with_the_same_answer(make_settings):
    async with running(make_settings()) as client:
        first = await client.post("/retrieve", json={"history": HISTORY, "n": 5})
        second = await client.post("/retrieve", json={"history": HISTORY, "n": 5})
        assert metric(client, "seater_cache_hits_total") == 1
        assert metric(client, "seater_cache_misses_total") == 1
        assert client.app.state.cache.backend == "lru"
    assert (first.json()["cached"], second.json()["cached"]) == (False, True)
    assert first.json()["items"] == second.json()["items"]


async def test_exclusions_are_honoured(make_settings):
    async with running(make_settings(max_n=300, max_beam=300)) as client:
        base = (await client.post("/retrieve", json={"history": HISTORY, "n": 5})).json()
        top = [item["id"] for item in base["items"]]
        r = await client.post("/retrieve", json={"history": HISTORY, "n": 5, "exclude": top[:2]})
        seen = await client.post("/retrieve", json={"history": HISTORY, "n": 300, "beam_size": 300})
        unseen = await client.post(
            "/retrieve",
            json={"history": HISTORY, "n": 300, "beam_size": 300, "exclude_seen": False},
        )
    ids = [item["id"] for item in r.json()["items"]]
    assert not set(ids) & set(top[:2]) and ids[:3] == top[2:5]
    assert not set(HISTORY) & {item["id"] for item in seen.json()["items"]}
    assert set(HISTORY) <= {item["id"] for item in unseen.json()["items"]}


async def test_long_history_is_truncated_to_the_most_recent_items(make_settings):
    long = [external_id(i) for i in range(60)]  # fake max_history = 20
    async with running(make_settings()) as client:
        r = await client.post("/retrieve", json={"history": long, "n": 5, "exclude_seen": False})
        tail = await client.post(
            "/retrieve", json={"history": long[-20:], "n": 5, "exclude_seen": False}
        )
    assert r.json()["history_used"] == 20
    assert r.json()["items"] == tail.json()["items"]


async def test_unknown_ids_are_dropped_and_reported_when_not_strict(make_settings):
    async with running(make_settings()) as client:
        r = await client.post(
            "/retrieve", json={"history": ["nope", *HISTORY], "n": 3, "exclude": ["gone"]}
        )
        plain = await client.post("/retrieve", json={"history": HISTORY, "n": 3})
    assert r.status_code == 200
    assert r.json()["unknown_ids"] == ["nope", "gone"]
    assert r.json()["items"] == plain.json()["items"]


async def test_unknown_ids_are_named_in_a_422_when_strict(make_settings):
    async with running(make_settings(strict_ids=True)) as client:
        r = await client.post("/retrieve", json={"history": ["nope", *HISTORY, "zilch"]})
    assert r.status_code == 422
    body = r.json()
    assert body["code"] == "unknown_items"
    assert "'nope'" in body["message"] and "'zilch'" in body["message"]
    assert "knows 300 item ids, e.g. '1000', '1001'" in body["message"]
    assert body["request_id"] == r.headers["x-request-id"]


async def test_history_of_only_unknown_ids_is_a_422(make_settings):
    async with running(make_settings()) as client:
        r = await client.post("/retrieve", json={"history": ["a", "b"]})
    message = r.json()["message"]
    assert r.status_code == 422 and "none of the 2 history ids" in message
    # Actionable without a catalogue dump: how many ids, two real ones, where the rest live.
    assert "knows 300 item ids, e.g. '1000', '1001'" in message
    assert "items.json" in message and "GET /v1/model" not in message
    assert "'1002'" not in message


def allowed_fake(index: int, categories=(), brands=None) -> bool:
    """The filter rule for the fake catalogue (tests.service.fakes), written out."""
    paths = [p.split(" > ") for p in fake_categories(index)]
    ok = not categories or any(p[: len(c.split(" > "))] == c.split(" > ")
                               for p in paths for c in categories)
    return ok and (brands is None or fake_brand(index) in brands)


async def test_filters_select_by_category_prefix_and_attribute_values(make_settings):
    cats, brands = ["Dept 1", "Sale"], ["Acme", "Zed"]
    body = {"history": HISTORY, "n": 40, "beam_size": 300,
            "filters": {"categories": cats, "attributes": {"brand": brands}}}
    async with running(make_settings(max_n=300, max_beam=300), FakeLoader(metadata=True)) as c:
        r = await c.post("/retrieve", json=body)
        every = await c.post("/retrieve", json={**body, "n": 300})
        empty = await c.post("/retrieve", json={**body, "filters": {}})
        plain = await c.post("/retrieve", json={"history": HISTORY, "n": 300, "beam_size": 300})
    assert r.status_code == 200, r.text
    ids = [i["id"] for i in r.json()["items"]]
    index = {external_id(i): i for i in range(300)}
    assert len(ids) == 40 and all(allowed_fake(index[i], cats, brands) for i in ids)
    want = {external_id(i) for i in range(300) if allowed_fake(i, cats, brands)} - set(HISTORY)
    assert {i["id"] for i in every.json()["items"]} == want
    assert empty.json()["items"] == plain.json()["items"][:40]  # empty filters: no filter
    # the filtered answer is the unfiltered ranking with the others left out
    assert ids == [i["id"] for i in plain.json()["items"] if i["id"] in want][:40]


async def test_filters_on_missing_metadata_are_422s_naming_what_exists(make_settings):
    async with running(make_settings(), FakeLoader(metadata=True)) as client:
        size = await client.post("/retrieve", json={
            "history": HISTORY, "filters": {"attributes": {"size": ["M"], "brand": ["Zed"]}}})
    async with running(make_settings()) as client:  # a catalogue without metadata
        cats = await client.post("/retrieve", json={
            "history": HISTORY, "filters": {"categories": ["Dept 1"]}})
    assert size.status_code == 422, size.text
    assert size.json()["details"][0]["loc"] == "body.filters.attributes.size"
    assert "'size'" in size.json()["message"] and "'brand'" in size.json()["message"]
    assert cats.status_code == 422 and "no categories" in cats.json()["message"]
    assert "(model v1)" in cats.json()["message"]


async def test_a_micro_batch_gets_one_mask_row_per_distinct_filter(make_settings):
    loader = FakeLoader(metadata=True, search_delay_s=0.05)
    f1 = {"categories": ["Dept 0"]}
    f2 = {"attributes": {"brand": ["Nova"]}}
    bodies = [{"history": HISTORY, "n": 5}, {"history": HISTORY, "n": 5, "filters": f1},
              {"history": HISTORY, "n": 5, "filters": f2},
              {"history": HISTORY[:2], "n": 3, "filters": {"categories": [" Dept 0 "]}}]
    async with running(make_settings(max_wait_ms=50), loader) as client:
        solo = [await client.post("/retrieve", json=b) for b in bodies]
        loader.engines[0].mask_rows.clear()
        together = await asyncio.gather(*(client.post("/retrieve", json=b) for b in bodies))
    assert [r.json()["items"] for r in together] == [r.json()["items"] for r in solo]
    # all-true row for the unfiltered request, one row per distinct filter (spacing aside)
    assert loader.engines[0].mask_rows == [(3, [0, 1, 2, 1])]


MALFORMED = [
    ({}, "body.history: Field required"),
    ({"history": []}, "body.history: List should have at least 1 item"),
    ({"history": "1005"}, "body.history: Input should be a valid array"),
    ({"history": [1005]}, "body.history.0: Input should be a valid string"),
    ({"history": [""]}, "body.history.0: String should have at least 1 character"),
    ({"history": HISTORY, "n": 0}, "body.n: Input should be greater than or equal to 1"),
    ({"history": HISTORY, "n": "ten"}, "body.n: Input should be a valid integer"),
    ({"history": HISTORY, "n": 20, "beam_size": 10}, "n (20) must not exceed beam_size (10)"),
    ({"history": HISTORY, "beam": 10}, "body.beam: Extra inputs are not permitted"),
    ({"history": HISTORY, "exclude_seen": "maybe"}, "body.exclude_seen: Input should be a valid"),
    ([1, 2], "body: Input should be an object"),
    ({"history": HISTORY, "filters": {"brand": ["x"]}},
     "body.filters.brand: Extra inputs are not permitted"),
    ({"history": HISTORY, "filters": {"attributes": {"brand": []}}},
     "body.filters.attributes.brand: List should have at least 1 item"),
    ({"history": HISTORY, "filters": {"categories": "Dept 1"}},
     "body.filters.categories: Input should be a valid array"),
    ({"history": HISTORY, "filters": {"categories": [" > "]}},
     "body.filters.categories: category path ' > ' names no level"),
]


@pytest.mark.parametrize(("payload", "message"), MALFORMED)
async def test_malformed_bodies_are_422_with_a_message_saying_what_to_fix(
    make_settings, payload, message
):
    async with running(make_settings()) as client:
        r = await client.post("/retrieve", json=payload)
    assert r.status_code == 422, r.text
    assert message in r.json()["message"], r.json()["message"]
    assert r.json()["details"]


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b'{"history": [', "application/json"),
        (b"\xc2\x88f\xff", "application/json"),  # not UTF-8
        (b"history=1", "text/plain"),
        (b"", None),
    ],
)
async def test_non_json_bodies_are_4xx_not_5xx(make_settings, content, content_type):
    headers = {"content-type": content_type} if content_type else {}
    async with running(make_settings()) as client:
        r = await client.post("/retrieve", content=content, headers=headers)
    assert 400 <= r.status_code < 500, r.text
    assert r.json()["message"]


async def test_a_body_that_is_not_json_says_where_and_what_to_send(make_settings):
    async with running(make_settings()) as client:
        broken = await client.post("/retrieve", content=b'{"history": [',
                                   headers={"content-type": "application/json"})
        form = await client.post("/retrieve", content=b"history=1",
                                 headers={"content-type": "application/x-www-form-urlencoded"})
        bare = await client.post("/retrieve", content=b'{"history": ["%s"]}' % HISTORY[0].encode())
        typed = await client.post("/retrieve", content=b'{"history": ["%s"]}' % HISTORY[0].encode(),
                                  headers={"content-type": "application/json; charset=utf-8"})
    assert broken.status_code == 422
    message = broken.json()["message"]
    assert "not valid JSON" in message and "line 1 column 13" in message, message
    assert form.status_code == 415 and "Content-Type: application/json" in form.json()["message"]
    assert bare.status_code == 200 and typed.status_code == 200  # no header: taken as JSON
    assert bare.json()["items"] == typed.json()["items"]


async def test_configured_limits_are_enforced_with_the_limit_in_the_message(make_settings):
    settings = make_settings(max_n=20, max_beam=40, default_beam=30, max_history_length=8)
    async with running(settings) as client:
        too_many = await client.post("/retrieve", json={"history": HISTORY, "n": 25})
        too_wide = await client.post("/retrieve", json={"history": HISTORY, "beam_size": 41})
        too_long = await client.post("/retrieve", json={"history": HISTORY * 3})
    assert too_many.status_code == 422 and "n is 25, the limit is 20" in too_many.text
    assert too_wide.status_code == 422 and "beam_size is 41, the limit is 40" in too_wide.text
    assert too_long.status_code == 422 and "history length is 12, the limit is 8" in too_long.text


async def test_oversize_body_is_413_by_content_length_and_when_chunked(make_settings):
    big = {"history": [external_id(1)] * 2000}
    async with running(make_settings(max_body_bytes=4096)) as client:
        declared = await client.post("/retrieve", json=big)

        async def chunks():
            for _ in range(10):
                yield b" " * 1000

        chunked = await client.post(
            "/retrieve", content=chunks(), headers={"content-type": "application/json"}
        )
        small_chunked_body = b'{"history": ["1005"], "n": 2}'

        async def small():
            yield small_chunked_body

        ok = await client.post(
            "/retrieve", content=small(), headers={"content-type": "application/json"}
        )
    assert declared.status_code == 413 and "limit is 4096 bytes" in declared.json()["message"]
    assert chunked.status_code == 413
    assert ok.status_code == 200 and len(ok.json()["items"]) == 2


async def test_no_model_means_503_on_retrieve_and_not_ready(make_settings):
    async with running(make_settings(artifacts=None)) as client:
        r = await client.post("/retrieve", json={"history": HISTORY})
        ready = await client.get("/v2/health/ready")
        live = await client.get("/v2/health/live")
        model = await client.get("/v1/model")
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    assert ready.status_code == 503 and ready.json() == {"ready": False, "model_version": None}
    assert live.status_code == 200 and live.json() == {"live": True}
    assert model.status_code == 503


async def test_full_queue_answers_503_with_retry_after(make_settings):
    settings = make_settings(queue_size=2, max_batch_size=1, max_wait_ms=0, retry_after_s=3)
    loader = FakeLoader(search_delay_s=0.05)
    async with running(settings, loader) as client:
        answers = await asyncio.gather(
            *(client.post("/retrieve", json={"history": HISTORY, "n": 3}) for _ in range(12))
        )
        rejected = metric(client, "seater_overload_rejections_total")
    codes = [r.status_code for r in answers]
    assert codes.count(200) >= 2 and codes.count(503) >= 1, codes
    assert set(codes) <= {200, 503}
    over = next(r for r in answers if r.status_code == 503)
    assert over.headers["retry-after"] == "3" and over.json()["code"] == "overloaded"
    assert rejected == codes.count(503)


async def test_engine_failure_fails_every_request_of_the_batch_with_a_clean_500(make_settings):
    loader = FakeLoader()
    async with running(make_settings(), loader) as client:
        loader.engines[0].fail_search = True  # passed its smoke test, breaks now
        answers = await asyncio.gather(
            *(client.post("/retrieve", json={"history": HISTORY, "n": 2}) for _ in range(4))
        )
        errors = metric(client, "seater_retrieval_errors_total")
    assert [r.status_code for r in answers] == [500] * 4
    assert all(r.json()["code"] == "internal_error" for r in answers)
    assert "exploded" not in answers[0].json()["message"]  # internals stay in the log
    assert errors >= 1
