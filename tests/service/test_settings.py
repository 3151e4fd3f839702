"""Settings: environment names, defaults, and refusal of unsafe values."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from service.settings import Settings

ENV_NAMES = ("SEATER_RELOAD_ENABLED", "SEATER_RELOAD_TOKEN", "REDIS_URL", "SEATER_REDIS_URL",
             "SEATER_MAX_N", "SEATER_MAX_WAIT_MS", "SEATER_ARTIFACTS")  # fmt: skip


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)


def test_reads_prefixed_env_and_plain_redis_url(monkeypatch):
    monkeypatch.setenv("SEATER_MAX_N", "77")
    monkeypatch.setenv("SEATER_MAX_WAIT_MS", "3.5")
    monkeypatch.setenv("REDIS_URL", "redis://cache:6379/1")
    monkeypatch.setenv("SEATER_ARTIFACTS", "/artifacts/v1")
    s = Settings()
    assert (s.max_n, s.max_wait_ms, s.redis_url) == (77, 3.5, "redis://cache:6379/1")
    assert str(s.artifacts) == "/artifacts/v1"
    assert str(s.effective_reload_root) == "/artifacts"


def test_empty_redis_url_means_the_in_process_cache(monkeypatch):
    monkeypatch.setenv("REDIS_URL", "")
    assert Settings().redis_url is None


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"reload_enabled": True}, "SEATER_RELOAD_TOKEN must be set"),
        ({"reload_enabled": True, "reload_token": "short"}, "at least 16 characters"),
        ({"default_beam": 300, "max_beam": 200}, "SEATER_DEFAULT_BEAM (300) exceeds"),
        ({"max_n": 150, "max_beam": 100, "default_beam": 50}, "n can never exceed the beam"),
        ({"redis_url": "http://cache:6379"}, "REDIS_URL must start with redis://"),
        ({"max_batch_size": 0}, "max_batch_size"),
        ({"max_body_bytes": 10}, "max_body_bytes"),
        ({"providers": "tpu"}, "providers"),
        ({"max_n": 5000}, "max_n"),
    ],
)
def test_unsafe_or_inconsistent_values_are_refused(values, message):
    with pytest.raises(ValidationError) as err:
        Settings(**values)
    assert message in str(err.value)


def test_reload_token_is_secret_and_enabled_with_a_strong_one():
    s = Settings(reload_enabled=True, reload_token="x" * 16)
    assert "x" * 16 not in repr(s) and s.reload_token.get_secret_value() == "x" * 16


def test_env_reload_without_token_fails_fast(monkeypatch):
    monkeypatch.setenv("SEATER_RELOAD_ENABLED", "true")
    with pytest.raises(ValidationError, match="SEATER_RELOAD_TOKEN"):
        Settings()
