"""GET /v1/model, the health routes and GET /metrics."""

from __future__ import annotations

import pytest

from tests.service.conftest import running
from tests.service.fakes import FakeLoader, external_id

pytestmark = pytest.mark.anyio


async def test_model_route_reports_the_model_device_and_limits(make_settings):
    async with running(make_settings(max_n=42)) as client:
        r = await client.get("/v1/model")
    body = r.json()
    assert r.status_code == 200
    assert body["version"] == "v1" and body["n_items"] == 300 and body["k"] == 4
    assert body["providers"] == ["FakeProvider"] and body["device"] == "cpu"
    assert body["max_history"] == 20 and body["limits"]["max_n"] == 42
    assert body["cache_backend"] == "lru"
    assert "bundle_path" not in body


async def test_ready_reports_the_served_version(make_settings):
    async with running(make_settings()) as client:
        r = await client.get("/v2/health/ready")
    assert r.status_code == 200 and r.json() == {"ready": True, "model_version": "v1"}


EXPECTED_SERIES = [
    "seater_request_seconds_bucket",
    "seater_queue_wait_seconds_bucket",
    "seater_encoder_seconds_bucket",
    "seater_beam_search_seconds_bucket",
    "seater_batch_size_bucket",
    "seater_cache_hits_total",
    "seater_cache_misses_total",
    "seater_requests_total",
    "seater_overload_rejections_total",
    "seater_reloads_total",
    "seater_model_info",
    'seater_cache_errors_total{op="get"}',
    'seater_cache_bypassed_total{op="get"}',
    "seater_cache_breaker_open",
]


async def test_metrics_are_exposed_with_the_documented_names(make_settings):
    async with running(make_settings()) as client:
        await client.post("/retrieve", json={"history": [external_id(1)], "n": 2})
        r = await client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    for name in EXPECTED_SERIES:
        assert f"\n{name}" in text, name
    assert 'seater_request_seconds_count{method="POST",route="/retrieve"} 1.0' in text
    assert 'seater_requests_total{method="POST",route="/retrieve",status="200"} 1.0' in text


async def test_two_apps_do_not_share_metrics(make_settings):
    async with running(make_settings()) as a, running(make_settings()) as b:
        await a.post("/retrieve", json={"history": [external_id(1)]})
        text = (await b.get("/metrics")).text
    assert 'route="/retrieve"' not in text


async def test_openapi_documents_examples_bounds_and_error_shapes(make_settings):
    async with running(make_settings()) as client:
        spec = (await client.get("/openapi.json")).json()
    req = spec["components"]["schemas"]["RetrieveRequest"]
    assert req["examples"] and req["properties"]["n"]["maximum"] >= 100
    responses = spec["paths"]["/retrieve"]["post"]["responses"]
    assert responses["422"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "ErrorResponse"
    )
    assert {"/retrieve", "/v1/model", "/v2/health/live", "/v2/health/ready"} <= set(spec["paths"])
    # the retrieve route parses its own body: the document still names its models
    post = spec["paths"]["/retrieve"]["post"]
    body = post["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert body.endswith("/RetrieveRequest") and post["requestBody"]["required"]
    assert responses["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/RetrieveResponse")
    assert not post.get("parameters")  # `request` is not a parameter


async def test_openapi_documents_the_filters_with_examples(make_settings):
    async with running(make_settings()) as client:
        spec = (await client.get("/openapi.json")).json()
    schemas = spec["components"]["schemas"]
    filters = schemas["ItemFilters"]
    assert "Beauty > Makeup > Lips" in filters["description"]  # the prefix rule, spelled out
    assert {"categories": ["Beauty > Makeup"]} in filters["examples"]
    assert filters["properties"]["attributes"]["description"]
    assert any("filters" in e for e in schemas["RetrieveRequest"]["examples"])
    assert schemas["ModelResponse"]["properties"]["filters"]["$ref"].endswith("FilterNames")


async def test_the_model_route_says_what_the_model_can_filter_on(make_settings):
    async with running(make_settings(), FakeLoader(metadata=True)) as client:
        meta = (await client.get("/v1/model")).json()
    async with running(make_settings()) as client:
        bare = (await client.get("/v1/model")).json()
    assert meta["filters"] == {"categories": True, "attributes": ["brand"]}
    assert bare["filters"] == {"categories": False, "attributes": []}
