"""Fixtures for service tests: the app built by its factory with a fake engine, driven over
HTTP (httpx against the ASGI app, lifespan included), and the real Redis under a unique key
prefix that is cleaned up afterwards."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from service.app import create_app
from service.settings import Settings
from tests.service.fakes import FakeLoader

REDIS_URL = "redis://127.0.0.1:6379/0"
TOKEN = "t" * 32


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def artifacts_root(tmp_path: Path) -> Path:
    """A folder of fake bundle directories: a manifest says a bundle is there, and the fake
    loader reads only their names."""
    for name in ("v1", "v2", "v3", "bad-v9", "broken-v8"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "manifest.json").write_text("{}")
    return tmp_path


@pytest.fixture
def make_settings(artifacts_root: Path) -> Callable[..., Settings]:
    """Settings with test-friendly defaults; keyword arguments override."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "artifacts": artifacts_root / "v1",
            "redis_url": None,
            "max_wait_ms": 5.0,
            "log_json": False,
        }
        values.update(overrides)
        return Settings(**values)

    return make


@asynccontextmanager
async def running(
    settings: Settings, loader: Callable[..., Any] | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan and yield an HTTP client bound to it (``client.app``)."""
    app = create_app(settings, engine_loader=loader or FakeLoader())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", timeout=30
        ) as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


def metric(client: httpx.AsyncClient, name: str, labels: dict[str, str] | None = None) -> float:
    """Current value of a sample in the app's own registry (0 when absent)."""
    value = client.app.state.metrics.registry.get_sample_value(name, labels or {})  # type: ignore[attr-defined]
    return 0.0 if value is None else value


@pytest.fixture(scope="session")
def redis_available() -> bool:
    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_timeout=1).ping())
    except redis.RedisError:
        return False


@pytest.fixture
def redis_prefix(redis_available: bool) -> Iterator[str]:
    """A unique key prefix on the real Redis; deletes exactly its own keys afterwards."""
    if not redis_available:
        pytest.skip("Redis is not answering on 127.0.0.1:6379 (start redis-server)")
    prefix = f"seater-test-{uuid.uuid4().hex}:"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture(scope="session")
def meta_bundle(tiny_bundle, tmp_path_factory) -> Path:
    """The tiny model exported again with item metadata (categories and a brand), as a run
    trained with ``--items`` ships it."""
    from tests.service.bundles import export_with_items, with_metadata

    return export_with_items(tiny_bundle, tmp_path_factory.mktemp("meta"), "tiny-meta",
                             with_metadata(tiny_bundle))
