"""Semantic IDs on a real catalogue: train the indexer, compare AMI with the other ID sources.

    python -m benchmarks.semantic_ids [--dataset beauty] [--threads 1] [--quick]
        [--title-only] [--out reports/quality/semantic_ids_<dataset>.json]
    python -m benchmarks.semantic_ids --refresh-pairs   # after a new SEATER run

1. ``seater index semantic`` (MiniLM embeddings cached in runs/<dataset>/semantic/), the
   progressive auto-encoder, capacity-aware codes, report.json and the usage plot;
2. AMI of depth-1 prefixes vs the top category and depth-2 prefixes vs the
   sub-category (LMIndexer Table 1) for semantic IDs, the balanced tree over SASRec
   embeddings (when runs/<dataset>/sasrec-loo/fit/item_emb.npy exists), a random tree
   and a balanced tree over the MiniLM vectors (the paper's clustering baseline);
3. SEATER loo metrics with semantic vs balanced IDs, when both runs are already in
   reports/quality/<dataset>.json (``seater train seater ... --ids semantic|balanced``);
4. cold start, held out: the indexer is retrained on (1 - --holdout) of the items; the
   rest are coded and placed as new items (no retraining) and judged by the trained
   items they land among (does their depth-1/2 node's majority category match theirs?),
   against a control set of trained items judged the same way;
5. a cold-start demo: made-up listings -> MiniLM -> code -> their new siblings' titles;
6. figures: reports/figures/semantic_ids_<dataset>_usage.png (codebook usage per level)
   and ..._ami.png (the AMI table as bars).

``--title-only`` also trains on titles alone (no category words in the text, so the
AMI is not helped by the text naming the category); it needs its own MiniLM pass.
``--quick`` trains 2 epochs per level (a smoke run; the report says so).
Threads: torch and BLAS are pinned to --threads.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from benchmarks.common import command, pinned_threads, write_report
from indexer import from_codes
from training.data import load_dataset
from training.data.dataset import ItemText
from training.lmindexer.ami import (
    ami,
    category_labels,
    first_varying_level,
    neighbour_agreement,
    prefix_clusters,
)
from training.lmindexer.cold_start import cold_start
from training.lmindexer.compare import compare, seater_comparison
from training.lmindexer.config import ScheduleParams, SemanticRun, TextParams
from training.lmindexer.pipeline import load_indexer, run_semantic
from training.lmindexer.plots import plot_usage
from training.lmindexer.text import Vocabulary, item_texts, minilm_encoder
from training.lmindexer.train import Corpus, prefix_argmax, train_indexer
from training.reports import REPORTS_DIR, git_commit, now

DEMO = [
    "OPI Nail Lacquer, Big Apple Red, 0.5 fl oz. Beauty > Makeup > Nails > Nail Polish",
    "Argan oil repair shampoo for dry, damaged hair. Beauty > Hair Care > Shampoos",
    "Vitamin C brightening face serum with hyaluronic acid. Beauty > Skin Care > Face",
    "Ceramic flat iron hair straightener, 1 inch. Beauty > Hair Care > Styling Tools",
]


def holdout_eval(cfg: SemanticRun, x: np.ndarray, item_text: ItemText, frac: float,
                 seed: int) -> dict:
    """Retrain without a random ``frac`` of the items, cold-start them, judge placements."""
    n = len(x)
    rng = np.random.default_rng(seed + 1)
    order = rng.permutation(n)
    n_held = int(round(frac * n))
    held, control = np.zeros(n, bool), np.zeros(n, bool)
    held[order[:n_held]] = True
    control[order[n_held: 2 * n_held]] = True  # trained items, judged the same way
    train_idx, held_idx = np.flatnonzero(~held), np.flatnonzero(held)
    texts = item_texts(item_text, cfg.text.fields)
    vocab = Vocabulary.build([texts[i] for i in train_idx], cfg.text.vocab_size,
                             cfg.text.min_df, cfg.text.max_df)
    bags = vocab.bags(texts)
    t0 = time.perf_counter()
    out = train_indexer(Corpus(x[train_idx], bags[train_idx], len(vocab)), cfg.model,
                        cfg.train, cfg.assign)
    tree, _ = from_codes(out.codes, k=cfg.model.k)
    res = cold_start(tree, out.model, x[held_idx], np.zeros((tree.n_nodes, 1), np.float32))
    codes = np.zeros((n, tree.max_depth), np.int64)
    codes[train_idx] = res.tree.codes[: len(train_idx)]
    codes[held_idx] = res.codes
    top = first_varying_level(item_text)
    labels = {"top": category_labels(item_text, top), "sub": category_labels(item_text, top + 1)}
    result: dict = {"held_out": n_held, "trained": len(train_idx),
                    "train_seconds": round(time.perf_counter() - t0, 1),
                    "placed_at_preferred_prefix": {
                        f"depth{d}": round(float((res.codes[:, :d] == res.preferred[:, :d])
                                                 .all(1).mean()), 4)
                        for d in range(1, out.model.levels + 1)}}
    for depth, cat in ((1, "top"), (2, "sub")):
        for name, query in (("cold_start", held), ("trained_control", control)):
            agree, judged = neighbour_agreement(codes, labels[cat], query, depth)
            score, _ = ami(prefix_clusters(codes[query], depth),
                           [labels[cat][i] for i in np.flatnonzero(query)])
            result[f"depth{depth}_vs_{cat}"] = result.get(f"depth{depth}_vs_{cat}", {})
            result[f"depth{depth}_vs_{cat}"][name] = {
                "neighbour_agreement": round(agree, 4), "judged": judged, "ami": round(score, 4)}
    return result


def demo(run: Path, item_text: ItemText, texts: list[str]) -> list[dict]:
    """Made-up listings -> MiniLM -> code -> leaf; their new siblings' titles."""
    loaded = load_indexer(run)
    tree, _ = from_codes(np.load(run / "codes.npy"), k=loaded.config.model.k)
    encode = minilm_encoder(loaded.config.text.model_path)
    res = cold_start(tree, loaded.model, encode(texts),
                     np.zeros((tree.n_nodes, 1), np.float32))
    rows = []
    for j, text in enumerate(texts):
        leaf = int(res.tree.item_leaf[res.items[j]])
        parent = int(res.tree.parent[leaf])
        grand = int(res.tree.parent[parent])
        near = [int(res.tree.leaf_item[c]) for c in res.tree.children[parent] if c >= 0]
        cousins = np.flatnonzero((tree.codes[:, :2] == res.codes[j, :2]).all(1))
        rows.append({"text": text, "code": res.codes[j].tolist(),
                     "preferred": res.preferred[j].tolist(),
                     "siblings": [item_text.title[i] for i in near if i < tree.n_items][:5],
                     "depth2_node_items": int(len(cousins)),
                     "depth2_top_categories": _top_categories(item_text, cousins),
                     "new_internal_nodes": int(sum(v >= tree.n_nodes for v in (parent, grand)))})
    return rows


def _top_categories(item_text: ItemText, items: np.ndarray, n: int = 3) -> dict[str, int]:
    names = [" > ".join(item_text.categories[i][0][1:3]) for i in items
             if item_text.categories[i]]
    values, counts = np.unique(names, return_counts=True) if names else ([], [])
    order = np.argsort(-np.asarray(counts))[:n]
    return {str(values[i]): int(counts[i]) for i in order}


def plot_ami(headline: dict[str, dict[str, float]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(headline)
    cols = ["level1_vs_top", "level2_vs_sub"]
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(names), 3.0))
    width = 0.38
    for j, col in enumerate(cols):
        vals = [headline[n].get(col, float("nan")) for n in names]
        bars = ax.bar(np.arange(len(names)) + (j - 0.5) * width, vals, width, label=col)
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_xticks(np.arange(len(names)), names, fontsize=8, rotation=15)
    ax.set_ylabel("AMI")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def refresh_pairs(out: Path, dataset: str, command: str) -> None:
    """Swap in the current SEATER pairs without retraining: the rest of the report keeps
    its own commit and command, and the refresh records its own."""
    if not out.is_file():
        raise SystemExit(f"{out} not found: run `python -m benchmarks.semantic_ids` without "
                         "--refresh-pairs first")
    result = json.loads(out.read_text())
    result["seater_loo"] = seater_comparison(dataset)
    result["seater_loo_refreshed"] = {"command": command, "commit": git_commit(),
                                      "created": now()}
    write_report(result, out)
    print(json.dumps(result["seater_loo"], indent=2))


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.semantic_ids",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="beauty")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="2 epochs per level")
    parser.add_argument("--title-only", action="store_true", help="also a title-only indexer")
    parser.add_argument("--holdout", type=float, default=0.1,
                        help="fraction of items held out for the cold-start check (0 = skip)")
    parser.add_argument("--runs", default="runs")
    parser.add_argument("--refresh-pairs", action="store_true",
                        help="only re-read the SEATER semantic/balanced pairs from "
                             "reports/quality/<dataset>.json into the existing report "
                             "(after a new `seater train seater` run; trains nothing)")
    parser.add_argument("--out", default="")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cmd = command("benchmarks.semantic_ids", argv)
    default_out = REPORTS_DIR / "quality" / f"semantic_ids_{args.dataset}.json"
    if args.refresh_pairs:
        refresh_pairs(Path(args.out) if args.out else default_out, args.dataset, cmd)
        return 0
    with pinned_threads(args.threads):
        evaluate(args, cmd, Path(args.out) if args.out else default_out)
    return 0


def evaluate(args: argparse.Namespace, command: str, out: Path) -> None:
    """Everything in the module docstring but the pair refresh; writes ``out``."""
    schedule = ScheduleParams(seed=args.seed, threads=args.threads, progress=False,
                              **({"epochs": 2} if args.quick else {}))
    cfg = SemanticRun(dataset=args.dataset, out_dir=args.runs, train=schedule)
    data = load_dataset(args.dataset)
    t0 = time.perf_counter()
    report = run_semantic(cfg, data=data, command=command)
    seconds = {"semantic": round(time.perf_counter() - t0, 1)}
    run = Path(args.runs) / data.name / cfg.name
    k = load_indexer(run).config.model.k
    codes = np.load(run / "codes.npy")
    text_emb = np.load(run / "text_emb.npy")
    sasrec = Path(args.runs) / data.name / "sasrec-loo" / "fit" / "item_emb.npy"
    t0 = time.perf_counter()
    result = compare(data.name, data.item_text, codes, report, sasrec, text_emb, k,
                     args.seed, command)
    seconds["compare"] = round(time.perf_counter() - t0, 1)

    if args.title_only:
        title_cfg = replace(cfg, name="semantic-title", text=TextParams(fields="title"))
        t0 = time.perf_counter()
        title_report = run_semantic(title_cfg, data=data, command=command)
        seconds["semantic_title"] = round(time.perf_counter() - t0, 1)
        title_codes = np.load(Path(args.runs) / data.name / "semantic-title" / "codes.npy")
        extra = compare(data.name, data.item_text, title_codes, None, None, None, k,
                        args.seed, command)
        result["ami_headline"]["semantic_title_only"] = extra["ami_headline"]["semantic"]
        result["ami"]["sources"]["semantic_title_only"] = extra["ami"]["sources"]["semantic"]
        result["semantic_title_only_run"] = {
            key: title_report.get(key) for key in ("collisions", "per_level", "cells")}

    if args.holdout > 0:
        t0 = time.perf_counter()
        resolved = load_indexer(run).config
        result["cold_start_holdout"] = holdout_eval(resolved, text_emb, data.item_text,
                                                    args.holdout, args.seed)
        seconds["holdout"] = round(time.perf_counter() - t0, 1)
    if data.name == "beauty":  # the demo listings are beauty products
        t0 = time.perf_counter()
        result["cold_start_demo"] = demo(run, data.item_text, DEMO)
        seconds["demo"] = round(time.perf_counter() - t0, 1)

    result["quick"] = args.quick
    result["seconds"] = seconds
    figures = REPORTS_DIR / "figures"
    result["figures"] = {
        "usage": str(plot_usage(codes, prefix_argmax(load_indexer(run).model, text_emb, codes),
                                k, figures / f"semantic_ids_{data.name}_usage.png",
                                f"{data.name}: codebook usage per level (k={k})")
                     .relative_to(REPORTS_DIR.parent)),
    }
    ami_png = figures / f"semantic_ids_{data.name}_ami.png"
    plot_ami(result["ami_headline"], ami_png, f"{data.name}: AMI of ID prefixes vs categories")
    result["figures"]["ami"] = str(ami_png.relative_to(REPORTS_DIR.parent))
    write_report(result, out)
    print(json.dumps({"report": str(out), "ami": result["ami_headline"],
                      "collisions": report["collisions"]["stored"],
                      "argmax_only": report["collisions"]["argmax_only"],
                      "missing": result["missing_sources"], "seconds": seconds,
                      "cold_start_holdout": result.get("cold_start_holdout")}, indent=2))


if __name__ == "__main__":
    sys.exit(main())
