"""POST /v1/admin/reload: token, atomic swap, bad bundles keep the old model, no lost requests."""

from __future__ import annotations

import asyncio

import pytest

from tests.service.conftest import TOKEN, metric, running
from tests.service.fakes import FakeLoader, external_id

pytestmark = pytest.mark.anyio
AUTH = {"Authorization": f"Bearer {TOKEN}"}
BODY = {"history": [external_id(i) for i in (8, 6, 7)], "n": 3}


@pytest.fixture
def reload_settings(make_settings):
    return make_settings(reload_enabled=True, reload_token=TOKEN)


async def test_reload_route_is_absent_unless_enabled(make_settings):
    async with running(make_settings()) as client:
        r = await client.post("/v1/admin/reload", headers=AUTH)
    assert r.status_code == 404


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), ({"Authorization": "Basic abc"}, 401), ({"Authorization": "Bearer wrong"}, 403)],
)
async def test_reload_needs_the_bearer_token(reload_settings, headers, status):
    async with running(reload_settings) as client:
        r = await client.post("/v1/admin/reload", headers=headers, json={"path": "x"})
        version = (await client.get("/v1/model")).json()["version"]
    assert r.status_code == status and r.json()["message"]
    assert version == "v1"


async def test_reload_swaps_to_the_new_bundle(reload_settings, artifacts_root):
    async with running(reload_settings) as client:
        r = await client.post(
            "/v1/admin/reload", headers=AUTH, json={"path": str(artifacts_root / "v2")}
        )
        model = (await client.get("/v1/model")).json()
        answer = (await client.post("/retrieve", json=BODY)).json()
        ok = metric(client, "seater_reloads_total", {"outcome": "success"})
        info = metric(client, "seater_model_info", {"version": "v2"})
        old = metric(client, "seater_model_info", {"version": "v1"})
    assert r.status_code == 200, r.text
    assert r.json()["previous_version"] == "v1" and r.json()["model_version"] == "v2"
    assert model["version"] == "v2" and answer["model_version"] == "v2"
    assert (ok, info, old) == (2, 1, 0)  # startup + reload


async def test_reload_without_body_reloads_the_current_path(reload_settings):
    loader = FakeLoader()
    async with running(reload_settings, loader) as client:
        r = await client.post("/v1/admin/reload", headers=AUTH)
    assert r.status_code == 200 and r.json()["model_version"] == "v1"
    assert len(loader.engines) == 2  # a fresh engine was built and swapped in


@pytest.mark.parametrize(
    ("name", "reason"),
    [("bad-v9", "checksum mismatch for encoder.onnx"), ("broken-v8", "beam search failed")],
)
async def test_a_bad_bundle_keeps_the_old_model_and_says_why(
    reload_settings, artifacts_root, name, reason
):
    async with running(reload_settings) as client:
        r = await client.post(
            "/v1/admin/reload", headers=AUTH, json={"path": str(artifacts_root / name)}
        )
        model = (await client.get("/v1/model")).json()
        answer = await client.post("/retrieve", json=BODY)
        failed = metric(client, "seater_reloads_total", {"outcome": "failed"})
    assert r.status_code == 422
    assert r.json()["code"] == "bundle_rejected"
    assert reason in r.json()["message"] and "still serving v1" in r.json()["message"]
    assert model["version"] == "v1" and answer.status_code == 200
    assert answer.json()["model_version"] == "v1" and failed == 1


async def test_reload_path_must_stay_under_the_reload_root(reload_settings, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    async with running(reload_settings) as client:
        r = await client.post("/v1/admin/reload", headers=AUTH, json={"path": str(elsewhere)})
        escape = await client.post(
            "/v1/admin/reload", headers=AUTH, json={"path": str(elsewhere / ".." / "x")}
        )
    assert r.status_code == 403 and "outside the reload root" in r.json()["message"]
    assert escape.status_code == 403


async def test_a_second_reload_while_one_runs_is_409(reload_settings, artifacts_root):
    async with running(reload_settings, FakeLoader(load_delay_s=0.3)) as client:
        first, second = await asyncio.gather(
            client.post(
                "/v1/admin/reload", headers=AUTH, json={"path": str(artifacts_root / "v2")}
            ),
            _after(0.05, client.post("/v1/admin/reload", headers=AUTH)),
        )
    assert first.status_code == 200 and second.status_code == 409


async def _after(delay: float, coro):
    await asyncio.sleep(delay)
    return await coro


async def test_reload_under_concurrent_load_loses_no_request(reload_settings, artifacts_root):
    loader = FakeLoader(load_delay_s=0.05, search_delay_s=0.002)
    async with running(reload_settings, loader) as client:
        stop = asyncio.Event()
        answers: list = []

        async def user(i: int) -> None:
            while not stop.is_set():
                body = {"history": [external_id((i * 11 + j) % 300) for j in range(4)], "n": 3}
                answers.append(await client.post("/retrieve", json=body))

        users = [asyncio.create_task(user(i)) for i in range(8)]
        reloads = []
        for name in ("v2", "v3", "v1", "v2"):
            await asyncio.sleep(0.05)
            reloads.append(
                await client.post(
                    "/v1/admin/reload", headers=AUTH, json={"path": str(artifacts_root / name)}
                )
            )
        await asyncio.sleep(0.05)
        stop.set()
        await asyncio.gather(*users)
    assert [r.status_code for r in reloads] == [200] * 4
    assert len(answers) > 50
    assert {r.status_code for r in answers} == {200}
    versions = {r.json()["model_version"] for r in answers}
    assert len(versions) >= 2 and versions <= {"v1", "v2", "v3"}


@pytest.mark.parametrize("freeze", [True, False])
async def test_each_load_freezes_the_heap_only_when_asked(make_settings, artifacts_root, freeze):
    import gc

    gc.unfreeze()
    settings = make_settings(reload_enabled=True, reload_token=TOKEN, gc_freeze=freeze)
    try:
        async with running(settings) as client:
            after_start = gc.get_freeze_count()
            gc.unfreeze()
            r = await client.post(
                "/v1/admin/reload", headers=AUTH, json={"path": str(artifacts_root / "v2")}
            )
            after_reload = gc.get_freeze_count()
    finally:
        gc.unfreeze()  # the test process's heap goes back to the collector
    assert r.status_code == 200
    assert (after_start > 0, after_reload > 0) == (freeze, freeze)
