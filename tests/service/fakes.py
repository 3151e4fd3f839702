"""A deterministic numpy engine that honours the Engine contract, for service tests.

Scores depend only on the (truncated) history, which travels through the encoder state
(``memory_k[0, 0, :, 0]`` holds the item indices, exact in float16 below 2048), so a
cached state must give the same answer as a fresh one. Only items below ``4 * beam`` are
candidates, so the per-request beam visibly changes results. With ``metadata=True`` items
carry categories and a brand, and filter masks are honoured. Every call is recorded.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from service.model.catalog import Catalog
from service.model.engine import EncoderMemory, ModelInfo, SearchHit
from service.settings import Settings

N_ITEMS = 300
K = 4


def external_id(index: int) -> str:
    """Dataset-like external ids (integers as strings), offset so they differ from indices."""
    return str(1000 + index)


BRANDS = ("Acme", "Zed", "Nova", "")  # '' = unknown, as the loader writes a missing value


def fake_categories(index: int) -> list[str]:
    """Item i: department i % 3, aisle i % 5 under it; every 7th item is also on sale."""
    paths = [f"Dept {index % 3} > Aisle {index % 5}"]
    return paths + ["Sale"] if index % 7 == 0 else paths


def fake_brand(index: int) -> str:
    return BRANDS[index % 4]


class FakeEngine:
    def __init__(
        self,
        version: str = "fake-v1",
        *,
        n_items: int = N_ITEMS,
        k: int = K,
        max_history: int = 20,
        search_delay_s: float = 0.0,
        encode_delay_s: float = 0.0,
        fail_search: bool = False,
        titles: bool = False,
        metadata: bool = False,
    ) -> None:
        self._version = version
        self.n_items = n_items
        self.k = k
        self.depth = max(1, math.ceil(math.log(n_items, k)))
        ids = [external_id(i) for i in range(n_items)]
        self._catalog = Catalog(
            ids, [f"title {i}" for i in range(n_items)] if titles else None,
            [fake_categories(i) for i in range(n_items)] if metadata else None,
            {"brand": [fake_brand(i) for i in range(n_items)]} if metadata else None)
        self.max_history = max_history
        self.search_delay_s = search_delay_s
        self.encode_delay_s = encode_delay_s
        self.fail_search = fail_search
        self.calls: list[tuple] = []
        self.mask_rows: list[tuple[int, list[int]]] = []  # per filtered search: (M, allowed_of)
        self.closed = False
        self._lock = threading.Lock()
        self.in_flight = self.max_in_flight = 0  # concurrent search calls
        # Base-k digits of each item index = its tree code.
        digits = (np.arange(n_items)[:, None] // k ** np.arange(self.depth)[::-1]) % k
        self.codes = digits.astype(np.int64)

    @property
    def version(self) -> str:
        return self._version

    @property
    def catalog(self) -> Catalog:
        return self._catalog

    @property
    def info(self) -> ModelInfo:
        return ModelInfo(
            version=self._version,
            dataset="fake",
            n_items=self.n_items,
            n_nodes=self.n_items + 1,
            k=self.k,
            depth=self.depth,
            max_history=self.max_history,
            pad_id=self.n_items + 1,
            providers=["FakeProvider"],
            device="cpu",
            kind="seater",
            format_version=1,
            exported_at=None,
        )

    def encode(self, histories: Sequence[np.ndarray]) -> list[EncoderMemory]:
        with self._lock:
            self.calls.append(("encode", len(histories)))
        time.sleep(self.encode_delay_s)
        out = []
        for h in histories:
            t = len(h)
            k = np.zeros((2, 2, t, 4), np.float32)
            k[0, 0, :, 0] = h
            k[1] = np.sin(np.asarray(h, np.float32))[None, :, None]
            out.append(EncoderMemory(k, k * 0.5, np.zeros(t, np.float32)))
        return out

    def scores(self, history: np.ndarray) -> np.ndarray:
        """The fake model: a pseudo-random but deterministic log-prob per item."""
        sig = int(np.asarray(history, np.int64) @ np.arange(1, len(history) + 1)) % 1009
        raw = ((np.arange(self.n_items) * 7919 + sig * 104729) % 1009) / 1009.0
        return (-raw - 0.01).astype(np.float32)

    def search(self, states: Sequence[EncoderMemory], n: np.ndarray, beam: np.ndarray,
               exclude: Sequence[np.ndarray], allowed: np.ndarray | None = None,
               allowed_of: np.ndarray | None = None) -> list[SearchHit]:
        with self._lock:
            self.calls.append(("search", len(states), n.tolist(), beam.tolist()))
            if allowed is not None:
                self.mask_rows.append((allowed.shape[0], allowed_of.tolist()))
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        time.sleep(self.search_delay_s)
        with self._lock:
            self.in_flight -= 1
        if self.fail_search:
            raise RuntimeError("fake decoder exploded")
        hits = []
        for b, (state, nb, wb, ex) in enumerate(zip(states, n, beam, exclude, strict=True)):
            history = np.rint(state.memory_k[0, 0, :, 0]).astype(np.int64)
            s = self.scores(history)
            s[min(4 * int(wb), self.n_items) :] = -np.inf
            s[np.asarray(ex, np.int64)] = -np.inf
            if allowed is not None:
                s[~allowed[allowed_of[b]]] = -np.inf
            order = np.argsort(-s, kind="stable")[: int(nb)]
            order = order[np.isfinite(s[order])]
            hits.append(SearchHit(order.astype(np.int64), s[order], self.codes[order]))
        return hits

    def close(self) -> None:
        self.closed = True

    def search_batch_sizes(self) -> list[int]:
        return [c[1] for c in self.calls if c[0] == "search"]


class FakeLoader:
    """Engine loader for the app factory: the bundle's folder name is the model version.

    A folder whose name contains ``bad`` fails to load (like a checksum mismatch); one
    containing ``broken`` loads but fails the smoke test. ``engines`` records what was built.
    """

    def __init__(self, load_delay_s: float = 0.0, **engine_kwargs: object) -> None:
        self.load_delay_s = load_delay_s
        self.engine_kwargs = engine_kwargs
        self.engines: list[FakeEngine] = []

    def __call__(self, path: Path, settings: Settings) -> FakeEngine:
        time.sleep(self.load_delay_s)
        if "bad" in path.name:
            raise ValueError(f"checksum mismatch for encoder.onnx in {path}")
        engine = FakeEngine(path.name, **self.engine_kwargs)  # type: ignore[arg-type]
        if "broken" in path.name:
            engine.fail_search = True
        self.engines.append(engine)
        return engine
