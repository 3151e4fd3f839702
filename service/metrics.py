"""Every Prometheus collector of the service, on a per-app registry (no module globals).

One histogram per stage (request, queue wait, encoder, beam search) in seconds, the batch
size distribution, and ``_total`` counters for the cache and the failure modes an
operator alerts on. Labels are few and fixed so cardinality never depends on traffic.

With several worker processes (``PROMETHEUS_MULTIPROC_DIR`` set by the supervisor before
the workers import prometheus-client), every value lives in a file of that folder and
``GET /metrics``, whichever worker answers, sums the counters and histograms of all;
gauges say how they combine (``multiprocess_mode``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

NAMESPACE = "seater"
# Seconds: from 0.25 ms (engine on a GPU) to 10 s (overloaded CPU).
# fmt: off
LATENCY_BUCKETS = (
    0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05,
    0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)
# fmt: on
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 256, 512, 1024)


class ServiceMetrics:
    """The collectors of one app instance, registered on its own ``CollectorRegistry``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = registry or CollectorRegistry(auto_describe=True)
        self.multiprocess_dir = os.environ.get(MULTIPROC_ENV) or None

        def hist(
            name: str,
            doc: str,
            labels: tuple[str, ...] = (),
            buckets: Sequence[float] = LATENCY_BUCKETS,
        ) -> Histogram:
            return Histogram(name, doc, labels, namespace=NAMESPACE, buckets=buckets, registry=r)

        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(name, doc, labels, namespace=NAMESPACE, registry=r)

        def gauge(name: str, doc: str, labels: tuple[str, ...] = (), combine: str = "livesum"
                  ) -> Gauge:
            return Gauge(name, doc, labels, namespace=NAMESPACE, registry=r,
                         multiprocess_mode=combine)

        # -- per stage ------------------------------------------------------------------------
        self.request_seconds = hist(
            "request_seconds", "HTTP request latency by route template.", ("route", "method")
        )
        self.requests = counter(
            "requests", "HTTP requests by route template and status.", ("route", "method", "status")
        )
        self.queue_wait_seconds = hist(
            "queue_wait_seconds", "Time a retrieval waited in the micro-batch queue."
        )
        self.encoder_seconds = hist("encoder_seconds", "Encoder call per micro-batch (misses).")
        self.beam_search_seconds = hist(
            "beam_search_seconds", "Constrained beam search per micro-batch."
        )
        self.batch_size = hist(
            "batch_size", "Retrievals decoded together in one micro-batch.", buckets=BATCH_BUCKETS
        )
        self.queue_depth = gauge("queue_depth", "Retrievals waiting in the micro-batch queue.")
        # -- cache ----------------------------------------------------------------------------
        self.cache_hits = counter("cache_hits", "Encoder states served from the cache.")
        self.cache_misses = counter("cache_misses", "Encoder states not cached (recomputed).")
        self.cache_errors = counter(
            "cache_errors", "Failed cache operations (timeout, connection, payload).", ("op",)
        )
        self.cache_bypassed = counter(
            "cache_bypassed", "Cache operations skipped while the breaker was open.", ("op",)
        )
        self.cache_breaker_open = gauge(
            "cache_breaker_open", "1 while the Redis breaker is open (in any worker).",
            combine="livemax")
        # -- failures and lifecycle -----------------------------------------------------------
        self.overload_rejections = counter(
            "overload_rejections", "Retrievals refused with 503 because the queue was full."
        )
        self.retrieval_errors = counter(
            "retrieval_errors", "Micro-batches whose engine call failed."
        )
        self.reloads = counter("reloads", "Model reload attempts by outcome.", ("outcome",))
        self.model_info = gauge("model_info", "1 for each model version served (by any worker).",
                                ("version",), combine="livemax")
        self._version: str | None = None
        # Pre-create the fixed label values so every series exists (at 0) from the start.
        for op in ("get", "set", "decode"):
            self.cache_errors.labels(op=op)
        for op in ("get", "set"):
            self.cache_bypassed.labels(op=op)
        for outcome in ("success", "failed"):
            self.reloads.labels(outcome=outcome)

    def set_model_version(self, version: str) -> None:
        """Point ``model_info`` at ``version`` only (old versions drop out of the series;
        across workers, a version stays while any worker still serves it)."""
        if self._version is not None:
            self.model_info.labels(version=self._version).set(0)  # the workers' files
        self.model_info.clear()
        self.model_info.labels(version=version).set(1)
        self._version = version

    def render(self) -> tuple[bytes, str]:
        """Exposition text and its content type, for ``GET /metrics``: this process's
        registry, or every worker's values combined."""
        if self.multiprocess_dir is None:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        combined = CollectorRegistry()
        MultiProcessCollector(combined, path=self.multiprocess_dir)
        return generate_latest(combined), CONTENT_TYPE_LATEST

    def close(self) -> None:
        """At worker exit: its live gauges stop counting (its counters stay in the sums)."""
        if self.multiprocess_dir is not None:
            mark_process_dead(os.getpid(), self.multiprocess_dir)
