"""The SEATER engine: ``encoder.onnx`` once per request, ``decoder.onnx`` per beam step.

Implements :class:`service.model.engine.Engine` against the graph contract in
docs/architecture.md. Providers are chosen automatically (CUDA when onnxruntime offers
it, else CPU) or forced by settings, and reported in ``info``. Every graph call goes
through an IOBinding: the per-engine constants (node-embedding table, children table)
and the per-batch memory (keys, values, bias) are placed on the device once as
OrtValues, so a beam step ships only its prefix in and its child log-probs out - on a
GPU the memory states never round-trip through the host.

Padding: histories are left-padded with ``pad_id``; encoder outputs at real positions
do not depend on the padding, so per-request states are sliced out unpadded (cacheable)
and re-padded on the left, with a large negative bias, when a batch is decoded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import onnxruntime as ort

from indexer.search import beam_search
from service.model.base import BundleEngine, describe
from service.model.bundle import SeaterBundle
from service.model.engine import EncoderMemory, SearchHit
from service.model.sessions import RuntimeOptions, open_session

ENCODER_INPUTS = {"history", "node_emb"}
ENCODER_OUTPUTS = ("memory_k", "memory_v", "memory_bias")
DECODER_INPUTS = {"prefix", "memory_k", "memory_v", "memory_bias", "children", "node_emb"}
DECODER_OUTPUTS = ("child_logp",)
PAD_BIAS = -1e9  # memory_bias at padded positions (the contract's "large negative")

SearchFn = Callable[..., Any]
"""``indexer.search.beam_search(tree, scorer, batch_size, beam_size, n, exclude[, allowed,
allowed_of])`` or a stand-in with its signature (the engine benchmark wraps it to time each
decoder step); the masks are passed only for filtered batches."""


class SeaterEngine(BundleEngine):
    """One SEATER bundle's encoder + decoder sessions. Immutable; safe for concurrent calls."""

    bundle: SeaterBundle

    def __init__(self, bundle: SeaterBundle, options: RuntimeOptions,
                 search_fn: SearchFn = beam_search) -> None:
        tree = bundle.tree
        encoder = open_session(
            bundle.encoder_path, options.for_encoder(), ENCODER_INPUTS, ENCODER_OUTPUTS
        )
        self.decoder = open_session(bundle.decoder_path, options, DECODER_INPUTS, DECODER_OUTPUTS)
        info = describe(bundle, self.decoder, n_items=int(tree.n_items),
                        n_nodes=int(tree.n_nodes), k=int(tree.k), depth=int(tree.max_depth))
        super().__init__(bundle, encoder, info, tokens=tree.item_leaf, codes=tree.codes)
        self.tree = tree
        self._search_fn = search_fn
        self.device = info.device
        self._small_rows = options.small_step_rows
        self.small_decoder = (
            open_session(bundle.decoder_path, options.single_threaded(), DECODER_INPUTS,
                         DECODER_OUTPUTS)
            if self.device == "cpu" and options.small_steps_apart() else None
        )
        # Per-engine constants, placed on the device once.
        self._node_emb = self._on_device(bundle.embeddings)
        self._children = self._on_device(tree.children.astype(np.int64))

    def _states(self, tokens: np.ndarray, lengths: list[int]) -> list[EncoderMemory]:
        """Run the encoder once on left-padded leaf ids, slice each request's memory out.

        Shape: tokens int64 [B, T] -> memory per request with T_r = lengths[b].
        """
        batch, t = tokens.shape
        binding = self.encoder.io_binding()
        binding.bind_cpu_input("history", tokens)
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
            EncoderMemory(
                memory_k=np.ascontiguousarray(k[:, b, :, t - length :, :], dtype=np.float32),
                memory_v=np.ascontiguousarray(v[:, b, :, t - length :, :], dtype=np.float32),
                memory_bias=np.ascontiguousarray(bias[b, t - length :], dtype=np.float32),
            )
            for b, length in enumerate(lengths)
        ]

    def search(self, states: Sequence[EncoderMemory], n: np.ndarray, beam: np.ndarray,
               exclude: Sequence[np.ndarray], allowed: np.ndarray | None = None,
               allowed_of: np.ndarray | None = None) -> list[SearchHit]:
        """Re-pad the states into one batch, bind them once, beam-search with the decoder.

        Filter masks go into the search itself: subtrees without an allowed leaf are
        pruned, so the beam is spent on items the request may get.
        """
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

        masks = {} if allowed is None else {"allowed": allowed, "allowed_of": allowed_of}
        result = self._search_fn(self.tree, scorer, batch_size=batch, beam_size=beam, n=n,
                                 exclude=exclude, **masks)
        return self._hits(np.asarray(result.items), np.asarray(result.scores), n)

    def close(self) -> None:
        super().close()
        self.__dict__.pop("decoder", None)
        self.__dict__.pop("small_decoder", None)

    # -- helpers ---------------------------------------------------------------------------
    def _on_device(self, array: np.ndarray) -> ort.OrtValue:
        """An OrtValue on this engine's device (on CPU it shares the numpy buffer)."""
        return ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array), self.device, 0)

    @staticmethod
    def _repad(states: Sequence[EncoderMemory]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
