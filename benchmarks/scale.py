"""Catalogue scale: SEATER's engine against brute-force dense and a FAISS index, side by side.

    python -m benchmarks.scale [--sizes 12101,100000,1000000,5000000,10000000] [--threads 1]
                               [--out reports/bench/scale.json]

Per catalogue size, with the project's real code paths and random weights (the cost of a
retrieval does not depend on what the weights learnt):
- item vectors: d=64 from a Gaussian mixture (about one centre per thousand items), so
  the catalogue has the cluster structure real embeddings have and an ANN index is not
  crippled by isotropic noise; they are the SASRec item table and the vectors the tree
  is built from, as in training;
- build: ``indexer.build_tree`` (balanced, fast splitter);
- export: ``training.seater.export.export_bundle`` with an untrained ``Seater(SeaterParams())``
  and ``training.sasrec.export.export_sasrec_bundle`` with an untrained ``SASRec`` whose
  item table is the vectors (the dense baseline bundle); bundle sizes from their files;
- load: ``service.model.load.load_engine`` in a fresh process per bundle: wall time and RSS;
- FAISS: ``IndexIVFFlat`` (inner product) over the same item table, nlist a power of two
  near 4 sqrt(N), nprobe the smallest power of two whose recall@10 against exact search
  reaches ``--target-recall`` on tuning queries (user vectors of held-out histories), then
  that recall re-measured on other queries and stated;
- latency: B=1 and B=64 requests, beam 50, n 10, each request's history excluded from
  its answer, for the SEATER engine (encode + beam search), the dense engine (encode +
  scan) and the dense encoder + FAISS; the three run in turn on the same batch, round
  after round, so all see the same machine. Throughput = B / median latency.

Every system gets the same thread count (``--threads``): ONNX Runtime sessions through
the service's ``Settings``, numpy BLAS and FAISS's OpenMP through threadpoolctl. Sizes
that cannot be run are written as ``skipped`` with the reason. The report records the
command, commit, machine, and the load before and after with the other processes then
busy (also just before each size's latency rounds), since other work on the machine
slows every system.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import (
    ROOT,
    closing_load,
    load_average,
    machine_activity,
    pinned_threads,
    provenance,
    write_report,
)

D, K, BEAM, N_OUT = 64, 16, 50, 10
ITEMS_PER_CENTRE = 1000
NOISE = 0.5
MAX_HISTORY = 50
BATCHES = (1, 64)
QUERY_SETS = {
    "encoder_queries": "user vectors of the untrained SASRec encoder on held-out histories: "
                       "what the measured FAISS system searches",
    "in_distribution_queries": "fresh draws of the item mixture: queries that lie among the "
                               "items, as a trained encoder's tend to; fewer probes reach the "
                               "target, so faiss_in_distribution_nprobe is FAISS at its "
                               "cheapest tuned setting",
}


# ------------------------------------------------------------------ data
def mixture(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Item vectors [n, D] around ``n / ITEMS_PER_CENTRE`` centres, each item's centre,
    and the centres (for fresh draws of the same distribution, :func:`draw`)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(8, n // ITEMS_PER_CENTRE), D), dtype=np.float32)
    which = rng.integers(len(centres), size=n)
    return draw(centres, which, rng), which, centres


def draw(centres: np.ndarray, which: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``centres[which]`` plus Gaussian noise, scaled by 1/sqrt(D) (SASRec's initial
    embedding scale). Written in place, as 10M x 64 floats is gigabytes."""
    x = rng.standard_normal((len(which), D), dtype=np.float32)
    x *= NOISE
    x += centres[which]
    x *= D**-0.5
    return x


def histories(which: np.ndarray, count: int, seed: int) -> list[np.ndarray]:
    """``count`` histories of 1..MAX_HISTORY items (mean about 10), each from one centre:
    a user with one taste, whose vector lies near that part of the catalogue."""
    rng = np.random.default_rng(seed + 1)
    order = np.argsort(which, kind="stable")
    starts = np.searchsorted(which[order], np.arange(which.max() + 2))
    out = []
    for _ in range(count):
        c = int(rng.integers(which.max() + 1))
        members = order[starts[c]: starts[c + 1]]
        if members.size == 0:
            members = order
        length = int(min(MAX_HISTORY, rng.geometric(0.1)))
        out.append(rng.choice(members, size=length).astype(np.int64))
    return out


# ------------------------------------------------------------------ build and export
def build_and_export(x: np.ndarray, out_root: Path, seed: int) -> dict[str, Any]:
    """Tree, SEATER bundle and dense bundle for the catalogue ``x``; times and sizes."""
    import torch

    from indexer import BuildConfig, build_tree
    from training.sasrec.export import export_sasrec_bundle
    from training.sasrec.model import SASRec, SASRecParams
    from training.seater.export import export_bundle
    from training.seater.model import Seater, SeaterParams

    n = len(x)
    items = {"ids": [str(i) for i in range(n)]}
    row: dict[str, Any] = {}
    cpu0, t0 = time.process_time(), time.perf_counter()
    tree, report = build_tree(x, BuildConfig(k=K, splitter="fast", seed=seed, progress=False))
    row["build"] = {"seconds": round(time.perf_counter() - t0, 2),
                    "cpu_seconds": round(time.process_time() - cpu0, 2),
                    "splitter": report.splitter, "k": K, "depth": int(tree.max_depth),
                    "n_nodes": int(tree.n_nodes)}

    torch.manual_seed(seed)
    seater = Seater(tree.n_nodes, tree.max_depth, tree.root, SeaterParams()).eval()
    t0 = time.perf_counter()
    seater_path = export_bundle(seater, tree, items, out_root, f"seater-{n}", "scale",
                                extra={"note": "untrained, for timing only"})
    row["export_seater_seconds"] = round(time.perf_counter() - t0, 2)
    del seater, tree
    gc.collect()

    dense = SASRec(n, SASRecParams()).eval()
    with torch.no_grad():
        dense.item_emb.weight[:n] = torch.from_numpy(x)
    t0 = time.perf_counter()
    dense_path = export_sasrec_bundle(dense, items, out_root, f"dense-{n}", "scale",
                                      extra={"note": "untrained, item table from a mixture"})
    row["export_dense_seconds"] = round(time.perf_counter() - t0, 2)
    del dense
    gc.collect()
    row["bundle_bytes"] = {"seater": bundle_bytes(seater_path),
                           "dense": bundle_bytes(dense_path)}
    row["paths"] = {"seater": seater_path, "dense": dense_path}
    return row


def bundle_bytes(path: Path) -> dict[str, int]:
    files = {p.name: p.stat().st_size for p in sorted(Path(path).iterdir()) if p.is_file()}
    return {**files, "total": sum(files.values())}


# ------------------------------------------------------------------ service loader
def service_settings(threads: int):
    """The service's settings with every ONNX Runtime pool at ``threads``, no cache."""
    from service.settings import Settings

    return Settings(redis_url=None, cache_enabled=False, providers="cpu",
                    intra_op_threads=threads, encoder_intra_op_threads=threads,
                    allow_spinning=False)


def load(path: Path, threads: int):
    from service.model.load import load_engine

    return load_engine(Path(path), service_settings(threads))


def _rss_mb() -> dict[str, float]:
    status = Path("/proc/self/status").read_text().splitlines()
    values = {ln.split(":")[0]: int(ln.split()[1]) / 1024 for ln in status
              if ln.startswith(("VmRSS", "VmHWM"))}
    return {"rss_mb": round(values.get("VmRSS", -1), 1),
            "peak_rss_mb": round(values.get("VmHWM", -1), 1)}


def _probe(path: str, threads: int, queue) -> None:
    """In a fresh process: RSS with the service imported, then after loading the bundle."""
    import service.model.load  # noqa: F401  (imported before the baseline is taken)

    before = _rss_mb()["rss_mb"]
    t0 = time.perf_counter()
    engine = load(Path(path), threads)
    seconds = time.perf_counter() - t0
    after = _rss_mb()
    engine.close()
    queue.put({"seconds": round(seconds, 3), "rss_mb_before_load": before, **after,
               "rss_mb_added_by_load": round(after["rss_mb"] - before, 1)})


def probe_load(path: Path, threads: int) -> dict[str, Any]:
    """``load_engine`` timed in its own process, so RSS is the loaded engine's alone."""
    import multiprocessing as mp
    import queue as queues

    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    proc = ctx.Process(target=_probe, args=(str(path), threads, results))
    proc.start()
    try:
        while True:
            try:
                return results.get(timeout=1)
            except queues.Empty:
                if not proc.is_alive():  # died before answering (its traceback is on stderr)
                    raise RuntimeError(f"loading {path} in a fresh process failed "
                                       f"(exit code {proc.exitcode})") from None
    finally:
        proc.join(60)


# ------------------------------------------------------------------ FAISS
def nlist_for(n: int) -> int:
    return max(16, 2 ** round(math.log2(4 * math.sqrt(n))))


def exact_top(x: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Exact inner-product top-k, in blocks of queries (the ground truth for recall)."""
    from service.model.dense import top_n

    return np.concatenate([top_n(queries[i: i + 64] @ x.T, k)
                           for i in range(0, len(queries), 64)])


def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    k = truth.shape[1]
    return float(np.mean([len(set(f[:k].tolist()) & set(t.tolist())) / k
                          for f, t in zip(found, truth, strict=True)]))


def tune_nprobe(index, x: np.ndarray, tune: np.ndarray, check: np.ndarray, target: float
                ) -> dict[str, Any]:
    """The smallest power-of-two nprobe whose recall@10 on ``tune`` reaches ``target``,
    and the recall it then has on ``check`` (queries it was not chosen on)."""
    truth_tune, truth_check = exact_top(x, tune, N_OUT), exact_top(x, check, N_OUT)
    sweep, nprobe = [], 1
    while nprobe <= index.nlist:
        index.nprobe = nprobe
        r = recall_at(index.search(tune, N_OUT)[1], truth_tune)
        sweep.append({"nprobe": nprobe, "recall@10": round(r, 4)})
        if r >= target:
            break
        nprobe *= 2
    index.nprobe = min(nprobe, index.nlist)
    return {"nprobe": index.nprobe, "sweep": sweep,
            "recall@10": round(recall_at(index.search(check, N_OUT)[1], truth_check), 4),
            "tuning_queries": len(tune), "recall_queries": len(check)}


def build_faiss(x: np.ndarray, queries: dict[str, tuple[np.ndarray, np.ndarray]],
                target: float, seed: int) -> tuple[Any, dict[str, Any]]:
    """IVF-Flat over ``x``, its nprobe tuned per query set (tuning and checking queries)."""
    import faiss

    n = len(x)
    nlist = nlist_for(n)
    t0 = time.perf_counter()
    quantizer = faiss.IndexFlatIP(D)
    index = faiss.IndexIVFFlat(quantizer, D, nlist, faiss.METRIC_INNER_PRODUCT)
    rng = np.random.default_rng(seed + 2)
    sample = x[rng.choice(n, size=min(n, 40 * nlist), replace=False)]
    index.cp.niter = 10
    index.train(sample)
    index.add(x)
    build_s = time.perf_counter() - t0
    tuned = {name: tune_nprobe(index, x, tune, check, target)
             for name, (tune, check) in queries.items()}
    return index, {
        "index": f"IndexIVFFlat(IndexFlatIP, nlist={nlist}, METRIC_INNER_PRODUCT)",
        "faiss": faiss.__version__, "nlist": nlist, "train_points": len(sample),
        "kmeans_iterations": 10, "build_seconds": round(build_s, 2),
        "index_bytes": int(faiss.serialize_index(index).size),
        "target_recall@10": target,
        "recall_against": "exact inner-product top-10 over the same item table, on queries "
                          "not used for tuning",
        **tuned,
    }


class FaissSystem:
    """The dense baseline's encoder, then FAISS at ``nprobe`` instead of the exhaustive scan."""

    def __init__(self, dense, index, nprobe: int) -> None:
        self.dense, self.index, self.nprobe = dense, index, nprobe

    def encode(self, hist: Sequence[np.ndarray]):
        return self.dense.encode(hist)

    def search(self, states, n: np.ndarray, beam: np.ndarray, exclude: Sequence[np.ndarray]):
        """Top ``n + len(history)`` from the index, the history dropped, first n kept."""
        users = user_vectors(states)
        self.index.nprobe = self.nprobe
        extra = max(len(e) for e in exclude)
        _, found = self.index.search(users, int(n.max()) + extra)
        out = []
        for row, seen, want in zip(found, exclude, n, strict=True):
            keep = row[(row >= 0) & ~np.isin(row, seen)]
            out.append(keep[:want])
        return out


def user_vectors(states) -> np.ndarray:
    """The dense engine's per-request states (``service.model.engine.UserVector``), stacked."""
    return np.stack([s.vector for s in states])


# ------------------------------------------------------------------ latency
def timing(samples_s: list[float], batch: int) -> dict[str, float]:
    ms = np.asarray(samples_s) * 1e3
    median = float(np.median(ms))
    return {"median_ms": round(median, 3), "p95_ms": round(float(np.percentile(ms, 95)), 3),
            "repeats": len(ms), "throughput_per_s": round(batch / median * 1e3, 1)}


def measure(systems: dict[str, Any], pool: list[np.ndarray], batch: int, reps: int
            ) -> dict[str, dict[str, float]]:
    """All systems on the same batch in turn (order rotating), ``reps`` rounds after one
    warm-up; end-to-end = encode + search, as a request pays it."""
    names = list(systems)
    samples: dict[str, list[float]] = {name: [] for name in names}
    ns, beams = np.full(batch, N_OUT), np.full(batch, BEAM)
    for r in range(reps + 1):
        hist = [pool[(r * batch + b) % len(pool)] for b in range(batch)]
        for name in names[r % len(names):] + names[: r % len(names)]:
            system = systems[name]
            t0 = time.perf_counter()
            system.search(system.encode(hist), ns, beams, hist)
            if r:
                samples[name].append(time.perf_counter() - t0)
    return {name: timing(s, batch) for name, s in samples.items()}


def repeats(n: int, quick: bool) -> dict[int, int]:
    """Fewer rounds where one brute-force B=64 batch takes long."""
    if quick:
        return {1: 5, 64: 2}
    return {1: 100, 64: 30} if n <= 100_000 else {1: 50, 64: 15}


# ------------------------------------------------------------------ one size
def cannot_run(n: int, done: list[dict[str, Any]], budget_s: float, elapsed_s: float,
               available_mb: float | None) -> str | None:
    """Why size ``n`` cannot be run here, from the sizes already measured; None if it can.

    Time is scaled linearly in the catalogue from the largest size measured in this run.
    Memory too, per item: the growth of this process's peak RSS between the two largest
    sizes over their difference in items (with one size, its whole growth over its items:
    an overestimate, as that includes the first imports), against the memory the machine
    has available now."""
    reasons = []
    measured = [r for r in done if "seconds" in r]
    if measured:
        last = measured[-1]
        estimate = last["seconds"] * n / last["n_items"]
        if elapsed_s + estimate > budget_s:
            reasons.append(
                f"time: the {last['n_items']:,}-item size took {last['seconds']:.0f} s; "
                f"scaled linearly, {n:,} items would take ~{estimate / 60:.0f} min, beyond "
                f"this run's budget (--budget-minutes {budget_s / 60:.0f}, "
                f"{elapsed_s / 60:.0f} min spent)")
        per_item = memory_per_item_mb(measured)
        if per_item is not None and available_mb is not None and per_item * n > available_mb:
            reasons.append(
                f"memory: {per_item * 1e6:,.0f} MB per million items, measured on the sizes "
                f"up to {last['n_items']:,}; {n:,} items need ~{per_item * n:,.0f} MB, more "
                f"than the {available_mb:,.0f} MB available")
    return "; ".join(reasons) or None


def memory_per_item_mb(measured: list[dict[str, Any]]) -> float | None:
    """Peak-RSS growth per catalogue item (MB) from the measured sizes, as in ``cannot_run``."""
    rows = [r for r in measured if "peak_rss_mb" in r]
    if len(rows) >= 2 and rows[-1]["n_items"] > rows[-2]["n_items"]:
        grew = max(rows[-1]["peak_rss_mb"] - rows[-2]["peak_rss_mb"], 0.0)
        return grew / (rows[-1]["n_items"] - rows[-2]["n_items"])
    if rows:
        return rows[-1]["peak_rss_mb_grown"] / rows[-1]["n_items"]
    return None


def peak_rss_mb() -> float:
    """This process's peak resident set so far (Linux reports KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def available_memory_mb() -> float | None:
    """``MemAvailable`` from /proc/meminfo; None where there is none."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def run_size(n: int, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    started, rss_before = time.perf_counter(), peak_rss_mb()
    row: dict[str, Any] = {"n_items": n, "load_average_at_start": load_average(),
                           "available_memory_mb_at_start": available_memory_mb()}
    x, which, centres = mixture(n, args.seed)
    row["items"] = {"d": D, "centres": int(which.max() + 1), "noise": NOISE,
                    "scale": f"1/sqrt({D})"}
    made = build_and_export(x, work, args.seed)
    paths = made.pop("paths")
    row.update(made)
    row["load"] = {name: probe_load(path, args.threads) for name, path in paths.items()}
    print(f"n={n:,}: build {row['build']['seconds']} s, export {row['export_seater_seconds']}"
          f" / {row['export_dense_seconds']} s, load {row['load']}", flush=True)

    pool = histories(which, 2048, args.seed)
    engines = {"seater": load(paths["seater"], args.threads),
               "dense_bruteforce": load(paths["dense"], args.threads)}
    q = args.recall_queries
    encoded = user_vectors(engines["dense_bruteforce"].encode(
        histories(which, 2 * q, args.seed + 7)))
    rng = np.random.default_rng(args.seed + 11)
    fresh = draw(centres, rng.integers(len(centres), size=2 * q), rng)  # new items, same mixture
    index, row["faiss"] = build_faiss(
        x, {"encoder_queries": (encoded[:q], encoded[q:]),
            "in_distribution_queries": (fresh[:q], fresh[q:])}, args.target_recall, args.seed)
    row["faiss"]["query_sets"] = QUERY_SETS
    del x
    gc.collect()
    print(f"n={n:,}: faiss build {row['faiss']['build_seconds']} s, " + ", ".join(
        f"{name} nprobe {row['faiss'][name]['nprobe']} recall@10 {row['faiss'][name]['recall@10']}"
        for name in QUERY_SETS), flush=True)
    systems = {**engines,
               "faiss": FaissSystem(engines["dense_bruteforce"], index,
                                    row["faiss"]["encoder_queries"]["nprobe"]),
               "faiss_in_distribution_nprobe": FaissSystem(
                   engines["dense_bruteforce"], index,
                   row["faiss"]["in_distribution_queries"]["nprobe"])}
    reps = repeats(n, args.quick)
    row["machine_activity_before_latency"] = machine_activity()
    row["latency"] = {f"B={b}": measure(systems, pool, b, reps[b]) for b in BATCHES}
    for b in BATCHES:
        print(f"n={n:,} B={b}: " + ", ".join(
            f"{k} {v['median_ms']} ms" for k, v in row["latency"][f"B={b}"].items()), flush=True)
    for engine in engines.values():
        engine.close()
    row["load_average_at_end"] = load_average()
    # what this size took beyond the sizes before it: the data, both exports, the two
    # engines, FAISS and a brute-force B=64 score matrix, all in this one process
    row["peak_rss_mb"] = round(peak_rss_mb(), 1)
    row["peak_rss_mb_grown"] = round(row["peak_rss_mb"] - rss_before, 1)
    row["seconds"] = round(time.perf_counter() - started, 1)
    return row


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Throughput ratios at B=64 (and B=1) per size: SEATER over each alternative."""
    out: dict[str, Any] = {}
    for r in rows:
        if "latency" not in r:
            continue
        entry: dict[str, Any] = {}
        for b in BATCHES:
            lat = r["latency"][f"B={b}"]
            mine = lat["seater"]["throughput_per_s"]
            entry[f"seater_over_dense_bruteforce_b{b}"] = round(
                mine / lat["dense_bruteforce"]["throughput_per_s"], 2)
            entry[f"seater_over_faiss_b{b}"] = round(mine / lat["faiss"]["throughput_per_s"], 2)
            entry[f"seater_over_faiss_in_distribution_nprobe_b{b}"] = round(
                mine / lat["faiss_in_distribution_nprobe"]["throughput_per_s"], 2)
        for name in QUERY_SETS:
            entry[f"faiss_{name}"] = {"nprobe": r["faiss"][name]["nprobe"],
                                      "recall@10": r["faiss"][name]["recall@10"]}
        entry["load_rss_mb"] = {k: v["rss_mb_added_by_load"] for k, v in r["load"].items()}
        out[f"{r['n_items']}"] = entry
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="12101,100000,1000000,5000000,10000000",
                        help="catalogue sizes, comma-separated")
    parser.add_argument("--threads", type=int, default=1, help="threads of every system")
    parser.add_argument("--target-recall", type=float, default=0.95)
    parser.add_argument("--recall-queries", type=int, default=500,
                        help="tuning queries for nprobe, and as many again to state recall")
    parser.add_argument("--budget-minutes", type=float, default=40.0,
                        help="a size whose estimated time would overrun this is skipped")
    parser.add_argument("--quick", action="store_true", help="few repeats: a smoke run")
    parser.add_argument("--work", type=Path, default=None,
                        help="where bundles are written (default: a temporary folder)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "bench" / "scale.json")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    try:
        sizes = [int(s) for s in args.sizes.split(",")]
    except ValueError:
        print(f"--sizes must be comma-separated integers, got {args.sizes!r}", file=sys.stderr)
        return 2
    import faiss  # before the limits, so its OpenMP pool is among those pinned

    started = time.perf_counter()
    report: dict[str, Any] = {"benchmark": "scale", **provenance("benchmarks.scale", argv)}
    work = args.work or Path(tempfile.mkdtemp(prefix="seater-scale-"))
    rows: list[dict[str, Any]] = []
    try:
        with pinned_threads(args.threads) as pinned:
            faiss.omp_set_num_threads(args.threads)
            report["threads"] = {**pinned, "onnxruntime_intra_op": args.threads,
                                 "faiss_omp": faiss.omp_get_max_threads(),
                                 "same_for_every_system": True}
            for n in sizes:
                why = cannot_run(n, rows, 60 * args.budget_minutes,
                                 time.perf_counter() - started, available_memory_mb())
                if why:
                    rows.append({"n_items": n, "skipped": why})
                    print(f"n={n:,}: skipped: {why}", flush=True)
                    continue
                rows.append(run_size(n, args, work))
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    report["settings"] = {"d": D, "k": K, "beam": BEAM, "n": N_OUT, "batches": list(BATCHES),
                          "quick": args.quick, "target_recall@10": args.target_recall,
                          "histories": f"1..{MAX_HISTORY} items (geometric, p=0.1) from "
                                       "one mixture centre each, excluded from the answer"}
    report["sizes"] = rows
    report["summary"] = summarise(rows)
    closing_load(report)
    report["total_seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(report["summary"], indent=2))
    write_report(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
