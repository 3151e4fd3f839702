"""How much of SEATER's gap to its SASRec can the tree itself explain?

SEATER ranks through a constrained beam search over a k-ary tree: each step keeps the
``beam`` best prefixes, so an item whose ancestors fall out of the beam is never scored.
This diagnostic replaces SEATER's decoder by its ideal: the SASRec's own next-item
distribution folded onto the tree (a node's score is the probability mass of the items
under it, exactly what distillation trains the decoder towards), and runs the same beam
search with it. Its metrics against the SASRec's exhaustive ranking split the gap:

- what the tree and the beam lose even for a decoder that matched the teacher exactly
  (``oracle / sasrec`` below 1), and
- what is left, SEATER's own error in learning that distribution (its trained rows in
  ``reports/quality/<dataset>.json`` against the oracle).

Nothing is trained: the SASRec run and the tree SEATER builds from it (same builder,
same settings) are enough. Trained SEATER runs (``--seater-run``) are searched beside it,
and for every beam-searched model the report says at which depth each test target left
the beam (or that it was reached and ranked), which locates where a decoder goes wrong.

    python -m benchmarks.tree_oracle --sasrec-run runs/sports/sasrec-loo-rectools-batch4096 \
        [--seater-run runs/sports/seater-loo-tuned-distill1-s0 ...]
      -> reports/quality/tree_oracle_<dataset>.json
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.common import closing_load, pinned_threads, provenance, write_report
from indexer import IdTree, SearchResult, beam_search
from training.config import ConfigError
from training.data import Sequences, load_dataset
from training.evaluate import evaluate
from training.metrics import DEFAULT_KS, compute_metrics, topk_indices
from training.protocols import EvalSet, make_split
from training.seater.distill import TreeTeacher, load_teacher, sasrec_run_config
from training.seater.pipeline import TreeParams, check_same_split, load_run, make_tree
from training.seater.task import SeaterTask

ROOT = Path(__file__).resolve().parents[1]
BEAMS = (10, 20, 50, 100)


class FoldedTeacher:
    """A `Recommender`: the SASRec's softmax, exhaustively (``beam`` 0) or through the tree.

    Through the tree, the child scores of a node are log(mass(child) / mass(node)), so a
    prefix's accumulated score is the log mass under it and a leaf's its item's log
    probability: the beam ranks prefixes by exactly what an ideal decoder would.
    """

    def __init__(self, teacher: TreeTeacher, tree: IdTree, beam: int) -> None:
        self.teacher = teacher
        self.tree = tree
        self.beam = beam

    def probs(self, histories: Sequences, exclude: Sequences | None) -> np.ndarray:
        """Next-item probabilities renormalised over the items not excluded, float64.
        Shape: [B, n_items]."""
        probs = self.teacher.item_probs(histories).double().cpu().numpy()
        if exclude is not None and exclude.values.size:
            probs[exclude.row_ids(), exclude.values] = 0.0
        return probs / np.maximum(probs.sum(axis=1, keepdims=True), 1e-300)

    def recommend(self, histories: Sequences, k: int, exclude: Sequences | None) -> np.ndarray:
        if not self.beam:
            return topk_indices(self.probs(histories, exclude), k)
        found = self.search(histories, k, exclude).items
        out = np.full((len(found), k), -1, np.int64)
        out[:, :found.shape[1]] = found
        return out

    def search(self, histories: Sequences, n: int, exclude: Sequences | None,
               on_step: Callable[[np.ndarray], None] | None = None) -> SearchResult:
        """The beam search over folded masses; ``on_step`` as in `SeaterTask.search`."""
        probs = self.probs(histories, exclude)
        tree, batch = self.tree, len(probs)
        # mass under node v = cum[b, leaf_hi[v]] - cum[b, leaf_lo[v]] (depth-first leaves)
        cum = np.pad(np.cumsum(probs[:, tree.leaf_order], axis=1), ((0, 0), (1, 0)))
        rows = np.arange(batch)[:, None, None]

        def log_mass(nodes: np.ndarray) -> np.ndarray:
            safe = np.maximum(nodes, 0)
            mass = cum[rows, tree.leaf_hi[safe]] - cum[rows, tree.leaf_lo[safe]]
            return np.log(np.maximum(mass, 1e-300))

        def scorer(prefix: np.ndarray) -> np.ndarray:
            if on_step is not None:
                on_step(prefix)
            last = prefix[..., -1]  # [B, W]
            kids = tree.children[last]  # [B, W, k], -1 = no child
            out = log_mass(kids) - log_mass(last[..., None])
            return np.where(kids >= 0, out, -np.inf).astype(np.float32)

        excluded = None if exclude is None else list(exclude)
        return beam_search(tree, scorer, batch, self.beam, min(n, self.beam), excluded)


Search = Callable[[Sequences, int, Sequences | None, Callable[[np.ndarray], None]],
                  SearchResult]


def traced_evaluate(search: Search, tree: IdTree, evalset: EvalSet, n: int,
                    exclude_seen: bool, batch_size: int = 512) -> dict[str, Any]:
    """Metrics of a beam-searched model, and where each test target went.

    The beam that step ``d`` expands holds the kept depth-``d`` nodes, so a target is
    "lost at depth d" when its depth-``d`` ancestor is the first one missing from those;
    at the leaf depth, when its parent was kept but the leaf did not make the top ``n``.
    Shares are of all test targets and sum to 1 with the found ones.
    """
    depth = tree.max_depth
    lost = np.zeros(depth + 1, np.int64)
    found_top10 = found_rest = 0
    ranked = []
    for lo in range(0, len(evalset), batch_size):
        rows = np.arange(lo, min(lo + batch_size, len(evalset)))
        ctx, targets = evalset.contexts.take(rows), evalset.targets.take(rows)
        beams: list[np.ndarray] = []  # [B, W] nodes of each step's beam, by depth

        def record(prefix: np.ndarray, beams: list[np.ndarray] = beams) -> None:
            beams.append(prefix[..., -1].copy())

        items = search(ctx, n, ctx if exclude_seen else None, record).items
        ranked.append(np.pad(items, ((0, 0), (0, n - items.shape[1])), constant_values=-1))
        who, item = targets.row_ids(), targets.values
        paths = tree.node_paths[item]  # [T, depth]
        alive = np.ones(len(item), bool)
        for d in range(1, min(depth, len(beams))):
            kept = (beams[d][who] == paths[:, d - 1][:, None]).any(axis=1)
            lost[d] += np.count_nonzero(alive & ~kept)
            alive &= kept
        hit = items[who] == item[:, None]  # [T, n]
        reached = hit.any(axis=1)
        lost[depth] += np.count_nonzero(alive & ~reached)
        top10 = alive & reached & (hit.argmax(axis=1) < 10)
        found_top10 += np.count_nonzero(top10)
        found_rest += np.count_nonzero(alive & reached & ~top10)
    total = max(len(evalset.targets.values), 1)
    metrics = compute_metrics(np.concatenate(ranked), evalset.targets, DEFAULT_KS)
    return {"metrics": metrics, "users": len(evalset), "targets": int(total),
            "where_targets_went": {
                **{f"lost_at_depth_{d}": round(lost[d] / total, 4) for d in range(1, depth + 1)},
                "found_in_top10": round(found_top10 / total, 4),
                "found_below_top10": round(found_rest / total, 4)}}


def measure(folder: Path, k: int, beams: tuple[int, ...], split: str,
            seater_runs: list[Path], progress: bool) -> dict[str, Any]:
    cfg = sasrec_run_config(folder)
    data = load_dataset(cfg.dataset, cfg.data)
    emb = np.load(folder / "fit" / "item_emb.npy")
    tree, _ = make_tree(TreeParams(k=k), emb, data.n_items)
    teacher = load_teacher(folder, tree, temperature=1.0, device=torch.device("cpu"))
    parts = make_split(data, cfg.protocol, seed=cfg.split_seed)
    evalset, n = getattr(parts, split), max(DEFAULT_KS)
    res = evaluate(FoldedTeacher(teacher, tree, 0), evalset, exclude_seen=cfg.excludes_seen(),
                   seed=cfg.train.seed, progress=progress, desc="exhaustive")
    results: dict[str, dict[str, Any]] = {"exhaustive": {"metrics": res.metrics,
                                                         "users": res.n_users}}
    for beam in beams:
        results[f"oracle_beam{beam}"] = traced_evaluate(
            FoldedTeacher(teacher, tree, beam).search, tree, evalset, min(n, beam),
            cfg.excludes_seen())
    for run in seater_runs:
        model, own_tree, own, _ = load_run(run)
        if own.dataset != cfg.dataset:
            raise SystemExit(f"{run} was trained on {own.dataset}, the SASRec on {cfg.dataset}: "
                             "compare runs of one dataset")
        try:  # its test users must be the SASRec's, as for a SEATER built on it
            check_same_split(own, folder, asdict(cfg))
        except ConfigError as e:
            raise SystemExit(f"{run}: {e}") from None
        task = SeaterTask.for_search(model, own_tree, own.beam_size)
        results[f"seater_{run.name}"] = {
            **traced_evaluate(lambda h, m, x, step, task=task: task.search(h, m, x,
                                                                           on_step=step),
                              own_tree, evalset, min(n, own.beam_size), own.excludes_seen()),
            "beam": own.beam_size, "run_dir": str(run),
            "same_tree_as_oracle": bool(np.array_equal(own_tree.item_leaf, tree.item_leaf)
                                        and np.array_equal(own_tree.children, tree.children))}
    exact = results["exhaustive"]["metrics"]
    for row in results.values():
        row["share_of_exhaustive"] = {m: round(v / exact[m], 4) if exact[m] else None
                                      for m, v in row["metrics"].items()}
    return {"dataset": cfg.dataset, "protocol": cfg.protocol, "split_seed": cfg.split_seed,
            "split": split, "sasrec_run": str(folder),
            "tree": {**tree.summary(), "ids": "balanced"},
            "exclude_seen": cfg.excludes_seen(), "results": results}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tree_oracle", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sasrec-run", required=True, type=Path,
                        help="a `seater train sasrec` run folder (its fit is the teacher)")
    parser.add_argument("-k", type=int, default=16, help="the tree's arity (SEATER's -k)")
    parser.add_argument("--seater-run", type=Path, action="append", default=[],
                        help="a trained SEATER run on the same data and split (repeatable)")
    parser.add_argument("--beams", type=int, nargs="+", default=list(BEAMS))
    parser.add_argument("--split", choices=("valid", "test"), default="test")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None,
                        help="default reports/quality/tree_oracle_<dataset>.json")
    args = parser.parse_args(argv)
    if not (args.sasrec_run / "config.json").is_file() or not (
            args.sasrec_run / "fit" / "model.pt").is_file():
        parser.error(f"{args.sasrec_run} is not a finished SASRec run folder (config.json and "
                     "fit/model.pt): train one with `seater train sasrec` first")
    for run in args.seater_run:
        if not (run / "model.pt").is_file() or not (run / "tree.npz").is_file():
            parser.error(f"{run} is not a finished SEATER run folder (model.pt and tree.npz)")
    report = provenance("benchmarks.tree_oracle", sys.argv[1:] if argv is None else argv)
    with pinned_threads(args.threads) as pinned:
        report.update(measure(args.sasrec_run, args.k, tuple(args.beams), args.split,
                              args.seater_run, progress=sys.stderr.isatty()))
    report["threads"] = pinned
    closing_load(report)
    out = args.out or ROOT / "reports" / "quality" / f"tree_oracle_{report['dataset']}.json"
    write_report(report, out)
    for name, row in report["results"].items():
        m, share = row["metrics"], row["share_of_exhaustive"]
        went = ", ".join(f"{key} {v:.1%}" for key, v in row.get("where_targets_went", {}).items())
        print(f"{name}: " + ", ".join(f"{c} {m[c]:.4f} ({share[c]:.1%})" for c in (
            "recall@10", "ndcg@10", "recall@50")) + (f"\n    targets: {went}" if went else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
