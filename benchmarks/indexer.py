"""Benchmark of the indexer: tree builds (exact vs fast) and constrained beam search.

    python -m benchmarks.indexer [--quick] [--out reports/bench/indexer.json]

Builds: balanced trees over synthetic d=64 embeddings (a 1024-centre Gaussian mixture)
for n = 10k, 100k, 1M with k = 16, exact (k-means-constrained) and fast splitters, and
the SSE of every level of the exact and fast trees (plus a random tree for scale).

Search: beam 50, n 50, B = 1 and 64 on a 12,101-item tree (Beauty's size) and the 1M
tree, with a synthetic scorer (`DotProductScorer`: a random [n_nodes, 64] table and one
query per request) so the search bookkeeping is what gets measured. Side by side:
- python_trie: a lean per-row Python beam search over a dict-of-children trie (loops
  over requests and rows, candidate tuples sorted per request), same batched scorer;
- hf_style: HF `prefix_allowed_tokens_fn` style: per-row allowed-token lists from the
  trie scattered into a full-vocabulary score row, then a flat top-k over beam x vocab
  per request (what `PrefixConstrainedLogitsProcessor` + beam search do).
All three return the same items (checked). Scorer time is measured separately, so
"bookkeeping" = end-to-end minus scorer.

BLAS is pinned (--blas-threads, one by default): spinning BLAS threads slow small
matmuls badly whenever another process shares the cores. Builds are single-threaded:
"cpu_seconds" (process CPU time) is what a build costs on an idle machine; "seconds" is
wall time under whatever else the machine was running (the load is recorded).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from benchmarks.common import closing_load, pinned_threads, provenance, write_report
from indexer import (
    BuildConfig,
    DotProductScorer,
    IdTree,
    beam_search,
    build_balanced,
    build_kmeans,
    build_random,
    level_sse,
)

D, K, BEAM, N_OUT = 64, 16, 50, 50


def embeddings(n: int, seed: int) -> np.ndarray:
    """A 1024-centre Gaussian mixture: some structure for the SSE comparison."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((1024, D)).astype(np.float32)
    noise = 0.5 * rng.standard_normal((n, D)).astype(np.float32)
    return centres[rng.integers(1024, size=n)] + noise


# ------------------------------------------------------------------ builds
def bench_builds(sizes: list[int], exact_sizes: set[int], seed: int) -> tuple[dict, dict]:
    out: dict = {"d": D, "k": K, "data": "1024-centre Gaussian mixture, noise 0.5", "runs": []}
    kept: dict = {}
    for n in sizes:
        x = embeddings(n, seed)
        row: dict = {"n": n}
        trees = {}
        for splitter in ("fast", "exact"):
            if splitter == "exact" and n not in exact_sizes:
                row["exact"] = {"skipped": "exact min-cost-flow k-means is impractical at "
                                "this size (its cost grows much faster than n)"}
                continue
            config = BuildConfig(k=K, splitter=splitter, seed=seed, progress=False)
            cpu0 = time.process_time()
            tree, report = build_balanced(x, config)
            cpu = time.process_time() - cpu0
            trees[splitter] = tree
            row[splitter] = {
                "seconds": round(report.seconds, 2), "cpu_seconds": round(cpu, 2),
                "level_seconds": [round(s, 2) for s in report.level_seconds],
                "level_splits": list(report.level_splits), "depth": tree.max_depth,
                "n_nodes": tree.n_nodes, "strict_valid": tree.problems("strict") == [],
            }
            print(f"build n={n:>9,} {splitter:5s}: {report.seconds:7.1f} s "
                  f"(cpu {cpu:7.1f} s, load {os.getloadavg()[0]:.1f})  "
                  f"levels {row[splitter]['level_seconds']}", flush=True)
        rand, rand_report = build_random(n, BuildConfig(k=K, seed=seed, progress=False))
        row["random"] = {"seconds": round(rand_report.seconds, 2)}
        sse = {name: level_sse(t, x) for name, t in [*trees.items(), ("random", rand)]}
        row["sse_per_level"] = {name: [float(f"{v:.6g}") for v in s] for name, s in sse.items()}
        row["sse_total"] = {name: float(f"{s.sum():.6g}") for name, s in sse.items()}
        if "exact" in sse:
            row["sse_ratio_fast_over_exact"] = {
                "total": round(float(sse["fast"].sum() / sse["exact"].sum()), 4),
                "per_level": [round(float(f / e), 4) if e > 0 else None
                              for f, e in zip(sse["fast"], sse["exact"], strict=True)]}
            row["sse_ratio_random_over_exact"] = round(
                float(sse["random"].sum() / sse["exact"].sum()), 4)
            print(f"  SSE fast/exact {row['sse_ratio_fast_over_exact']['total']}, "
                  f"random/exact {row['sse_ratio_random_over_exact']}", flush=True)
        out["runs"].append(row)
        if n >= 1_000_000:
            kept["1M"] = trees["fast"]
    x = embeddings(10_000, seed)
    t0 = time.perf_counter()
    km, _ = build_kmeans(x, BuildConfig(k=K, method="kmeans", seed=seed, progress=False))
    out["kmeans_10k"] = {"seconds": round(time.perf_counter() - t0, 2),
                         "max_depth": km.max_depth, "uniform": km.is_uniform}
    return out, kept


# ------------------------------------------------------------------ baselines
def dict_trie(tree: IdTree) -> dict:
    """Nested dicts {child node id: subtrie}, children in slot order."""
    subtries: dict[int, dict] = {}
    for depth in range(tree.max_depth, -1, -1):  # bottom-up, no recursion
        for v in tree.levels[depth].tolist():
            row = tree.children[v]
            subtries[v] = {int(c): subtries.pop(int(c)) for c in row[row >= 0]}
    return subtries[tree.root]


def python_trie_search(trie: dict, root: int, scorer, batch: int, beam: int, n: int,
                       depth: int) -> list[list[int]]:
    """Per-row Python beam search; returns leaf node ids per request."""
    beams = [[(0.0, [root])] for _ in range(batch)]
    for _ in range(depth):
        width = max(len(bm) for bm in beams)
        rows = [[p for _, p in bm] + [bm[0][1]] * (width - len(bm)) for bm in beams]
        logp = scorer(np.array(rows, dtype=np.int64)).tolist()
        new = []
        for b, bm in enumerate(beams):
            cands = []
            for w, (score, path) in enumerate(bm):
                node = trie
                for tok in path[1:]:
                    node = node[tok]
                row = logp[b][w]
                for j, tok in enumerate(node):
                    cands.append((score + row[j], tok, path))
            cands.sort(key=lambda c: (-c[0], c[1]))
            new.append([(s, path + [tok]) for s, tok, path in cands[:beam]])
        beams = new
    return [[path[-1] for _, path in bm[:n]] for bm in beams]


def hf_style_search(trie: dict, root: int, scorer, batch: int, beam: int, n: int,
                    depth: int, vocab: int) -> list[list[int]]:
    """prefix_allowed_tokens_fn per row + full-vocab scores + flat top-k per request."""

    def prefix_allowed_tokens_fn(sent: list[int]) -> list[int]:
        node = trie
        for tok in sent[1:]:
            node = node[tok]
        return list(node)

    tokens = np.full((batch, 1, 1), root, np.int64)
    scores = np.zeros((batch, 1), np.float32)
    for _ in range(depth):
        width = tokens.shape[1]
        logp = scorer(tokens)
        full = np.full((batch, width, vocab), -np.inf, np.float32)  # HF: mask over vocab
        for b in range(batch):
            for w in range(width):
                if scores[b, w] == -np.inf:
                    continue
                allowed = prefix_allowed_tokens_fn(tokens[b, w].tolist())
                full[b, w, allowed] = scores[b, w] + logp[b, w, : len(allowed)]
        flat = full.reshape(batch, width * vocab)
        keep = min(beam, int(np.isfinite(flat).sum(axis=1).max()))
        top = np.argpartition(-flat, keep - 1, axis=1)[:, :keep]
        top_scores = np.take_along_axis(flat, top, axis=1)
        order = np.lexsort((top % vocab, -top_scores), axis=-1)
        top = np.take_along_axis(top, order, axis=1)
        rows, toks = top // vocab, top % vocab
        tokens = np.concatenate([np.take_along_axis(tokens, rows[..., None], axis=1),
                                 toks[..., None]], axis=2)
        scores = np.take_along_axis(flat, top, axis=1)
    return [[int(t) for t in tokens[b, :n, -1]] for b in range(batch)]


# ------------------------------------------------------------------ search
class Timed:
    """Wraps a scorer and accumulates its wall time."""

    def __init__(self, scorer) -> None:
        self.scorer, self.seconds = scorer, 0.0

    def __call__(self, prefix: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        out = self.scorer(prefix)
        self.seconds += time.perf_counter() - t0
        return out


def measure(fn, scorer: Timed, reps: int) -> tuple[dict, object]:
    """Median end-to-end and scorer time over `reps` runs (after one warm-up)."""
    result = fn()
    totals, scorer_times = [], []
    for _ in range(reps):
        scorer.seconds = 0.0
        t0 = time.perf_counter()
        result = fn()
        totals.append(time.perf_counter() - t0)
        scorer_times.append(scorer.seconds)
    total, score_s = float(np.median(totals)), float(np.median(scorer_times))
    return {"end_to_end_ms": round(1e3 * total, 3), "scorer_ms": round(1e3 * score_s, 3),
            "bookkeeping_ms": round(1e3 * (total - score_s), 3), "reps": reps}, result


def _ratio(base: dict, ours: dict, key: str) -> float:
    """base / ours, using the linearly scaled figure where the baseline ran fewer requests."""
    return round(base.get(key + "_scaled", base[key]) / max(ours[key], 1e-9), 1)


def bench_search(name: str, tree: IdTree, seed: int, quick: bool, hf_batch_cap: int) -> dict:
    rng = np.random.default_rng(seed)
    node_emb = (rng.standard_normal((tree.n_nodes, D)) / np.sqrt(D)).astype(np.float32)
    t0 = time.perf_counter()
    trie = dict_trie(tree)
    out: dict = {"n_items": tree.n_items, "n_nodes": tree.n_nodes, "depth": tree.max_depth,
                 "beam": BEAM, "n": N_OUT, "trie_build_s": round(time.perf_counter() - t0, 2)}
    steps = tree.max_depth
    for batch in (1, 64):
        queries = rng.standard_normal((batch, D)).astype(np.float32)
        scorer = Timed(DotProductScorer(tree.children, node_emb, queries))
        ours, result = measure(lambda s=scorer, b=batch: beam_search(tree, s, b, BEAM, N_OUT),
                               scorer, 5 if quick else 20)
        ours["per_step_ms"] = round(ours["end_to_end_ms"] / steps, 3)
        leaves = tree.item_leaf[result.items]
        row: dict = {"vectorised": ours}

        py, py_leaves = measure(
            lambda s=scorer, b=batch: python_trie_search(trie, tree.root, s, b, BEAM, N_OUT,
                                                         steps), scorer, 2 if quick else 5)
        py["per_step_ms"] = round(py["end_to_end_ms"] / steps, 3)
        py["same_items"] = bool(np.array_equal(np.array(py_leaves), leaves))
        row["python_trie"] = py

        hb = min(batch, hf_batch_cap)
        hf_scorer = Timed(DotProductScorer(tree.children, node_emb, queries[:hb]))
        hf, hf_leaves = measure(
            lambda s=hf_scorer, b=hb: hf_style_search(trie, tree.root, s, b, BEAM, N_OUT,
                                                      steps, tree.n_nodes), hf_scorer, 1)
        hf_items = np.array(hf_leaves)
        hf["same_items_fraction"] = round(float(np.mean(
            [len(set(a) & set(b)) / len(b) for a, b in zip(hf_items.tolist(),
                                                           leaves[:hb].tolist(), strict=True)])), 4)
        if hb < batch:
            hf["measured_batch"] = hb
            hf["note"] = (f"full-vocab arrays for B={batch} would need "
                          f"{batch * BEAM * tree.n_nodes * 4 / 2**30:.1f} GiB per step; timed "
                          f"B={hb} and scaled linearly (all its costs are per row)")
            scale = batch / hb
            for key in ("end_to_end_ms", "scorer_ms", "bookkeeping_ms"):
                hf[key + "_scaled"] = round(hf[key] * scale, 1)
        row["hf_style"] = hf

        row["speedup"] = {
            "vs_python_trie_end_to_end": _ratio(py, ours, "end_to_end_ms"),
            "vs_python_trie_bookkeeping": _ratio(py, ours, "bookkeeping_ms"),
            "vs_hf_style_end_to_end": _ratio(hf, ours, "end_to_end_ms"),
            "vs_hf_style_bookkeeping": _ratio(hf, ours, "bookkeeping_ms"),
        }
        out[f"B={batch}"] = row
        hf_ms = hf.get("end_to_end_ms_scaled", hf["end_to_end_ms"])
        print(f"search {name} B={batch:>2}: ours {ours['end_to_end_ms']:8.2f} ms "
              f"(book {ours['bookkeeping_ms']:.2f}) | trie {py['end_to_end_ms']:9.2f} ms "
              f"(book {py['bookkeeping_ms']:.2f}) | hf {hf_ms:9.1f} ms"
              f" | speedup {row['speedup']}", flush=True)

    batch = 64
    queries = rng.standard_normal((batch, D)).astype(np.float32)
    scorer = Timed(DotProductScorer(tree.children, node_emb, queries))
    seen = [rng.choice(tree.n_items, 50, replace=False) for _ in range(batch)]
    allowed = rng.random(tree.n_items) < 0.9
    excl, result = measure(lambda: beam_search(tree, scorer, batch, BEAM, N_OUT, exclude=seen),
                           scorer, 3 if quick else 10)
    excl["returned_exactly_n"] = bool((result.items >= 0).all())
    both, _ = measure(lambda: beam_search(tree, scorer, batch, BEAM, N_OUT, exclude=seen,
                                          allowed=allowed), scorer, 3 if quick else 10)
    out["B=64_exclude_50_seen"] = excl
    out["B=64_exclude_50_seen_and_allowed_90pct"] = both
    return out


def summarise(report: dict) -> dict:
    """The headline figures and the issue's acceptance criteria, pass or fail."""
    runs = {r["n"]: r for r in report["build"]["runs"]}
    out: dict = {"build_seconds": {
        f"{n:,}": {s: r[s].get("seconds") for s in ("fast", "exact") if "seconds" in r[s]}
        for n, r in runs.items()}}
    out["sse_ratio_fast_over_exact"] = {
        f"{n:,}": r["sse_ratio_fast_over_exact"]["total"] for n, r in runs.items()
        if "sse_ratio_fast_over_exact" in r}
    if 1_000_000 in runs:
        fast = runs[1_000_000]["fast"]
        out["criterion_1M_fast_build_under_600_s"] = {
            "wall_s": fast["seconds"], "cpu_s": fast["cpu_seconds"],
            "pass": fast["seconds"] < 600}
    for tree in ("12k", "1M"):
        if tree not in report["search"]:
            continue
        b64 = report["search"][tree]["B=64"]
        sp = b64["speedup"]
        out[f"criterion_100x_at_B64_{tree}"] = {
            **sp,
            # The criterion compares search implementations: the scorer (the model, the
            # same batched call in all three) is timed apart and left out; end-to-end
            # ratios, scorer included, are reported beside it.
            "criterion": "search time without the shared scorer (bookkeeping) >= 100x",
            "pass_vs_hf_style": sp["vs_hf_style_bookkeeping"] >= 100,
            "pass_vs_python_trie": sp["vs_python_trie_bookkeeping"] >= 100,
        }
    return out


def print_table(report: dict) -> None:
    print("\nbuild (k=16, d=64)        wall s    cpu s   SSE fast/exact")
    for r in report["build"]["runs"]:
        for s in ("fast", "exact"):
            if "seconds" in r[s]:
                ratio = r.get("sse_ratio_fast_over_exact", {}).get("total", "")
                print(f"  n={r['n']:>9,} {s:5s}  {r[s]['seconds']:8.1f} {r[s]['cpu_seconds']:8.1f}"
                      f"   {ratio if s == 'fast' else ''}")
    print("\nsearch (beam 50, n 50)    ours ms  (book)   trie ms  (book)    hf ms   "
          "x trie  x hf")
    for tree in ("12k", "1M"):
        for b in ("B=1", "B=64"):
            if tree not in report["search"]:
                continue
            row = report["search"][tree][b]
            ours, py, hf = row["vectorised"], row["python_trie"], row["hf_style"]
            hf_ms = hf.get("end_to_end_ms_scaled", hf["end_to_end_ms"])
            print(f"  {tree:>3} {b:5s}  {ours['end_to_end_ms']:12.2f} "
                  f"({ours['bookkeeping_ms']:6.2f}) {py['end_to_end_ms']:9.2f} "
                  f"({py['bookkeeping_ms']:6.2f}) {hf_ms:9.1f}"
                  f" {row['speedup']['vs_python_trie_end_to_end']:7.1f}"
                  f" {row['speedup']['vs_hf_style_end_to_end']:6.0f}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.indexer",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--out", default="reports/bench/indexer.json")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--blas-threads", type=int, default=1)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    seed, quick = args.seed, args.quick
    started = time.perf_counter()
    report: dict = {"benchmark": "indexer", "quick": quick, "seed": seed,
                    **provenance("benchmarks.indexer", argv)}
    with pinned_threads(args.blas_threads) as pinned:
        report["threads"] = pinned
        sizes = [10_000, 100_000] if quick else [10_000, 100_000, 1_000_000]
        exact_sizes = {10_000} if quick else {10_000, 100_000}
        report["build"], kept = bench_builds(sizes, exact_sizes, seed)
        if not quick:
            seconds_1m = report["build"]["runs"][-1]["fast"]["seconds"]
            report["build"]["1M_fast_under_10_min"] = seconds_1m < 600

        x12 = np.random.default_rng(seed).standard_normal((12_101, D)).astype(np.float32)
        tree12, rep12 = build_balanced(x12, BuildConfig(k=K, seed=seed, progress=False))
        report["search"] = {
            "scorer": "DotProductScorer: log_softmax over children of q_b . e_child",
            "tree_12k_build": {"splitter": rep12.splitter, "seconds": round(rep12.seconds, 2)}}
        report["search"]["12k"] = bench_search("12k", tree12, seed, quick, hf_batch_cap=64)
        if "1M" in kept:
            report["search"]["1M"] = bench_search("1M", kept["1M"], seed, quick,
                                                  hf_batch_cap=2)
    closing_load(report)
    report["total_seconds"] = round(time.perf_counter() - started, 1)
    report["summary"] = summarise(report)
    print_table(report)
    write_report(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
