"""``seater index ami``: semantic IDs against the other ID sources, as in LMIndexer Table 1,
plus SEATER's quality with semantic vs balanced IDs when both runs are in the reports.

ID sources (all k-ary trees over the same items, compared by their depth-1 and depth-2
prefixes):
- ``semantic``: the codes of ``seater index semantic``;
- ``balanced_sasrec``: SEATER's default tree, balanced k-means (Algorithm 1) over the
  SASRec item embeddings (``runs/<dataset>/sasrec-loo/fit/item_emb.npy``);
- ``random``: the balanced shape with items placed at random (chance level);
- ``balanced_text``: the same balanced builder over the frozen MiniLM vectors, i.e. the
  paper's "HC indexer" baseline: what the auto-encoder adds over clustering its input.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from indexer import BuildConfig, build_random, build_tree
from training.data.dataset import ItemText
from training.lmindexer.ami import ami_table
from training.reports import REPORTS_DIR, git_commit, machine_info, now

log = logging.getLogger(__name__)

PUBLISHED = {
    "lmindexer_table1_ami": {"beauty": 0.3563, "sports": 0.4163, "toys": 0.3536},
    "lmindexer_table2_loo": {"beauty": {"recall@5": 0.0415, "ndcg@5": 0.0262},
                             "sports": {"recall@5": 0.0222, "ndcg@5": 0.0142}},
    "note": "LMIndexer's AMI uses T5-base on title+description+features; which category "
            "level it compares with is not stated (Appendix A.4).",
}


def tree_codes(embeddings: np.ndarray | None, n_items: int, k: int, method: str, seed: int
               ) -> np.ndarray:
    """Codes of a tree from ``indexer`` builders. Shape: -> int [n_items, depth]."""
    cfg = BuildConfig(k=k, method=method, seed=seed, progress=False)  # type: ignore[arg-type]
    if method == "random":
        tree, _ = build_random(n_items, cfg)
    else:
        tree, _ = build_tree(embeddings, cfg)
    return np.asarray(tree.codes, np.int64)


def id_sources(semantic: np.ndarray, sasrec_emb: Path | None, text_emb: np.ndarray | None,
               k: int, seed: int) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Codes per source, and a note for each source that could not be built."""
    n = len(semantic)
    sources: dict[str, np.ndarray] = {"semantic": np.asarray(semantic, np.int64)}
    notes: dict[str, str] = {}
    if sasrec_emb is not None and sasrec_emb.is_file():
        emb = np.load(sasrec_emb)
        if len(emb) == n:
            log.info("balanced tree over %s", sasrec_emb)
            sources["balanced_sasrec"] = tree_codes(emb, n, k, "balanced", seed)
        else:
            notes["balanced_sasrec"] = f"{sasrec_emb} has {len(emb)} rows for {n} items"
    else:
        notes["balanced_sasrec"] = (f"{sasrec_emb} not found: train SASRec first "
                                    "(seater train sasrec -d <dataset> -p loo)")
    sources["random"] = tree_codes(None, n, k, "random", seed)
    if text_emb is not None:
        log.info("balanced tree over the text embeddings")
        sources["balanced_text"] = tree_codes(text_emb, n, k, "balanced", seed)
    return sources, notes


def codes_fields(codes: str) -> str:
    """The text fields the indexer behind a codes file read, from the config.json beside
    it, so SEATER's semantic rows say whether the category was in the text; 'unknown'
    when that folder is not on this machine."""
    path = Path(codes).parent / "config.json" if codes else None
    try:
        return str(json.loads(path.read_text())["text"]["fields"]) if path else "unknown"
    except (OSError, ValueError, KeyError, TypeError):
        return f"unknown ({path} not readable here)"


def seater_comparison(dataset: str, reports_dir: Path = REPORTS_DIR) -> dict[str, Any]:
    """SEATER loo test metrics with semantic vs balanced IDs from reports/quality/<dataset>.json
    (rows written by ``seater train seater``), paired by the rest of the variant name."""
    path = Path(reports_dir) / "quality" / f"{dataset}.json"
    if not path.is_file():
        return {"status": f"{path} not found: no SEATER runs reported yet"}
    runs = {r["key"]: r for r in json.loads(path.read_text()).get("runs", [])}
    pairs = []
    for key, run in sorted(runs.items()):
        if not key.startswith("seater/loo/semantic"):
            continue
        twin = runs.get(key.replace("seater/loo/semantic", "seater/loo/balanced", 1))
        if twin is None:
            continue
        cols = ("recall@5", "ndcg@5", "recall@10", "ndcg@10")
        sem, bal = run["metrics"]["test"], twin["metrics"]["test"]
        codes = run.get("config", {}).get("tree", {}).get("codes", "")
        pairs.append({
            "semantic": key, "balanced": twin["key"], "codes": codes,
            "text_fields": codes_fields(codes),
            "test": {c: {"semantic": sem.get(c), "balanced": bal.get(c),
                         "ratio": round(sem[c] / bal[c], 4) if bal.get(c) else None}
                     for c in cols if c in sem and c in bal},
        })
    published = PUBLISHED["lmindexer_table2_loo"].get(dataset)
    for pair in pairs:
        t = pair["test"]
        pair["within_10pct_of_balanced"] = all(v["ratio"] is not None and v["ratio"] >= 0.9
                                               for c, v in t.items() if c.endswith("@5"))
        if published:
            pair["above_lmindexer"] = all(t[c]["semantic"] > published[c]
                                          for c in published if c in t)
    return {"status": "ok" if pairs else "no semantic/balanced pair of loo runs yet",
            "pairs": pairs}


def compare(dataset: str, item_text: ItemText, semantic: np.ndarray, run_report: dict | None,
            sasrec_emb: Path | None, text_emb: np.ndarray | None, k: int, seed: int,
            command: str) -> dict[str, Any]:
    """One run's comparison report, as ``seater index ami`` writes it (the seeded report
    with every row labelled by its text fields is ``python -m benchmarks.semantic_ids``)."""
    sources, notes = id_sources(semantic, sasrec_emb, text_emb, k, seed)
    table = ami_table(sources, item_text)
    out: dict[str, Any] = {
        "dataset": dataset,
        "ami": table,
        "ami_headline": {name: row["headline"] for name, row in table["sources"].items()},
        "missing_sources": notes,
        "seater_loo": seater_comparison(dataset),
        "published": PUBLISHED,
        "seed": seed,
        "k": k,
        "sasrec_embeddings": str(sasrec_emb) if sasrec_emb else None,
        "command": command,
        "commit": git_commit(),
        "machine": machine_info(),
        "created": now(),
    }
    if run_report is not None:
        keep = ("n_items", "k", "levels", "vocab_size", "collisions", "tree", "per_level",
                "per_level_argmax_only", "cells", "recon_macro_f1_no_codes", "seconds",
                "config", "command")
        out["semantic_run"] = {key: run_report.get(key) for key in keep}
    return out
