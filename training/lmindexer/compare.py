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
import re
from pathlib import Path
from typing import Any

import numpy as np

from indexer import BuildConfig, build_random, build_tree
from training.data.dataset import ItemText
from training.lmindexer.ami import ami_table
from training.lmindexer.config import TEXT_FIELDS, codes_fields, fields_slug
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


# a semantic row's key, its text setting's slug (variant_name) optional, longest first so
# "title" does not stop short of "title-categories": the rest names the balanced twin
_SLUGS = "|".join(sorted((re.escape(fields_slug(f)) for f in TEXT_FIELDS), key=len,
                         reverse=True))
_BY_SLUG = {fields_slug(f): f for f in TEXT_FIELDS}
SEMANTIC_VARIANT = rf"semantic(?:-(?P<slug>{_SLUGS}))?-"
SEMANTIC_KEY = re.compile(rf"^seater/loo/{SEMANTIC_VARIANT}")


def variant_fields(variant: str) -> str | None:
    """The text fields a semantic row's variant name records (None: a balanced row, or one
    from before variant names carried them)."""
    match = re.match(SEMANTIC_VARIANT, variant)
    return _BY_SLUG[match["slug"]] if match and match["slug"] else None
PAIRED = ("recall@5", "ndcg@5", "recall@10", "ndcg@10")


def seater_comparison(dataset: str, reports_dir: Path = REPORTS_DIR) -> dict[str, Any]:
    """SEATER loo test metrics with semantic vs balanced IDs from reports/quality/<dataset>.json
    (rows written by ``seater train seater``), paired by the rest of the variant name
    (seed included), and per setting over its seeds (``seeds``)."""
    path = Path(reports_dir) / "quality" / f"{dataset}.json"
    if not path.is_file():
        return {"status": f"{path} not found: no SEATER runs reported yet"}
    runs = {r["key"]: r for r in json.loads(path.read_text()).get("runs", [])}
    published = PUBLISHED["lmindexer_table2_loo"].get(dataset)
    pairs = []
    for key, run in sorted(runs.items()):
        match = SEMANTIC_KEY.match(key)
        twin = runs.get("seater/loo/balanced-" + key[match.end():]) if match else None
        if twin is None:
            continue
        sem, bal = run["metrics"]["test"], twin["metrics"]["test"]
        codes = run.get("config", {}).get("tree", {}).get("codes", "")
        test = {c: {"semantic": sem.get(c), "balanced": bal.get(c),
                    "ratio": round(sem[c] / bal[c], 4) if bal.get(c) else None}
                for c in PAIRED if c in sem and c in bal}
        pairs.append({"semantic": key, "balanced": twin["key"], "codes": codes,
                      "text_fields": codes_fields(codes), "seed": run.get("seed", 0),
                      "test": test, **_verdicts(test, published)})
    return {"status": "ok" if pairs else "no semantic/balanced pair of loo runs yet",
            "pairs": pairs, "seeds": _over_seeds(pairs, published)}


def _verdicts(test: dict[str, dict[str, Any]], published: dict[str, float] | None
              ) -> dict[str, bool]:
    """Issue 15's two bars: within 10% of balanced IDs at @5, above LMIndexer's recall."""
    out = {"within_10pct_of_balanced": all(v["ratio"] is not None and v["ratio"] >= 0.9
                                           for c, v in test.items() if c.endswith("@5"))}
    if published:
        out["above_lmindexer"] = all(test[c]["semantic"] > published[c]
                                     for c in published if c in test)
    return out


def setting_of(semantic_key: str) -> str:
    """The setting a semantic row's seed belongs to: its key without the seed tag."""
    return re.sub(r"-s\d+$", "", semantic_key)


def _over_seeds(pairs: list[dict[str, Any]], published: dict[str, float] | None
                ) -> list[dict[str, Any]]:
    """Pairs of one setting (the semantic key without its seed tag) as mean ± sample std
    over seeds; the ratio and the verdicts are taken on the means."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for pair in pairs:
        groups.setdefault(setting_of(pair["semantic"]), []).append(pair)
    out = []
    for setting, members in groups.items():
        test = {}
        for c in PAIRED:
            cell: dict[str, Any] = {}
            for side in ("semantic", "balanced"):
                vals = np.array([p["test"][c][side] for p in members if c in p["test"]], float)
                cell[side] = round(float(vals.mean()), 5) if len(vals) else None
                cell[f"{side}_std"] = (round(float(vals.std(ddof=1)), 5) if len(vals) > 1
                                       else None)
            cell["ratio"] = (round(cell["semantic"] / cell["balanced"], 4)
                             if cell["balanced"] else None)
            test[c] = cell
        out.append({"setting": setting, "text_fields": members[0]["text_fields"],
                    "seeds": sorted(p["seed"] for p in members), "test": test,
                    **_verdicts(test, published)})
    return out


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
