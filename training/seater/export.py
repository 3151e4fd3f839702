"""A trained SEATER model -> the artifact bundle the service loads (``seater export``).

Two graphs, shaped for serving (DESIGN.md, "Where the decoding work happens"):
``encoder.onnx`` runs once per request and also projects the memory into every decoder
layer's cross-attention keys/values; ``decoder.onnx`` is one beam step over ``[B, W, t]``
rows that reads those per-request keys/values by reshape. The node-embedding table and
the children table are graph inputs, so a new tree version (inserted items) ships as
new ``tree.npz`` + ``embeddings.npy`` without re-exporting weights.

Exported with the dynamo exporter (needs ``onnxscript``) and dynamic batch, beam, prefix,
history and node-count axes; every bundle is checked in ONNX Runtime against torch on
shapes other than the ones traced before it is published, by ``training.publish`` (the
one atomic, checksummed writer).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from indexer import IdTree
from training.publish import publish_bundle
from training.seater.model import Seater

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
OPSET = 20
FILES = ("encoder.onnx", "decoder.onnx", "tree.npz", "items.json", "embeddings.npy")
ENCODER_IO = (["history", "node_emb"], ["memory_k", "memory_v", "memory_bias"])
DECODER_IO = (["prefix", "memory_k", "memory_v", "memory_bias", "children", "node_emb"],
              ["child_logp"])


class EncoderGraph(nn.Module):
    def __init__(self, model: Seater) -> None:
        super().__init__()
        self.model = model

    def forward(self, history: torch.Tensor, node_emb: torch.Tensor):
        states, real = self.model.encode(history, node_emb)
        return self.model.memory(states, real)


class DecoderGraph(nn.Module):
    def __init__(self, model: Seater) -> None:
        super().__init__()
        self.model = model

    def forward(self, prefix, memory_k, memory_v, memory_bias, children, node_emb):
        return self.model.step(prefix, memory_k, memory_v, memory_bias, children, node_emb)


def _sample_inputs(model: Seater, tree: IdTree, batch: int, width: int, t: int, hist: int,
                   seed: int = 0, node_emb: np.ndarray | None = None
                   ) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
    """Encoder and decoder inputs with real tree paths (left padding in row 0).

    ``node_emb`` is the table the bundle ships (longer than the model's own when the
    tree has inserted items); the graphs take it as an input, so parity is checked on it.
    """
    rng = np.random.default_rng(seed)
    node_emb = (model.node_emb.weight.detach().clone() if node_emb is None
                else torch.from_numpy(np.ascontiguousarray(node_emb, dtype=np.float32)))
    items = rng.integers(0, tree.n_items, size=(batch, hist))
    history = torch.from_numpy(tree.item_leaf[items].astype(np.int64))
    if hist > 1:
        history[0, : hist // 2] = -1
    with torch.no_grad():
        mem = EncoderGraph(model)(history, node_emb)
    paths = tree.node_paths[rng.integers(0, tree.n_items, size=(batch, width))]  # (B, W, L)
    prefix = np.concatenate([np.full((batch, width, 1), tree.root), paths[..., : t - 1]], -1)
    children = torch.from_numpy(tree.children.astype(np.int64))
    return (history, node_emb), (torch.from_numpy(prefix), *mem, children, node_emb)


def export_graphs(model: Seater, tree: IdTree, out: Path, node_emb: np.ndarray | None = None
                  ) -> dict[str, Path]:
    """Write encoder.onnx and decoder.onnx into ``out`` (traced on ``node_emb`` if given)."""
    from torch.export import Dim

    model = model.eval().cpu()
    enc_args, dec_args = _sample_inputs(model, tree, batch=3, width=4, t=min(3, tree.max_depth),
                                        hist=min(5, model.p.max_len), node_emb=node_emb)
    # Finite bounds keep the exporter's range analysis of data-dependent sizes (the
    # decoder's dedupe) inside int64; far above any batch x beam served.
    batch, nodes = Dim("batch", max=1 << 16), Dim("nodes", max=1 << 30)
    seq = Dim("seq", max=model.p.max_len)
    width = Dim("beam", max=1 << 14)
    steps, mem_t = Dim("steps", max=tree.max_depth), Dim("memory", max=model.p.max_len)
    paths = {"encoder": out / "encoder.onnx", "decoder": out / "decoder.onnx"}
    with quiet_exporter():
        torch.onnx.export(
            EncoderGraph(model), enc_args, paths["encoder"], dynamo=True, opset_version=OPSET,
            input_names=ENCODER_IO[0], output_names=ENCODER_IO[1], external_data=False,
            dynamic_shapes={"history": {0: batch, 1: seq}, "node_emb": {0: nodes}},
        )
        torch.onnx.export(
            DecoderGraph(model), dec_args, paths["decoder"], dynamo=True, opset_version=OPSET,
            input_names=DECODER_IO[0], output_names=DECODER_IO[1], external_data=False,
            dynamic_shapes={
                "prefix": {0: batch, 1: width, 2: steps},
                "memory_k": {1: batch, 3: mem_t},
                "memory_v": {1: batch, 3: mem_t},
                "memory_bias": {0: batch, 1: mem_t},
                "children": {0: nodes},
                "node_emb": {0: nodes},
            },
        )
    return paths


def check_parity(model: Seater, tree: IdTree, folder: Path, atol: float = 1e-4,
                 node_emb: np.ndarray | None = None) -> dict[str, float]:
    """ONNX Runtime vs torch on shapes unlike the traced ones; raises on a mismatch."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    enc = ort.InferenceSession(str(folder / "encoder.onnx"), so, providers=["CPUExecutionProvider"])
    dec = ort.InferenceSession(str(folder / "decoder.onnx"), so, providers=["CPUExecutionProvider"])
    worst: dict[str, float] = {}
    for batch, width, t, hist in [(1, 1, 1, 1), (5, 7, tree.max_depth, model.p.max_len),
                                  (2, 3, 2, 4)]:
        enc_args, dec_args = _sample_inputs(model, tree, batch, width, t, hist, seed=batch,
                                            node_emb=node_emb)
        with torch.no_grad():
            want_enc = EncoderGraph(model)(*enc_args)
            want_dec = DecoderGraph(model)(*dec_args)
        got_enc = enc.run(None, dict(zip(ENCODER_IO[0], (a.numpy() for a in enc_args),
                                         strict=True)))
        got_dec = dec.run(None, dict(zip(DECODER_IO[0], (a.numpy() for a in dec_args),
                                         strict=True)))
        pairs = [*zip(ENCODER_IO[1], want_enc, got_enc, strict=True),
                 ("child_logp", want_dec, got_dec[0])]
        for name, want, got in pairs:
            want = want.numpy()
            if got.shape != want.shape:
                raise RuntimeError(f"{name}: ONNX shape {got.shape} != torch {want.shape} "
                                   f"at batch={batch} beam={width} t={t} T={hist}")
            real = want > -1e8  # masked slots are -1e9 on both sides
            diff = float(np.abs(got - want)[real].max()) if real.any() else 0.0
            worst[name] = max(worst.get(name, 0.0), diff)
            if diff > atol:
                raise RuntimeError(f"{name}: ONNX vs torch max abs diff {diff:.2e} > {atol} "
                                   f"at batch={batch} beam={width} t={t} T={hist}")
    return worst


def export_bundle(
    model: Seater,
    tree: IdTree,
    items: dict[str, Any],
    out_root: Path,
    version: str,
    dataset: str,
    metrics: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    node_emb: np.ndarray | None = None,
) -> Path:
    """Write ``out_root/<version>/`` (graphs, tree, embeddings, items, manifest).

    ``node_emb`` overrides the model's table (a tree with inserted items needs rows for
    its new nodes); by default the trained table is used.
    """
    table = model.node_emb.weight.detach().cpu().numpy() if node_emb is None else node_emb
    if table.shape[0] != tree.n_nodes:
        raise ValueError(f"embedding rows {table.shape[0]} != tree nodes {tree.n_nodes}")

    def write(tmp: Path) -> dict[str, Any]:
        export_graphs(model, tree, tmp, node_emb=table)
        parity = check_parity(model, tree, tmp, node_emb=table)
        np.save(tmp / "embeddings.npy", np.ascontiguousarray(table, dtype=np.float32))
        tree.save(tmp / "tree.npz")
        (tmp / "items.json").write_text(json.dumps(items))
        p = model.p
        return {
            "format_version": FORMAT_VERSION,
            "dataset": dataset,
            "config": {  # dec_layers: the one decoder layer (the manifest keeps the key)
                "d_model": p.d_model, "n_heads": p.n_heads, "enc_layers": p.enc_layers,
                "dec_layers": 1, "max_history": p.max_len, "pad_id": -1,
                "encoder_causal": p.encoder_causal, "opset": OPSET,
            },
            "tree": tree.summary(),
            "metrics": metrics or {},
            "parity_max_abs_diff": parity,
            "torch": torch.__version__,
            **(extra or {}),
        }

    final = publish_bundle(out_root, version, FILES, write)
    log.info("bundle %s written", final)
    return final


@contextlib.contextmanager
def quiet_exporter() -> Iterator[None]:
    """The dynamo exporter prints its progress to stdout and logs every pass; a user
    exporting a model wants the bundle path, so both go to the debug log instead."""
    buf = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(buf):
        warnings.simplefilter("ignore")
        loggers = [logging.getLogger(n) for n in ("torch.onnx", "onnxscript", "torch.export",
                                                  "torch._dynamo", "onnx_ir")]
        levels = [lg.level for lg in loggers]
        for lg in loggers:
            lg.setLevel(logging.ERROR)  # its warnings (e.g. "torchvision is not installed") too
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels, strict=True):
                lg.setLevel(level)
    if buf.getvalue():
        log.debug("exporter output:\n%s", buf.getvalue())
