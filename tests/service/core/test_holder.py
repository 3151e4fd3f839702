"""The model holder waiting for a first export: live, not ready, then serving the bundle the
pointer leads to; a broken export is reported once and does not stop the wait; a reload
without a path follows the pointer anew."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.service.conftest import TOKEN, running
from tests.service.fakes import FakeLoader, external_id

pytestmark = pytest.mark.anyio
AUTH = {"Authorization": f"Bearer {TOKEN}"}
BODY = {"history": [external_id(i) for i in (4, 2)], "n": 2}


@contextmanager
def service_log() -> Iterator[list[str]]:
    """Messages the ``service`` loggers emit meanwhile (whatever handlers are configured)."""
    messages: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    logger, handler = logging.getLogger("service"), Keep(logging.INFO)
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def publish(root: Path, version: str) -> None:
    """What the exporter does: a finished bundle folder, then ``current`` moved onto it."""
    (root / version).mkdir()
    (root / version / "manifest.json").write_text("{}")
    tmp = root / ".current.tmp"
    tmp.symlink_to(version)
    tmp.replace(root / "current")


async def until_ready(client, seconds: float = 10.0):
    for _ in range(int(seconds / 0.02)):
        r = await client.get("/v2/health/ready")
        if r.status_code == 200:
            return r
        await asyncio.sleep(0.02)
    raise AssertionError("never became ready")


@pytest.fixture
def empty_root(tmp_path) -> Path:
    root = tmp_path / "artifacts"
    root.mkdir()
    return root


async def test_no_bundle_yet_is_live_not_ready_then_ready_when_one_is_published(
    make_settings, empty_root
):
    settings = make_settings(artifacts=empty_root / "current", artifacts_poll_s=0.02)
    with service_log() as log:
        async with running(settings) as client:
            live = await client.get("/v2/health/live")
            ready = await client.get("/v2/health/ready")
            retrieve = await client.post("/retrieve", json=BODY)
            publish(empty_root, "v5")
            became = await until_ready(client)
            answer = await client.post("/retrieve", json=BODY)
    assert live.status_code == 200 and ready.status_code == 503
    assert retrieve.status_code == 503 and retrieve.json()["code"] == "not_ready"
    assert became.json() == {"ready": True, "model_version": "v5"}  # the pointer, followed
    assert answer.status_code == 200 and answer.json()["model_version"] == "v5"
    waiting = [m for m in log if "no bundle at" in m]
    assert len(waiting) == 1 and str(empty_root / "current") in waiting[0]


async def test_a_broken_export_is_reported_once_and_the_next_good_one_is_served(
    make_settings, empty_root
):
    settings = make_settings(artifacts=empty_root / "current", artifacts_poll_s=0.02)
    with service_log() as log:
        async with running(settings) as client:
            publish(empty_root, "bad-v9")  # the fake loader refuses it like a checksum error
            await asyncio.sleep(0.3)  # many polls
            still = await client.get("/v2/health/ready")
            publish(empty_root, "v6")
            became = await until_ready(client)
    rejected = [m for m in log if "rejected" in m]
    assert still.status_code == 503
    assert len(rejected) == 1 and "bad-v9" in rejected[0]
    assert became.json()["model_version"] == "v6"


async def test_a_reload_without_a_path_follows_the_pointer_to_the_latest_export(
    make_settings, empty_root
):
    publish(empty_root, "v1")
    settings = make_settings(artifacts=empty_root / "current", reload_enabled=True,
                             reload_token=TOKEN)
    async with running(settings) as client:
        before = (await client.get("/v2/health/ready")).json()["model_version"]
        publish(empty_root, "v2")
        r = await client.post("/v1/admin/reload", headers=AUTH)
        after = (await client.post("/retrieve", json=BODY)).json()["model_version"]
    assert before == "v1" and r.status_code == 200, r.text
    assert r.json()["model_version"] == "v2" and r.json()["bundle_path"] == str(empty_root / "v2")
    assert after == "v2"


async def test_shutting_down_while_waiting_stops_the_wait(make_settings, empty_root):
    loader = FakeLoader()
    settings = make_settings(artifacts=empty_root / "current", artifacts_poll_s=0.02)
    async with running(settings, loader) as client:
        assert (await client.get("/v2/health/ready")).status_code == 503
    publish(empty_root, "v7")
    await asyncio.sleep(0.1)
    assert loader.engines == []  # nothing loaded after the lifespan ended
