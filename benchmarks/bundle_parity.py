"""Exported bundle vs the trained model on real histories: are the served top-n lists the
ones offline evaluation scored?

The export's own parity check compares graph outputs on random inputs (max abs diff);
this one runs the whole path a user meets — the service's ONNX engine (encoder, cached
state layout, IOBinding decoder, the indexer's beam search) against the torch model's
offline search — on test-split histories of the run's dataset, with their seen items
excluded, and counts identical lists. Float differences of ~1e-6 can swap two items
whose path scores tie to that precision, so the report also gives the overlap@n.

    python -m benchmarks.bundle_parity --run runs/beauty/seater-loo-balanced-k16 \
        --bundle artifacts/beauty-seater [--users 2000] [--n 10] [--beam 50]
      -> reports/bench/bundle_parity_<dataset>.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.common import ROOT, closing_load, pinned_threads, provenance, write_report
from service.model.bundle import BundleError
from service.model.load import load_engine
from service.settings import Settings
from training.data import load_dataset
from training.protocols import make_split
from training.seater.pipeline import load_run
from training.seater.task import SeaterTask


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bundle_parity",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, type=Path)
    parser.add_argument("--bundle", required=True, type=Path)
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--n", type=int, default=10)
    parser.add_argument("--beam", type=int, default=50)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="")
    args = parser.parse_args(argv)
    header = provenance("benchmarks.bundle_parity", argv)
    with pinned_threads(1) as pinned:
        try:
            out = {**compare(args), **header, "threads": pinned}
        except (FileNotFoundError, BundleError) as exc:  # a wrong --run or --bundle
            print(f"bundle_parity: {exc}", file=sys.stderr)
            return 2
    closing_load(out)
    write_report(out, args.out or ROOT / "reports" / "bench"
                 / f"bundle_parity_{out['dataset']}.json")
    print(json.dumps({k: out[k] for k in ("users", "identical_lists", f"mean_overlap@{args.n}",
                                          "seconds")}))
    return 0


def compare(args: argparse.Namespace) -> dict:
    """The engine's lists against ``SeaterTask.search`` on the run's test histories."""

    model, tree, cfg, _ = load_run(args.run)
    data = load_dataset(cfg.dataset)
    split = make_split(data, cfg.protocol, seed=cfg.split_seed)
    test = split.test
    rng = np.random.default_rng(args.seed)
    users = np.sort(rng.choice(len(test), min(args.users, len(test)),
                               replace=False))
    task = SeaterTask.for_search(model, tree, args.beam)
    engine = load_engine(args.bundle, Settings(redis_url=None))

    same = overlap = 0
    t_torch = t_onnx = 0.0
    max_len = cfg.model.max_len
    for lo in range(0, users.size, args.batch):
        rows = users[lo : lo + args.batch]
        hist = test.contexts.take(rows)
        t0 = time.perf_counter()
        want = task.search(hist, args.n, hist, args.beam).items
        t1 = time.perf_counter()
        seqs = [hist[i] for i in range(len(rows))]
        states = engine.encode([s[-max_len:] for s in seqs])
        hits = engine.search(states, np.full(len(rows), args.n), np.full(len(rows), args.beam),
                             seqs)
        t2 = time.perf_counter()
        t_torch += t1 - t0
        t_onnx += t2 - t1
        for i, hit in enumerate(hits):
            w = want[i][want[i] >= 0].tolist()
            g = hit.items.tolist()
            same += g == w
            overlap += len(set(g) & set(w)) / max(len(w), 1)
    n_users = int(users.size)
    return {
        "benchmark": "bundle_parity",
        "run": str(args.run), "bundle": str(args.bundle), "dataset": data.name,
        "protocol": cfg.protocol, "split": "test", "users": n_users, "n": args.n,
        "beam": args.beam, "seed": args.seed,
        "identical_lists": round(same / n_users, 4),
        f"mean_overlap@{args.n}": round(overlap / n_users, 4),
        "seconds": {"torch_search": round(t_torch, 2), "onnx_engine": round(t_onnx, 2)},
    }


if __name__ == "__main__":
    sys.exit(main())
