"""Through a real uvicorn server on a free port: HTTP, JSON logs, graceful shutdown."""

from __future__ import annotations

import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from service.logs import JsonFormatter
from tests.service.fakes import FakeLoader, external_id
from tests.service.server import serve

BODY = {"history": [external_id(i) for i in (2, 7, 1, 8)], "n": 5}


def test_real_server_answers_retrieve_and_health(make_settings):
    with serve(make_settings(), FakeLoader()) as (url, _), httpx.Client(base_url=url) as http:
        live = http.get("/v2/health/live")
        ready = http.get("/v2/health/ready")
        r = http.post("/retrieve", json=BODY)
        again = http.post("/retrieve", json=BODY)
        bad = http.post("/retrieve", content=b"[", headers={"content-type": "application/json"})
        metrics = http.get("/metrics").text
    assert (live.status_code, ready.status_code, r.status_code) == (200, 200, 200)
    assert len(r.json()["items"]) == 5 and again.json()["cached"] is True
    assert bad.status_code == 422 and "not valid JSON" in bad.json()["message"]
    assert 'seater_requests_total{method="POST",route="/retrieve",status="200"} 2.0' in metrics


def test_graceful_shutdown_finishes_in_flight_requests(make_settings):
    loader = FakeLoader(search_delay_s=0.4)
    settings = make_settings(max_batch_size=4, max_wait_ms=1)
    with serve(settings, loader) as (url, server), ThreadPoolExecutor(12) as pool:

        def call(i: int) -> int:
            body = {"history": [external_id(i)], "n": 2}
            return httpx.post(f"{url}/retrieve", json=body, timeout=30).status_code

        futures = [pool.submit(call, i) for i in range(12)]
        deadline = time.monotonic() + 10
        while len(server.server_state.tasks) < 12 and time.monotonic() < deadline:
            time.sleep(0.005)  # until all twelve are in flight (received by the server)
        pending = sum(not f.done() for f in futures)
        server.should_exit = True  # what SIGTERM does
        codes = [f.result(timeout=30) for f in futures]
    assert pending >= 4  # batches of 4 at 0.4 s each: most were still waiting at shutdown
    assert codes == [200] * 12
    assert loader.engines[0].closed  # the lifespan closed the engine after draining


def test_json_log_lines_carry_the_request_id(make_settings):
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    access = logging.getLogger("service.access")
    handler = Keep()
    access.addHandler(handler)
    old_level = access.level
    access.setLevel(logging.INFO)
    try:
        with serve(make_settings(), FakeLoader()) as (url, _):
            r = httpx.post(f"{url}/retrieve", json=BODY, headers={"X-Request-ID": "req-42"})
    finally:
        access.removeHandler(handler)
        access.setLevel(old_level)
    assert r.headers["x-request-id"] == "req-42"
    access_line = next(rec for rec in records if rec.getMessage().startswith("POST /retrieve"))
    line = json.loads(JsonFormatter().format(access_line))
    assert line["request_id"] == "req-42" and line["status"] == 200
    assert line["route"] == "/retrieve" and line["level"] == "INFO" and line["duration_ms"] > 0
