"""Engine-alone benchmark (no HTTP): SEATER's encoder + constrained beam search vs a dense floor.

    python -m benchmarks.engine [--quick] [--bundle DIR] [--threads 1,2] [--out FILE]

What is measured, per ONNX Runtime intra-op thread count of the decoder session (the
encoder session keeps one thread, ``SEATER_ENCODER_INTRA_OP_THREADS``, and steps under 256
rows run on a one-thread copy of the decoder, ``SEATER_SMALL_STEP_ROWS``):
- SEATER (``service.model.seater.SeaterEngine``), beam 50, n 10, B = 1 and B = 64 requests:
  encoder, beam search and end-to-end (encode + search) latency, median and p95 over
  repeats; every decoder step separately (rows = B x width, prefix length t), and the
  rest of the search ("bookkeeping": ``indexer.search.beam_search``'s numpy work plus
  the engine's own re-padding and result shaping).
- The dense floor, measured interleaved with the B = 64 runs so both see the same
  machine: ``[64, 64] x [64, n_items]`` float32 scores + top-50 (argpartition + sort)
  in numpy. The engine's ratio to it is reported.
- With ``--dense-bundle``, the dense baseline engine (``service.model.dense.DenseEngine``).
- Where the time goes: the B = 64 search's numpy work by function under cProfile
  (``bookkeeping_profile``), and ONNX Runtime's own profile of the decoder's kernels over
  that search's steps, by op type and node (``decoder_op_profile``).

Histories are real: a random Beauty user's sequence cut at a random point (the
locustfile's rule), mapped through the bundle's ``items.json``. Without ``--bundle`` a
Beauty-shaped bundle is built once and cached under ``artifacts/bench/`` (needs torch):
a random d=64 tree over 12,101 items (k=16, fast splitter) and an untrained
``Seater(SeaterParams())`` (paper sizes) exported with ``training.seater.export.export_bundle``;
weights do not change the cost. Pass ``--bundle artifacts/<version>`` for a trained one.

Numbers are only meaningful on a quiet machine: the report records how many cores were
busy just before the run (and the load averages), a matmul yardstick at start and end,
and ``timing_valid`` is false when more than ``--max-load`` cores were busy.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import ROOT, closing_load, pinned_threads, provenance, write_report
from indexer.search import beam_search
from loadtests.histories import Histories, read_sequences
from service.model.bundle import SeaterBundle, load_seater_bundle
from service.model.seater import SeaterEngine
from service.model.sessions import RuntimeOptions
from service.settings import Settings

BEAUTY_ITEMS, D, K = 12_101, 64, 16
CACHE = ROOT / "artifacts" / "bench"


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The engine benchmark's options, shared with the service benchmark's parser."""
    parser.add_argument("--quick", action="store_true", help="few repeats: a smoke run")
    parser.add_argument("--bundle",
                        help="SEATER bundle directory (default: build a Beauty-shaped one)")
    parser.add_argument("--dense-bundle", help="dense baseline bundle directory (optional)")
    parser.add_argument("--data", default="data/beauty/interactions.txt")
    parser.add_argument("--threads", default="1,2", help="ONNX Runtime intra-op thread counts")
    parser.add_argument("--beam", type=int, default=50)
    parser.add_argument("--n", type=int, default=10)
    parser.add_argument("--blas-threads", type=int, default=1,
                        help="numpy BLAS threads (1: spin-waiting BLAS threads hurt on shared "
                             "cores)")
    parser.add_argument("--max-load", type=float, default=0.2,
                        help="cores other processes may keep busy before the run (timing_valid)")
    parser.add_argument("--seed", type=int, default=0)
    return parser


# ------------------------------------------------------------------ setup
def cpu_gflops(seconds: float = 1.0) -> float:
    """Single-thread float32 matmul rate now: the same code's speed drifts on a shared
    machine, so every report carries this yardstick at its start and end."""
    a = np.random.default_rng(0).random((256, 256), dtype=np.float32)
    t0, n = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        a @ a
        n += 1
    return round(n * 2 * 256**3 / (time.perf_counter() - t0) / 1e9, 1)


def header(module: str, argv: list[str], max_load: float) -> dict[str, Any]:
    """Provenance plus what timing needs: runtime versions, a matmul yardstick, and
    whether other processes kept more than ``max_load`` cores busy at the start."""
    import onnxruntime as ort

    report = provenance(module, argv)
    report["runtime"] = {"onnxruntime": ort.__version__, "numpy": np.__version__,
                         "matmul_gflops_at_start": cpu_gflops()}
    report["loaded_machine"] = report["load"]["busy_cores_at_start"] > max_load
    return report


def footer(report: dict[str, Any]) -> None:
    """The load and the yardstick at the end; ``timing_valid`` from the start's load."""
    closing_load(report)
    report["runtime"]["matmul_gflops_at_end"] = cpu_gflops()
    report["timing_valid"] = not report["loaded_machine"]


def beauty_shape_bundle(seed: int = 0) -> Path:
    """Build (once) the Beauty-shaped SEATER bundle described in the module docstring."""
    path = CACHE / f"beauty-shape-seed{seed}"
    if (path / "manifest.json").is_file():
        return path
    import torch

    from indexer import BuildConfig, build_tree
    from training.seater.export import export_bundle
    from training.seater.model import Seater, SeaterParams

    x = np.random.default_rng(seed).normal(size=(BEAUTY_ITEMS, D)).astype(np.float32)
    tree, _ = build_tree(x, BuildConfig(k=K, splitter="fast", seed=seed, progress=False))
    torch.manual_seed(seed)
    model = Seater(tree.n_nodes, tree.max_depth, tree.root, SeaterParams()).eval()
    items = {"ids": [str(i + 1) for i in range(tree.n_items)]}  # Beauty's ids are 1..12101
    return export_bundle(model, tree, items, CACHE, path.name, "beauty-shape",
                         extra={"note": "untrained, for timing only"})


def dense_shape_bundle(seed: int = 0) -> Path:
    """Build (once) a dense baseline bundle of Beauty's shape: an untrained SASRec."""
    path = CACHE / f"beauty-shape-dense-seed{seed}"
    if (path / "manifest.json").is_file():
        return path
    import torch

    from training.sasrec.export import export_sasrec_bundle
    from training.sasrec.model import SASRec, SASRecParams

    torch.manual_seed(seed)
    model = SASRec(BEAUTY_ITEMS, SASRecParams()).eval()
    items = {"ids": [str(i + 1) for i in range(BEAUTY_ITEMS)]}
    return export_sasrec_bundle(model, items, CACHE, path.name, "beauty-shape",
                                extra={"note": "untrained, for timing only"})


def draw_histories(sequences: list[list[str]], ids: list[str], count: int, seed: int,
                   max_history: int = 50) -> list[np.ndarray]:
    """The load tests' histories (:class:`loadtests.histories.Histories`) as item indices;
    ids the bundle does not know are dropped, and histories left empty are drawn again."""
    index = {item: i for i, item in enumerate(ids)}
    draws = Histories(sequences, seed, max_history)
    out = []
    while len(out) < count:
        known = [index[i] for i in draws.draw() if i in index]
        if known:
            out.append(np.array(known, np.int64))
    return out


# ------------------------------------------------------------------ timing
def stats(samples_s: list[float]) -> dict[str, float]:
    ms = np.asarray(samples_s) * 1e3
    return {"median_ms": round(float(np.median(ms)), 3),
            "p95_ms": round(float(np.percentile(ms, 95)), 3), "repeats": len(ms)}


class StepClock:
    """A ``beam_search`` that times every scorer (decoder) call it makes."""

    def __init__(self) -> None:
        self.steps: list[tuple[tuple[int, ...], float]] = []

    def __call__(self, tree, scorer, **kwargs):
        def timed(prefix: np.ndarray) -> np.ndarray:
            t0 = time.perf_counter()
            out = scorer(prefix)
            self.steps.append((prefix.shape, time.perf_counter() - t0))
            return out

        return beam_search(tree, timed, **kwargs)


def dense_floor(n_items: int, rng: np.random.Generator) -> Callable[[], np.ndarray]:
    """``[64, 64] x [64, n_items]`` scores + top-50 per row, as a brute-force scan does it."""
    users = rng.standard_normal((64, D)).astype(np.float32)
    items_t = rng.standard_normal((D, n_items)).astype(np.float32)

    def run() -> np.ndarray:
        scores = users @ items_t
        top = np.argpartition(-scores, 49, axis=1)[:, :50]
        order = np.argsort(-np.take_along_axis(scores, top, 1), axis=1)
        return np.take_along_axis(top, order, 1)

    return run


def bench_seater(engine: SeaterEngine, clock: StepClock, histories: list[np.ndarray], batch: int,
                 reps: int, n: int, beam: int, floor: Callable[[], Any] | None) -> dict:
    """Encode + search ``reps`` batches of ``batch`` histories; optional interleaved floor."""
    encode_s, search_s, total_s, floor_s, steps = [], [], [], [], []
    book_s = []
    ns, beams = np.full(batch, n), np.full(batch, beam)
    for r in range(reps + 1):  # the first round warms up and is dropped
        hist = [histories[(r * batch + b) % len(histories)] for b in range(batch)]
        clock.steps.clear()
        t0 = time.perf_counter()
        states = engine.encode(hist)
        t1 = time.perf_counter()
        engine.search(states, ns, beams, hist)
        t2 = time.perf_counter()
        f = None
        if floor is not None:
            f0 = time.perf_counter()
            floor()
            f = time.perf_counter() - f0
        if r == 0:
            continue
        encode_s.append(t1 - t0)
        search_s.append(t2 - t1)
        total_s.append(t2 - t0)
        steps.append(list(clock.steps))
        book_s.append((t2 - t1) - sum(s for _, s in clock.steps))
        if f is not None:
            floor_s.append(f)
    per_step = []
    for i in range(max(len(s) for s in steps)):
        at = [s[i] for s in steps if len(s) > i]
        shape = at[0][0]
        per_step.append({"step": i + 1, "prefix_t": int(shape[2]),
                         "rows": int(shape[0] * shape[1]), **stats([s for _, s in at])})
    out = {"batch": batch, "beam": beam, "n": n, "encode": stats(encode_s),
           "search": stats(search_s), "end_to_end": stats(total_s),
           "decoder_steps": per_step, "bookkeeping": stats(book_s)}
    if floor_s:
        out["dense_floor"] = stats(floor_s)
    return out


def profile_bookkeeping(tree, histories: list[np.ndarray], batch: int, beam: int, n: int,
                        reps: int, seed: int) -> dict[str, Any]:
    """``indexer.search.beam_search`` alone, with a free scorer: what its numpy costs.

    The scorer returns precomputed log-probs (one table per step shape), so all time is
    the search's own; cProfile then splits it by function (``tottime`` per search).
    """
    import cProfile
    import pstats

    rng = np.random.default_rng(seed)
    tables: dict[tuple[int, ...], np.ndarray] = {}

    def scorer(prefix: np.ndarray) -> np.ndarray:
        shape = (*prefix.shape[:2], tree.k)
        if shape not in tables:
            x = rng.standard_normal(shape).astype(np.float32)
            tables[shape] = x - np.log(np.exp(x).sum(-1, keepdims=True))
        return tables[shape]

    hist = [histories[b % len(histories)] for b in range(batch)]

    def search() -> None:
        beam_search(tree, scorer, batch_size=batch, beam_size=beam, n=n, exclude=hist)

    search()
    plain = []
    for _ in range(reps):
        t0 = time.perf_counter()
        search()
        plain.append(time.perf_counter() - t0)
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(reps):
        search()
    prof.disable()
    rows = sorted(pstats.Stats(prof).stats.items(), key=lambda kv: -kv[1][2])[:10]
    return {"batch": batch, "search_without_scorer": stats(plain),
            "top_functions_under_cprofile": [
                {"function": f"{Path(f).name}:{line}({name})",
                 "tottime_ms_per_search": round(tt / reps * 1e3, 3), "calls_per_search": nc / reps}
                for (f, line, name), (_, nc, tt, _, _) in rows]}


def decoder_op_profile(bundle: SeaterBundle, histories: list[np.ndarray], batch: int,
                       beam: int, n: int, reps: int) -> dict[str, Any]:
    """ONNX Runtime's own profile of ``decoder.onnx`` over the steps of one real search.

    The engine-level timings say how long the decoder takes, not where inside the graph:
    a faster engine has to know whether it is the feed-forward GEMMs (model size: fixed
    by the checkpoint) or gathers, reshapes and the dedupe (the graph's shape: ours to
    change). The steps of a ``batch``-request search are recorded, then replayed ``reps``
    times on a one-thread session with profiling on; kernel time is summed per op type
    and per node. Shape: -> shares of kernel time, largest first.
    """
    import json
    import tempfile

    import onnxruntime as ort

    prefixes: list[np.ndarray] = []

    def recording(tree, scorer, **kwargs):
        def record(prefix: np.ndarray) -> np.ndarray:
            prefixes.append(np.array(prefix, np.int64))
            return scorer(prefix)
        return beam_search(tree, record, **kwargs)

    options = RuntimeOptions.from_settings(Settings(providers="cpu", intra_op_threads=1))
    engine = SeaterEngine(bundle, options, recording)
    hist = [histories[b % len(histories)] for b in range(batch)]
    states = engine.encode(hist)
    engine.search(states, np.full(batch, n), np.full(batch, beam), hist)
    engine.close()
    memory_k, memory_v, memory_bias = SeaterEngine._repad(states)
    fixed = {"memory_k": memory_k, "memory_v": memory_v, "memory_bias": memory_bias,
             "children": bundle.tree.children.astype(np.int64),
             "node_emb": np.ascontiguousarray(bundle.embeddings, np.float32)}
    by_op: dict[str, float] = {}
    by_node: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.enable_profiling = True
        so.profile_file_prefix = str(Path(tmp) / "decoder")
        session = ort.InferenceSession(str(bundle.decoder_path), so,
                                       providers=["CPUExecutionProvider"])
        for _ in range(reps):
            for prefix in prefixes:
                session.run(None, {"prefix": prefix, **fixed})
        events = json.loads(Path(session.end_profiling()).read_text())
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            op, node = e["args"]["op_name"], e["name"].removesuffix("_kernel_time")
            by_op[op] = by_op.get(op, 0.0) + e["dur"]
            by_node[node] = by_node.get(node, 0.0) + e["dur"]
    total = sum(by_op.values()) or 1.0

    def shares(times: dict[str, float], top: int) -> list[dict[str, Any]]:
        ranked = sorted(times.items(), key=lambda kv: -kv[1])[:top]
        return [{"name": k, "share": round(v / total, 3)} for k, v in ranked]

    return {"batch": batch, "steps": [int(np.prod(p.shape[:2])) for p in prefixes],
            "kernel_ms_per_search": round(total / reps / 1e3, 3),
            "by_op_type": shares(by_op, 12), "top_nodes": shares(by_node, 12)}


def bench_dense(engine, histories: list[np.ndarray], batch: int, reps: int, n: int) -> dict:
    total_s, encode_s = [], []
    ns = np.full(batch, n)
    for r in range(reps + 1):
        hist = [histories[(r * batch + b) % len(histories)] for b in range(batch)]
        t0 = time.perf_counter()
        states = engine.encode(hist)
        t1 = time.perf_counter()
        engine.search(states, ns, ns, hist)
        if r:
            encode_s.append(t1 - t0)
            total_s.append(time.perf_counter() - t0)
    return {"batch": batch, "n": n, "encode": stats(encode_s), "end_to_end": stats(total_s)}


def run_engine_benchmarks(args: argparse.Namespace) -> dict[str, Any]:
    """Everything in the module docstring; returns the report's ``engine`` section."""
    bundle_dir = Path(args.bundle) if args.bundle else beauty_shape_bundle(args.seed)
    bundle = load_seater_bundle(bundle_dir)
    histories = draw_histories(read_sequences(ROOT / args.data), bundle.catalog.ids, 4096,
                               args.seed, bundle.max_history)
    lengths = np.array([len(h) for h in histories])
    reps = {1: 20, 64: 5} if args.quick else {1: 300, 64: 60}
    rng = np.random.default_rng(args.seed)
    floor = dense_floor(bundle.tree.n_items, rng)
    report: dict[str, Any] = {
        "bundle": {"path": str(bundle_dir), "version": bundle.version,
                   "dataset": bundle.manifest.dataset, "tree": bundle.manifest.tree,
                   "config": bundle.manifest.config},
        "histories": {"source": args.data, "count": len(histories),
                      "mean_length": round(float(lengths.mean()), 2),
                      "median_length": float(np.median(lengths))},
        "dense_floor_definition": f"[64,{D}] x [{D},{bundle.tree.n_items}] float32 matmul + "
                                  "top-50 (argpartition + argsort) per row, numpy",
        "by_threads": {},
    }
    for threads in [int(t) for t in args.threads.split(",")]:
        clock = StepClock()
        options = RuntimeOptions.from_settings(
            Settings(providers="cpu", intra_op_threads=threads, allow_spinning=True))
        engine = SeaterEngine(bundle, options, clock)  # alone on the machine: let threads spin
        row = {}
        for batch in (1, 64):
            row[f"B={batch}"] = bench_seater(engine, clock, histories, batch, reps[batch],
                                             args.n, args.beam, floor if batch == 64 else None)
            e2e = row[f"B={batch}"]["end_to_end"]
            print(f"threads={threads} B={batch:>2}: end-to-end median {e2e['median_ms']:.2f} ms"
                  f" p95 {e2e['p95_ms']:.2f} ms (load {os.getloadavg()[0]:.1f})", flush=True)
        b64 = row["B=64"]
        row["ratio_B64_end_to_end_over_dense_floor"] = round(
            b64["end_to_end"]["median_ms"] / b64["dense_floor"]["median_ms"], 2)
        row["targets"] = {
            "B=1_end_to_end_le_3ms": row["B=1"]["end_to_end"]["median_ms"] <= 3.0,
            "B=64_end_to_end_le_30ms": b64["end_to_end"]["median_ms"] <= 30.0,
        }
        report["by_threads"][str(threads)] = row
        engine.close()
    report["bookkeeping_profile"] = profile_bookkeeping(
        bundle.tree, histories, 64, args.beam, args.n, 5 if args.quick else 30, args.seed)
    report["decoder_op_profile"] = decoder_op_profile(
        bundle, histories, 64, args.beam, args.n, 3 if args.quick else 20)
    if args.dense_bundle:
        from service.model.bundle import load_dense_bundle
        from service.model.dense import DenseEngine

        dense = DenseEngine(load_dense_bundle(args.dense_bundle),
                            RuntimeOptions.from_settings(Settings(providers="cpu")))
        report["dense_engine"] = {
            "bundle": str(args.dense_bundle),
            **{f"B={b}": bench_dense(dense, histories, b, reps[b], args.n) for b in (1, 64)}}
    return report


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = add_arguments(argparse.ArgumentParser(prog="python -m benchmarks.engine",
                                                   description=__doc__.split("\n")[0]))
    parser.add_argument("--out", default="reports/bench/service-engine.json")
    args = parser.parse_args(argv)
    report = {**header("benchmarks.engine", argv, args.max_load), "quick": args.quick,
              "settings": {k: v for k, v in vars(args).items() if k != "out"}}
    with pinned_threads(args.blas_threads) as pinned:
        report["threads"] = pinned
        report["engine"] = run_engine_benchmarks(args)
    footer(report)
    write_report(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
