"""Property-based fuzzing of the HTTP API from its own OpenAPI document (schemathesis):
valid and invalid bodies alike must never produce a 5xx, and every answer must match the
documented status codes, content types and schemas. Runs against a real uvicorn server
with the fake engine; the example budget is small to keep the suite fast."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks

from service.app import create_app
from service.settings import Settings
from tests.service.fakes import FakeLoader
from tests.service.server import serve

TOKEN = "s" * 32  # the fuzzer never sends it: the admin route must answer 401, not 5xx
# The document is the app's own; building an app does no I/O until its lifespan runs.
schema = schemathesis.openapi.from_dict(
    create_app(Settings(artifacts=None, reload_enabled=True, reload_token=TOKEN)).openapi()
)


@pytest.fixture(scope="module")
def base_url(tmp_path_factory):
    root = tmp_path_factory.mktemp("schemathesis")
    (root / "v1").mkdir()
    (root / "v1" / "manifest.json").write_text("{}")  # a bundle is there (the fake reads none)
    app_settings = Settings(
        artifacts=root / "v1",
        redis_url=None,
        max_wait_ms=1,
        reload_enabled=True,
        reload_token=TOKEN,
    )
    with serve(app_settings, FakeLoader()) as (url, _):
        yield url


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_never_answers_5xx_and_matches_its_spec(case, base_url):
    case.call_and_validate(
        base_url=base_url,
        checks=[
            checks.not_a_server_error,
            checks.status_code_conformance,
            checks.content_type_conformance,
            checks.response_schema_conformance,
        ],
    )
