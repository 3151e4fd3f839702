"""``seater export`` for a SASRec run: the dense brute-force baseline bundle.

The service serves it with the same stack as SEATER (``service/dense.py``), so
throughput and latency can be compared side by side. The bundle (manifest ``kind:
"dense"``) holds:

- ``encoder.onnx``: ``history`` int64 ``[B, T]`` item indices, left-padded with
  ``pad_id = n_items``, and ``item_emb`` float32 ``[n_items, d]`` -> ``user`` float32
  ``[B, d]`` (SASRec's state at the most recent position, ``SASRec.user_states``);
  dynamic batch and history axes (T <= max_len). The item table is an input, not a
  weight, so the graph stays small at any catalogue size (one ONNX protobuf holds at most
  2 GiB: 8M items at d = 64) and the table is stored once;
- ``item_emb.npy``: float32 ``[n_items, d]``, row = item index (no padding row: the
  graph only gathers rows from the table and zeroes padded positions by mask);
- ``items.json`` and ``manifest.json`` (sha256 of every file, config, metrics).

As for SEATER (``training/seater/export.py``): dynamo exporter, ONNX Runtime checked against
torch on shapes other than the traced one before publishing, through the one writer
``training.publish``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from training.checkpoint import load_checkpoint
from training.publish import publish_bundle
from training.sasrec.model import SASRec
from training.seater.export import OPSET, quiet_exporter

log = logging.getLogger(__name__)

# 2: ``item_emb`` is an encoder input (format 1 held the table inside encoder.onnx; the
# service reads both)
FORMAT_VERSION = 2
FILES = ("encoder.onnx", "item_emb.npy", "items.json")
ENCODER_INPUTS = ("history", "item_emb")


class UserGraph(nn.Module):
    """history [B, T] (left-padded with pad_id), item_emb [n_items, d] -> user [B, d]."""

    def __init__(self, model: SASRec) -> None:
        super().__init__()
        self.model = model

    def forward(self, history: torch.Tensor, item_emb: torch.Tensor) -> torch.Tensor:
        # the table is only gathered from (no pad row appended): a call costs B x T rows,
        # not a copy of the catalogue; parity against the model's own table checks that
        # its pad row is still the zeros the mask stands for
        return self.model.encode(history, items=item_emb)[:, -1]


def _histories(model: SASRec, batch: int, t: int, seed: int) -> torch.Tensor:
    """Random item histories, row 0 left-padded (when t > 1) as the service pads."""
    rng = np.random.default_rng(seed)
    seq = torch.from_numpy(rng.integers(0, model.n_items, size=(batch, t)))
    if t > 1:
        seq[0, : t // 2] = model.pad_id
    return seq


def export_encoder(model: SASRec, path: Path, table: np.ndarray) -> None:
    """``table``: ``model.item_embeddings()``, computed once per export by the caller (at
    catalogue scale every copy of it is gigabytes)."""
    from torch.export import Dim

    model = model.eval().cpu()
    sample = _histories(model, batch=3, t=min(5, model.p.max_len), seed=0)
    with quiet_exporter():
        torch.onnx.export(
            UserGraph(model), (sample, torch.from_numpy(table)), path, dynamo=True,
            opset_version=OPSET,
            input_names=list(ENCODER_INPUTS), output_names=["user"], external_data=False,
            dynamic_shapes={"history": {0: Dim("batch", max=1 << 16),
                                        1: Dim("seq", max=model.p.max_len)},
                            "item_emb": None},
        )


def check_parity(model: SASRec, path: Path, table: np.ndarray, atol: float = 1e-4) -> float:
    """ONNX Runtime (fed ``table``, the model's item embeddings) vs
    ``SASRec.user_states`` on untraced shapes; raises on a mismatch."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for batch, t in [(1, 1), (7, model.p.max_len), (2, 4)]:
        seq = _histories(model, batch, t, seed=batch)
        want = model.user_states(seq).numpy()
        got = session.run(["user"], {"history": seq.numpy(), "item_emb": table})[0]
        if got.shape != want.shape:
            raise RuntimeError(f"user: ONNX shape {got.shape} != torch {want.shape} at "
                               f"batch={batch} T={t}")
        diff = float(np.abs(got - want).max())
        worst = max(worst, diff)
        if diff > atol:
            raise RuntimeError(f"user: ONNX vs torch max abs diff {diff:.2e} > {atol} at "
                               f"batch={batch} T={t}")
    return worst


def export_sasrec_bundle(
    model: SASRec,
    items: dict[str, Any],
    out_root: Path,
    version: str,
    dataset: str,
    metrics: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``out_root/<version>/`` (encoder.onnx, item_emb.npy, items.json, manifest)."""
    if len(items.get("ids", [])) != model.n_items:
        raise ValueError(f"items.json has {len(items.get('ids', []))} ids, "
                         f"the model {model.n_items} items")
    model = model.eval().cpu()

    def write(tmp: Path) -> dict[str, Any]:
        table = model.item_embeddings()
        export_encoder(model, tmp / "encoder.onnx", table)
        parity = check_parity(model, tmp / "encoder.onnx", table)
        np.save(tmp / "item_emb.npy", table)
        (tmp / "items.json").write_text(json.dumps(items))
        p = model.p
        return {
            "format_version": FORMAT_VERSION,
            "kind": "dense",
            "dataset": dataset,
            "config": {
                "model": "sasrec", "d_model": p.d_model, "n_layers": p.n_layers,
                "n_heads": p.n_heads, "max_history": p.max_len, "pad_id": model.pad_id,
                "opset": OPSET,
            },
            "items": {"n_items": model.n_items, "d": p.d_model},
            "metrics": metrics or {},
            "parity_max_abs_diff": {"user": parity},
            "torch": torch.__version__,
            **(extra or {}),
        }

    final = publish_bundle(out_root, version, FILES, write)
    log.info("dense bundle %s written", final)
    return final


def load_sasrec_run(run_dir: Path) -> tuple[SASRec, Any, dict[str, Any]]:
    """A trained SASRec run folder -> (model, SASRecRun config, checkpoint).

    Read with ``weights_only``: the checkpoint holds tensors and plain data only."""
    from training.config import from_saved
    from training.sasrec.pipeline import SASRecRun

    ckpt_path = Path(run_dir) / "model.pt"
    if not ckpt_path.is_file():
        raise FileNotFoundError(f"{ckpt_path} not found: train with `seater train sasrec`")
    ckpt = load_checkpoint(ckpt_path)
    config = ckpt.get("config")
    if not isinstance(config, dict) or "model" not in config or "tree" in config:
        raise ValueError(f"{ckpt_path} is not a SASRec checkpoint (no SASRec config in it)")
    cfg = from_saved(SASRecRun, config, str(ckpt_path))
    model = SASRec(int(ckpt["n_items"]), cfg.model)
    model.load_state_dict(ckpt["model"])
    return model.eval(), cfg, ckpt
