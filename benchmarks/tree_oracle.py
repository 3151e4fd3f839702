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
same settings) are enough.

    python -m benchmarks.tree_oracle --sasrec-run runs/sports/sasrec-loo-rectools-batch4096
      -> reports/quality/tree_oracle_<dataset>.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.common import closing_load, pinned_threads, provenance, write_report
from indexer import IdTree, beam_search
from training.checkpoint import load_checkpoint
from training.data import Sequences, load_dataset
from training.evaluate import evaluate
from training.metrics import topk_indices
from training.protocols import make_split
from training.sasrec.model import SASRec
from training.seater.distill import _run_config, teacher_checkpoint
from training.seater.pipeline import TreeParams, make_tree

ROOT = Path(__file__).resolve().parents[1]
BEAMS = (10, 20, 50, 100)


class FoldedTeacher:
    """A `Recommender`: the SASRec's softmax, exhaustively (``beam`` 0) or through the tree.

    Through the tree, the child scores of a node are log(mass(child) / mass(node)), so a
    prefix's accumulated score is the log mass under it and a leaf's its item's log
    probability: the beam ranks prefixes by exactly what an ideal decoder would.
    """

    def __init__(self, sasrec: SASRec, tree: IdTree, beam: int) -> None:
        self.sasrec = sasrec.eval()
        self.tree = tree
        self.beam = beam

    @torch.no_grad()
    def probs(self, histories: Sequences, exclude: Sequences | None) -> np.ndarray:
        """Next-item probabilities, float64, zero on excluded items. Shape: [B, n_items]."""
        seq = histories.tail(self.sasrec.p.max_len).to_padded(pad=self.sasrec.pad_id)
        scores = self.sasrec.scores(torch.from_numpy(seq)).double()
        if exclude is not None and exclude.values.size:
            scores[torch.from_numpy(exclude.row_ids()), torch.from_numpy(exclude.values)] = (
                float("-inf"))
        return torch.softmax(scores, dim=-1).numpy()

    def recommend(self, histories: Sequences, k: int, exclude: Sequences | None) -> np.ndarray:
        probs = self.probs(histories, exclude)
        if not self.beam:
            return topk_indices(probs, k)
        tree, batch = self.tree, len(probs)
        # mass under node v = cum[b, leaf_hi[v]] - cum[b, leaf_lo[v]] (depth-first leaves)
        cum = np.pad(np.cumsum(probs[:, tree.leaf_order], axis=1), ((0, 0), (1, 0)))
        rows = np.arange(batch)[:, None, None]

        def log_mass(nodes: np.ndarray) -> np.ndarray:
            safe = np.maximum(nodes, 0)
            mass = cum[rows, tree.leaf_hi[safe]] - cum[rows, tree.leaf_lo[safe]]
            return np.log(np.maximum(mass, 1e-300))

        def scorer(prefix: np.ndarray) -> np.ndarray:
            last = prefix[..., -1]  # [B, W]
            kids = tree.children[last]  # [B, W, k], -1 = no child
            out = log_mass(kids) - log_mass(last[..., None])
            return np.where(kids >= 0, out, -np.inf).astype(np.float32)

        excluded = None if exclude is None else list(exclude)
        found = beam_search(tree, scorer, batch, self.beam, min(k, self.beam), excluded).items
        out = np.full((batch, k), -1, np.int64)
        out[:, :found.shape[1]] = found
        return out


def load_sasrec(folder: Path, n_items: int) -> SASRec:
    """The run's fit (the weights SEATER's fit is built from and distilled from)."""
    cfg = _run_config(folder)
    model = SASRec(n_items, cfg.model)
    model.load_state_dict(load_checkpoint(teacher_checkpoint(folder, "fit", cfg))["model"])
    return model


def measure(folder: Path, k: int, beams: tuple[int, ...], split: str, max_users: int,
            progress: bool) -> dict[str, Any]:
    cfg = _run_config(folder)
    data = load_dataset(cfg.dataset, cfg.data)
    emb = np.load(folder / "fit" / "item_emb.npy")
    tree, _ = make_tree(TreeParams(k=k), emb, data.n_items)
    sasrec = load_sasrec(folder, data.n_items)
    evalset = getattr(make_split(data, cfg.protocol, seed=cfg.train.seed), split)
    results = {}
    for beam in (0, *beams):
        res = evaluate(FoldedTeacher(sasrec, tree, beam), evalset,
                       exclude_seen=cfg.excludes_seen(), max_users=max_users,
                       seed=cfg.train.seed, progress=progress,
                       desc=f"beam {beam}" if beam else "exhaustive")
        results["exhaustive" if not beam else f"beam{beam}"] = {
            "metrics": res.metrics, "users": res.n_users, "seconds": round(res.seconds, 1)}
    exact = results["exhaustive"]["metrics"]
    for row in results.values():
        row["share_of_exhaustive"] = {m: round(v / exact[m], 4) if exact[m] else None
                                      for m, v in row["metrics"].items()}
    return {"dataset": cfg.dataset, "protocol": cfg.protocol, "split": split,
            "sasrec_run": str(folder), "tree": {**tree.summary(), "ids": "balanced"},
            "exclude_seen": cfg.excludes_seen(), "results": results}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tree_oracle", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sasrec-run", required=True, type=Path,
                        help="a `seater train sasrec` run folder (its fit is the teacher)")
    parser.add_argument("-k", type=int, default=16, help="the tree's arity (SEATER's -k)")
    parser.add_argument("--beams", type=int, nargs="+", default=list(BEAMS))
    parser.add_argument("--split", choices=("valid", "test"), default="test")
    parser.add_argument("--max-users", type=int, default=0, help="0: every user")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None,
                        help="default reports/quality/tree_oracle_<dataset>.json")
    args = parser.parse_args(argv)
    if not (args.sasrec_run / "config.json").is_file() or not (
            args.sasrec_run / "fit" / "model.pt").is_file():
        parser.error(f"{args.sasrec_run} is not a finished SASRec run folder (config.json and "
                     "fit/model.pt): train one with `seater train sasrec` first")
    report = provenance("benchmarks.tree_oracle", sys.argv[1:] if argv is None else argv)
    with pinned_threads(args.threads) as pinned:
        report.update(measure(args.sasrec_run, args.k, tuple(args.beams), args.split,
                              args.max_users, progress=sys.stderr.isatty()))
    report["threads"] = pinned
    closing_load(report)
    out = args.out or ROOT / "reports" / "quality" / f"tree_oracle_{report['dataset']}.json"
    write_report(report, out)
    for name, row in report["results"].items():
        m, share = row["metrics"], row["share_of_exhaustive"]
        print(f"{name:>10}: " + ", ".join(f"{c} {m[c]:.4f} ({share[c]:.1%})"
                                          for c in ("recall@10", "ndcg@10", "recall@50")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
