"""The ONNX Runtime engine: ``encoder.onnx`` once per request, ``decoder.onnx`` per beam step.

Implements :class:`service.engine.Engine` against the graph contract in
docs/architecture.md. Providers are chosen automatically (CUDA when onnxruntime offers
it, else CPU) or forced by settings, and reported in ``info``. Every graph call goes
through an IOBinding: the per-engine constants (node-embedding table, children table)
and the per-batch memory (keys, values, bias) are placed on the device once as
OrtValues, so a beam step ships only its prefix in and its child log-probs out - on a
GPU the memory states never round-trip through the host.

Padding: histories are left-padded with ``pad_id``; encoder outputs at real positions
do not depend on the padding, so per-request states are sliced out unpadded (cacheable)
and re-padded on the left, with a large negative bias, when a batch is decoded.

:func:`load_engine` reads the manifest's ``kind`` and builds this engine for SEATER
bundles or :class:`service.dense.DenseEngine` for the brute-force baseline.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from service.bundle import Bundle, BundleError, DenseBundle, read_bundle
from service.catalog import Catalog
from service.engine import EncoderState, Engine, ModelInfo, SearchHit, length_buckets
from service.sessions import CPU, CUDA, RuntimeOptions, choose_providers, device_of, open_session
from service.settings import Settings

__all__ = [
    "CPU",
    "CUDA",
    "OnnxEngine",
    "RuntimeOptions",
    "choose_providers",
    "load_engine",
]

log = logging.getLogger(__name__)

ENCODER_INPUTS = {"history", "node_emb"}
ENCODER_OUTPUTS = ("memory_k", "memory_v", "memory_bias")
DECODER_INPUTS = {"prefix", "memory_k", "memory_v", "memory_bias", "children", "node_emb"}
DECODER_OUTPUTS = ("child_logp",)
PAD_BIAS = -1e9  # memory_bias at padded positions (the contract's "large negative")

Scorer = Callable[[np.ndarray], np.ndarray]
SearchFn = Callable[..., Any]
"""``indexer.search.beam_search(tree, scorer, batch_size, beam_size, n, exclude)``."""


def default_search() -> SearchFn:
    """``indexer.search.beam_search``, imported when the first engine is built."""
    try:
        from indexer.search import beam_search
    except ImportError as exc:
        raise BundleError(f"indexer.search.beam_search is not importable: {exc}") from exc
    return beam_search


class OnnxEngine:
    """One bundle's encoder + decoder sessions. Immutable; safe for concurrent calls."""

    def __init__(
        self, bundle: Bundle, options: RuntimeOptions, search_fn: SearchFn | None = None
    ) -> None:
        self.bundle = bundle
        self.tree = bundle.tree
        self._search_fn = search_fn or default_search()
        self.encoder = open_session(
            bundle.encoder_path, options.for_encoder(), ENCODER_INPUTS, ENCODER_OUTPUTS
        )
        self.decoder = open_session(bundle.decoder_path, options, DECODER_INPUTS, DECODER_OUTPUTS)
        self.device = device_of(self.decoder)
        self._small_rows = options.small_step_rows
        self.small_decoder = (
            open_session(bundle.decoder_path, options.single_threaded(), DECODER_INPUTS,
                         DECODER_OUTPUTS)
            if self.device == "cpu" and options.small_steps_apart() else None
        )
        # Per-engine constants, placed on the device once.
        self._node_emb = self._on_device(bundle.embeddings)
        self._children = self._on_device(self.tree.children.astype(np.int64))
        self._item_leaf = np.asarray(self.tree.item_leaf, dtype=np.int64)
        self._codes = np.asarray(self.tree.codes, dtype=np.int64)  # [n_items, depth]
        self._info = ModelInfo(
            version=bundle.version,
            dataset=bundle.manifest.dataset,
            n_items=int(self.tree.n_items),
            n_nodes=int(self.tree.n_nodes),
            k=int(self.tree.k),
            depth=int(self.tree.max_depth),
            max_history=bundle.max_history,
            pad_id=bundle.pad_id,
            providers=list(self.decoder.get_providers()),
            device=self.device,
            format_version=bundle.manifest.format_version,
            exported_at=bundle.manifest.exported_at,
            bundle_path=str(bundle.path),
            metrics=bundle.manifest.metrics,
            kind="seater",
        )

    # -- Engine protocol -------------------------------------------------------------------
    @property
    def version(self) -> str:
        return self.bundle.version

    @property
    def info(self) -> ModelInfo:
        return self._info

    @property
    def catalog(self) -> Catalog:
        return self.bundle.catalog

    def encode(self, histories: Sequence[np.ndarray]) -> list[EncoderState]:
        """Encode in length buckets (one encoder call each), slice states per request.

        Shape: histories[b] int64 [T_b] item indices -> states with T_r = min(T_b, max_history).
        """
        lengths = [min(len(h), self.bundle.max_history) for h in histories]
        states: list[EncoderState | None] = [None] * len(histories)
        for bucket in length_buckets(lengths):
            chunk = self._encode([histories[i] for i in bucket], [lengths[i] for i in bucket])
            for i, state in zip(bucket, chunk, strict=True):
                states[i] = state
        return states  # type: ignore[return-value]  # every index is in one bucket

    def _encode(self, histories: Sequence[np.ndarray], lengths: list[int]) -> list[EncoderState]:
        """Left-pad to the longest history, run the encoder once, slice per request."""
        batch, t = len(histories), max(lengths)
        leaves = np.full((batch, t), self.bundle.pad_id, dtype=np.int64)  # (B, T)
        for b, (h, length) in enumerate(zip(histories, lengths, strict=True)):
            leaves[b, t - length :] = self._item_leaf[np.asarray(h[-length:], dtype=np.int64)]
        binding = self.encoder.io_binding()
        binding.bind_cpu_input("history", leaves)
        binding.bind_ortvalue_input("node_emb", self._node_emb)
        for name in ENCODER_OUTPUTS:
            binding.bind_output(name, "cpu")  # states go to the cache: they must reach host
        self.encoder.run_with_iobinding(binding)
        k, v, bias = binding.copy_outputs_to_cpu()  # (L,B,H,T,dh) (L,B,H,T,dh) (B,T)
        if k.ndim != 5 or k.shape[1] != batch or k.shape[3] != t or bias.shape != (batch, t):
            raise RuntimeError(
                f"encoder output shapes {k.shape}, {bias.shape} for batch {batch}x{t}"
            )
        return [
            EncoderState(
                memory_k=np.ascontiguousarray(k[:, b, :, t - length :, :], dtype=np.float32),
                memory_v=np.ascontiguousarray(v[:, b, :, t - length :, :], dtype=np.float32),
                memory_bias=np.ascontiguousarray(bias[b, t - length :], dtype=np.float32),
            )
            for b, length in enumerate(lengths)
        ]

    def search(
        self,
        states: Sequence[EncoderState],
        n: np.ndarray,
        beam: np.ndarray,
        exclude: Sequence[np.ndarray],
    ) -> list[SearchHit]:
        """Re-pad the states into one batch, bind them once, beam-search with the decoder."""
        batch = len(states)
        mem_k, mem_v, bias = self._repad(states)
        beam = np.clip(np.asarray(beam, np.int64), 1, self._info.n_items)
        n = np.minimum(np.asarray(n, np.int64), beam)
        inputs = {
            "memory_k": self._on_device(mem_k),
            "memory_v": self._on_device(mem_v),
            "memory_bias": self._on_device(bias),
            "children": self._children,
            "node_emb": self._node_emb,
        }
        bindings: dict[bool, tuple[ort.InferenceSession, Any]] = {}  # small step -> binding

        def binding_for(rows: int) -> tuple[ort.InferenceSession, Any]:
            """The session for a step of ``rows`` rows, its inputs bound once per search."""
            small = self.small_decoder is not None and rows < self._small_rows
            if small not in bindings:
                session = self.small_decoder if small else self.decoder
                binding = session.io_binding()
                for name, value in inputs.items():
                    binding.bind_ortvalue_input(name, value)
                bindings[small] = (session, binding)
            return bindings[small]

        def scorer(prefix: np.ndarray) -> np.ndarray:
            """prefix int64 [B, W, t] -> child log-probs float32 [B, W, k]."""
            session, binding = binding_for(prefix.shape[0] * prefix.shape[1])
            binding.bind_cpu_input("prefix", np.ascontiguousarray(prefix, dtype=np.int64))
            binding.clear_binding_outputs()  # W changes per step: let ORT allocate anew
            binding.bind_output("child_logp", self.device)
            session.run_with_iobinding(binding)
            return binding.copy_outputs_to_cpu()[0]

        result = self._search_fn(
            self.tree, scorer, batch_size=batch, beam_size=beam, n=n, exclude=exclude
        )
        return self._hits(np.asarray(result.items), np.asarray(result.scores), n)

    def close(self) -> None:
        """Sessions free their memory when released; drop our references eagerly."""
        self.__dict__.pop("encoder", None)
        self.__dict__.pop("decoder", None)
        self.__dict__.pop("small_decoder", None)

    # -- helpers ---------------------------------------------------------------------------
    def _on_device(self, array: np.ndarray) -> ort.OrtValue:
        """An OrtValue on this engine's device (on CPU it shares the numpy buffer)."""
        return ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array), self.device, 0)

    def _hits(self, items: np.ndarray, scores: np.ndarray, n: np.ndarray) -> list[SearchHit]:
        """Per request: the first n[b] found items, codes looked up in one gather.

        The search sorts each row best first and pads with -1 (score -inf) after the
        found items, so a request's answer is a prefix of its row: slices, not masks.
        Shape: items int64 [B, n_max], scores float32 [B, n_max], n int64 [B].
        """
        if items.shape[0] != len(n):
            raise RuntimeError(f"beam search returned {items.shape[0]} rows for {len(n)}")
        found = np.minimum((items >= 0).sum(axis=1), n).tolist()
        codes = self._codes[np.maximum(items, 0)]  # (B, n_max, depth)
        scores = scores.astype(np.float32, copy=False)
        return [SearchHit(items[b, :m], scores[b, :m], codes[b, :m]) for b, m in enumerate(found)]

    @staticmethod
    def _repad(states: Sequence[EncoderState]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Right-align each state in a batch of width max T_r; padding gets PAD_BIAS.

        Shape: -> memory_k, memory_v (L, B, H, T, dh) float32, memory_bias (B, T) float32.
        """
        layers, heads, _, dh = states[0].memory_k.shape
        t = max(s.length for s in states)
        mem_k = np.zeros((layers, len(states), heads, t, dh), np.float32)
        mem_v = np.zeros_like(mem_k)
        bias = np.full((len(states), t), PAD_BIAS, np.float32)
        for b, s in enumerate(states):
            mem_k[:, b, :, t - s.length :] = s.memory_k
            mem_v[:, b, :, t - s.length :] = s.memory_v
            bias[b, t - s.length :] = s.memory_bias
        return mem_k, mem_v, bias


def load_engine(path: Path, settings: Settings, search_fn: SearchFn | None = None) -> Engine:
    """Verify and load the bundle at ``path`` into the engine its ``kind`` calls for.

    The holder smoke-tests the result before it serves.
    """
    from service.dense import DenseEngine

    options = RuntimeOptions.from_settings(settings)
    bundle = read_bundle(path)
    engine: Engine
    if isinstance(bundle, DenseBundle):
        engine = DenseEngine(bundle, options)
    else:
        engine = OnnxEngine(bundle, options, search_fn)
    log.info(
        "loaded %s bundle %s (%s items, providers %s)",
        engine.info.kind,
        engine.version,
        engine.info.n_items,
        engine.info.providers,
    )
    return engine
