"""Service settings, read from the environment (prefix ``SEATER_``, plus plain ``REDIS_URL``).

Every limit the service enforces lives here so that operators tune one place, and the
validators refuse combinations that would make the service unsafe or inconsistent
(an admin endpoint without a strong token, a default beam above the allowed maximum...).
Hard caps (``HARD_*``) bound what any deployment may configure; the request schema uses
them as static OpenAPI bounds, and the configured limits are checked per request.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

HARD_MAX_HISTORY = 2048
HARD_MAX_N = 1000
HARD_MAX_BEAM = 1000
HARD_MAX_EXCLUDE = 10_000
HARD_MAX_ID_CHARS = 128
HARD_MAX_FILTER_VALUES = 256  # category paths, or values of one attribute, in one filter
HARD_MAX_FILTER_ATTRIBUTES = 32
HARD_MAX_FILTER_CHARS = 512  # one category path or attribute value
MIN_TOKEN_CHARS = 16

Providers = Literal["auto", "cpu", "cuda"]
GraphOptimization = Literal["disable", "basic", "extended", "all"]


class Settings(BaseSettings):
    """All knobs of one service process. Construct explicitly in tests; from env in prod."""

    model_config = SettingsConfigDict(
        env_prefix="SEATER_", extra="ignore", frozen=True, populate_by_name=True
    )

    # -- model bundle and reload ---------------------------------------------------------
    artifacts: Path | None = Field(
        None, description="Bundle directory loaded at startup, or a pointer to one (the "
        "exporter's artifacts/current symlink, followed at every load); unset = start unready."
    )
    artifacts_poll_s: float = Field(
        2.0, gt=0.0, le=3600.0, description="While no bundle is at SEATER_ARTIFACTS: how "
        "often to look for one (the service is live but not ready until it loads).")
    reload_enabled: bool = Field(False, description="Expose POST /v1/admin/reload.")
    reload_token: SecretStr | None = Field(None, description="Bearer token for reload.")
    reload_root: Path | None = Field(
        None, description="Reload paths must lie under this folder (default: artifacts' parent)."
    )

    # -- request limits --------------------------------------------------------------------
    max_history_length: int = Field(512, ge=1, le=HARD_MAX_HISTORY)
    max_n: int = Field(100, ge=1, le=HARD_MAX_N)
    max_beam: int = Field(200, ge=1, le=HARD_MAX_BEAM)
    default_beam: int = Field(50, ge=1, le=HARD_MAX_BEAM)
    max_exclude: int = Field(1000, ge=0, le=HARD_MAX_EXCLUDE)
    max_body_bytes: int = Field(256 * 1024, ge=1024, le=16 * 1024 * 1024)
    strict_ids: bool = Field(False, description="Unknown item ids: 422 (true) or dropped.")

    # -- micro-batching --------------------------------------------------------------------
    max_batch_size: int = Field(64, ge=1, le=1024)
    max_wait_ms: float = Field(
        0.0, ge=0.0, le=1000.0, description="How long a batch waits for more requests. 0: a "
        "batch takes what queued while the previous one decoded (two batch workers overlap "
        "gathering and decoding); on CPU waiting only added latency (reports/bench/"
        "service_wait0.json against service.json). A GPU may want 1-2 ms.")
    queue_size: int = Field(1024, ge=1, le=1_000_000)
    batch_workers: int = Field(
        2, ge=1, le=16, description="Batches decoded at once: while one is in ONNX Runtime "
        "(the GIL released) the next is gathered and started; compare with "
        "`python -m benchmarks.service --batch-workers 1`.")
    retry_after_s: int = Field(1, ge=1, le=3600)
    drain_timeout_s: float = Field(30.0, ge=0.0, le=600.0)
    gc_freeze: bool = Field(
        True, description="After each model load, exempt the live heap from garbage "
        "collection (gc.freeze): full collections over it were the p99 latency tail.")

    # -- cache -----------------------------------------------------------------------------
    redis_url: str | None = Field(
        None, validation_alias=AliasChoices("REDIS_URL", "SEATER_REDIS_URL", "redis_url")
    )
    cache_enabled: bool = True
    cache_prefix: str = Field("seater:enc:", min_length=1, max_length=64)
    cache_ttl_s: int = Field(3600, ge=1, le=30 * 24 * 3600)
    cache_dtype: Literal["float16", "float32"] = Field(
        "float16", description="Encoder states in Redis: float16 halves the memory; fresh "
        "states are rounded the same way before use, so a cached answer equals the uncached "
        "one (float32: both equal the offline float32 model).")
    lru_size: int = Field(10_000, ge=0, le=10_000_000)
    redis_timeout_ms: float = Field(20.0, gt=0.0, le=5000.0)
    breaker_threshold: int = Field(5, ge=1, le=1000)
    breaker_cooldown_s: float = Field(5.0, gt=0.0, le=3600.0)

    # -- ONNX Runtime ----------------------------------------------------------------------
    providers: Providers = "auto"
    intra_op_threads: int = Field(0, ge=0, le=256, description="0 = ONNX Runtime's default.")
    inter_op_threads: int = Field(1, ge=0, le=256)
    small_step_rows: int = Field(
        256, ge=0, le=1 << 20, description="CPU: decoder steps with fewer rows (requests x "
        "beam) run on a one-thread session; 0 = every step on the shared pool.")
    encoder_intra_op_threads: int = Field(
        1, ge=0, le=256, description="Threads of the SEATER encoder session (per-request "
        "work too small to split; 0 = ONNX Runtime's default).")
    graph_optimization: GraphOptimization = "all"
    allow_spinning: bool = Field(
        False, description="ONNX Runtime pool threads busy-wait between graph calls: a little "
        "faster when the engine owns the cores, but they then burn the CPU the event loop and "
        "the beam-search bookkeeping need between decoder steps."
    )

    # -- process ---------------------------------------------------------------------------
    workers: int = Field(
        0, ge=0, le=256, description="Worker processes, each with its own ONNX Runtime "
        "sessions, sharing the port and the Redis cache (0 = the cores this container may "
        "use). One process cannot use more than about one core: the beam search's Python "
        "holds the GIL.")
    state_dir: Path | None = Field(
        None, description="Set by the supervisor for its workers: the folder through which "
        "they agree on the bundle (service.core.workers); unset = a single process.")
    reload_sync_timeout_s: float = Field(
        60.0, gt=0.0, le=3600.0, description="A reload answers once every worker has loaded "
        "the bundle, or after this long (the answer says how many have).")
    group_poll_s: float = Field(
        0.25, gt=0.0, le=60.0, description="How often each worker looks for a reload that "
        "another worker published.")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = True
    graceful_shutdown_s: float = Field(30.0, ge=0.0, le=600.0)

    @field_validator("redis_url", "artifacts", "reload_root", "reload_token", "state_dir",
                     mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """An empty env var (``REDIS_URL=``) means unset, as shells and compose files write it."""
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _refuse_unsafe(self) -> Settings:
        if self.reload_enabled:
            token = self.reload_token.get_secret_value() if self.reload_token else ""
            if len(token) < MIN_TOKEN_CHARS:
                raise ValueError(
                    "SEATER_RELOAD_TOKEN must be set to at least "
                    f"{MIN_TOKEN_CHARS} characters when SEATER_RELOAD_ENABLED is true"
                )
        if self.default_beam > self.max_beam:
            raise ValueError(
                f"SEATER_DEFAULT_BEAM ({self.default_beam}) exceeds SEATER_MAX_BEAM "
                f"({self.max_beam})"
            )
        if self.max_n > self.max_beam:
            raise ValueError(
                f"SEATER_MAX_N ({self.max_n}) exceeds SEATER_MAX_BEAM ({self.max_beam}): "
                "n can never exceed the beam"
            )
        if self.redis_url is not None and not self.redis_url.startswith(
            ("redis://", "rediss://", "unix://")
        ):
            raise ValueError("REDIS_URL must start with redis://, rediss:// or unix://")
        return self

    @property
    def effective_reload_root(self) -> Path | None:
        """Folder that reload paths must stay inside (resolved), or None when unknown."""
        root = self.reload_root or (self.artifacts.parent if self.artifacts else None)
        return root.resolve() if root else None
