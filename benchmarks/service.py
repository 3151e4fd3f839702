"""Service benchmark: the engine alone, then HTTP end to end, SEATER vs dense.

    python -m benchmarks.service [--quick] [--bundle DIR] [--dense-bundle DIR | --items N]
                                 [--load-generator auto|wrk|locust]
                                 [--out reports/bench/service.json]

The bundles are Beauty-shaped (12k items) unless given, or, with ``--items N``, built over
an N-item catalogue as ``benchmarks.scale`` builds them: where brute force stops being
cheap, which is where a tree retriever is meant to serve.

(a) Engine alone: ``benchmarks/engine.py`` (per-step and end-to-end latency at beam 50,
    B = 1 and 64, the dense floor measured interleaved, the ratio).
(b) HTTP: ``python -m service`` (uvicorn, ``--workers`` processes each: default one per
    core, as the service itself defaults; every configuration gets the same count) on the
    same machine, driven closed-loop by ``wrk`` with ``loadtests/wrk_retrieve.lua`` (or
    locust with ``loadtests/locustfile.py``: ``--load-generator``), n = 10, beam 50,
    histories from data/beauty/interactions.txt (a random user cut at a random point,
    ``loadtests/histories.py``), in three configurations on the same stack:
      seater          micro-batching on  (SEATER_MAX_BATCH_SIZE=64, 2 ms max wait)
      seater_batch1   micro-batching off (SEATER_MAX_BATCH_SIZE=1)
      dense           the SASRec brute-force baseline bundle, micro-batching on
    (every server with --batch-workers decoders: SEATER_BATCH_WORKERS, the service's default)
    at several closed-loop concurrencies, interleaved (all three servers up and warmed, each
    concurrency runs every configuration in turn); every point records throughput,
    p50/p95/p99, failures, and the CPU seconds the server (supervisor and workers together)
    and the load generator used. The summary takes, per configuration, the highest
    throughput whose p99 <= 50 ms, and the ratios the issue asks for (batching / batch-1
    >= 3x; >= 500 retrievals/s at p99 <= 50 ms; SEATER / dense >= 0.8 at the same worker
    count).

Load generation shares the machine with the server, so it must stay cheap: ``wrk`` (C, one
thread) costs a tenth of the CPU per request that locust does (one process,
``FastHttpUser``: gevent + a C HTTP client), and every core it leaves is one the server
can show it uses; ``auto`` (the default) takes wrk when it is installed
(``apt-get install wrk``) and says so. The generator's CPU share is reported, so a
saturated load generator shows. The encoder-state cache is off
(``SEATER_CACHE_ENABLED=false``) so every request pays its encoder and decoder, and
logging is at WARNING (the per-request access log is INFO).

Only meaningful on a quiet machine: the cores busy before the run, load averages and a
matmul yardstick are recorded, and ``timing_valid`` is false when the machine was busy
before the run (``--max-load`` cores).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks import engine as engine_bench
from benchmarks.common import ROOT, pinned_threads, tree_cpu_seconds, write_report
from loadtests.histories import Histories, read_sequences, write_bodies
from service.settings import Settings

P99_TARGET_MS = 50.0
WARMUP_S = 5
WRK_BODIES = 20_000  # distinct request bodies wrk cycles through
GENERATORS = ("auto", "wrk", "locust")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``python -m service`` in a subprocess, ready when /v2/health/ready says so."""

    def __init__(self, bundle: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full = {**os.environ, **env, "SEATER_LOG_LEVEL": "WARNING", "SEATER_LOG_JSON": "true",
                "SEATER_CACHE_ENABLED": "false", "REDIS_URL": ""}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "service", "--artifacts", str(bundle), "--port",
             str(self.port)], cwd=ROOT, env=full, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"service exited: {self.proc.stderr.read()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/v2/health/ready", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("service did not become ready in 120 s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = engine_bench.add_arguments(argparse.ArgumentParser(
        prog="python -m benchmarks.service", description=__doc__.split("\n")[0]))
    parser.add_argument("--out", default="reports/bench/service.json")
    parser.add_argument("--users", default="4,8,16,32,64,128",
                        help="closed-loop concurrency per point: wrk connections or locust "
                        "users (quick: the first two)")
    parser.add_argument("--duration", type=int, default=30, help="seconds per point (quick: 8)")
    parser.add_argument("--server-threads", type=int, default=0,
                        help="SEATER_INTRA_OP_THREADS for the server (0: one per core)")
    parser.add_argument("--spinning", action="store_true",
                        help="let ORT threads busy-wait (off by default: the load generator "
                        "shares the CPU)")
    parser.add_argument("--max-wait-ms", type=float,
                        default=Settings.model_fields["max_wait_ms"].default)
    parser.add_argument("--workers", type=int, default=Settings.model_fields["workers"].default,
                        help="SEATER_WORKERS of every server (default: the service's, one "
                        "process per core)")
    parser.add_argument("--batch-workers", type=int,
                        default=Settings.model_fields["batch_workers"].default,
                        help="SEATER_BATCH_WORKERS of every server (default: the service's)")
    parser.add_argument("--items", type=int, default=0,
                        help="catalogue size: build SEATER and dense bundles of this many items "
                        "(benchmarks.scale's mixture, random weights) instead of the "
                        "Beauty-shaped ones; more than Beauty's 12101, so every history id "
                        "is in it")
    parser.add_argument("--load-generator", choices=GENERATORS, default="auto",
                        help="wrk (C, cheap: leaves the cores to the server), locust, or auto: "
                        "wrk when it is on PATH")
    parser.add_argument("--skip-engine", action="store_true")
    parser.add_argument("--skip-http", action="store_true")
    args = parser.parse_args(argv)
    if args.items and (args.items <= engine_bench.BEAUTY_ITEMS or args.bundle
                       or args.dense_bundle):
        parser.error(f"--items must exceed {engine_bench.BEAUTY_ITEMS} (the histories are "
                     "Beauty's ids) and replaces --bundle/--dense-bundle; drop one of them")
    if args.load_generator == "wrk" and shutil.which("wrk") is None:
        parser.error("--load-generator wrk: wrk is not on PATH; install it "
                     "(apt-get install wrk) or pass --load-generator locust")
    return args


def catalogue_bundles(n: int, seed: int) -> tuple[Path, Path]:
    """SEATER and dense bundles over an ``n``-item catalogue, built once under
    artifacts/bench (the catalogue ``benchmarks.scale`` measures the engines on; a
    retrieval's cost does not depend on the weights, so they stay random)."""
    from benchmarks import scale

    root = engine_bench.CACHE / f"catalogue-{n}-seed{seed}"
    paths = (root / f"seater-{n}", root / f"dense-{n}")
    if not all((p / "manifest.json").is_file() for p in paths):
        shutil.rmtree(root, ignore_errors=True)  # a half-built pair from an interrupted run
        print(f"building SEATER and dense bundles of {n} items under {root}", flush=True)
        row = scale.build_and_export(scale.mixture(n, seed)[0], root, seed)
        paths = (Path(row["paths"]["seater"]), Path(row["paths"]["dense"]))
    return paths


def describe_catalogue(args: argparse.Namespace) -> dict[str, Any]:
    if args.items:
        return {"items": args.items, "bundles": "benchmarks.scale's mixture, random weights"}
    if args.bundle:
        return {"bundles": "given (--bundle / --dense-bundle)"}
    return {"items": engine_bench.BEAUTY_ITEMS, "bundles": "Beauty-shaped, random weights"}


def pick_generator(requested: str) -> str:
    """``auto`` -> wrk when installed, else locust (the ``auto`` choice is printed)."""
    if requested != "auto":
        return requested
    found = "wrk" if shutil.which("wrk") else "locust"
    print(f"load generator: {found}" + ("" if found == "wrk" else
          " (wrk is not installed: apt-get install wrk takes less CPU from the server)"),
          flush=True)
    return found


def children_cpu() -> float:
    """CPU seconds of every child reaped so far (utime + stime)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def locust_point(url: str, users: int, seconds: int, args, server_pid: int) -> dict[str, Any]:
    """One headless locust run; stats after spawning completes (``--reset-stats``)."""
    with tempfile.TemporaryDirectory() as tmp:
        prefix = Path(tmp) / "run"
        env = {**os.environ, "SEATER_LOADTEST_DATA": str(ROOT / args.data),
               "SEATER_LOADTEST_N": str(args.n), "SEATER_LOADTEST_BEAM": str(args.beam),
               "SEATER_LOADTEST_SEED": str(args.seed)}
        children0 = children_cpu()  # the locust run below is the only child reaped meanwhile
        server_cpu0, load0, t0 = tree_cpu_seconds(server_pid), os.getloadavg()[0], time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "locust", "-f", str(ROOT / "loadtests" / "locustfile.py"),
             "--headless", "-u", str(users), "-r", str(users), "-t", f"{seconds}s",
             "--host", url, "--csv", str(prefix), "--only-summary", "--reset-stats",
             "--loglevel", "WARNING", "--stop-timeout", "5"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        _, err = proc.communicate(timeout=seconds + 120)
        wall = time.monotonic() - t0
        locust_cpu = round(children_cpu() - children0, 2)
        server_cpu = tree_cpu_seconds(server_pid) - server_cpu0
        with Path(f"{prefix}_stats.csv").open() as fh:
            rows = list(csv.DictReader(fh))
    agg = next((r for r in rows if r["Name"] == "Aggregated"), None)
    if agg is None or int(agg["Request Count"]) == 0:
        raise RuntimeError(f"locust produced no requests: {err[-2000:]}")
    return {
        "users": users, "seconds": seconds,
        "requests": int(agg["Request Count"]), "failures": int(agg["Failure Count"]),
        "throughput_rps": round(float(agg["Requests/s"]), 1),
        "p50_ms": float(agg["50%"]), "p95_ms": float(agg["95%"]), "p99_ms": float(agg["99%"]),
        "mean_ms": round(float(agg["Average Response Time"]), 2),
        "server_cpu_share": round(server_cpu / wall, 2),
        "load_cpu_share": round(locust_cpu / wall, 2),
        "load_average": [round(load0, 2), round(os.getloadavg()[0], 2)],
    }


def wrk_point(url: str, users: int, seconds: int, bodies: Path, server_pid: int
              ) -> dict[str, Any]:
    """One wrk run (one thread, ``users`` connections, closed loop); the same fields as
    :func:`locust_point`."""
    children0 = children_cpu()  # the wrk run below is the only child reaped meanwhile
    server_cpu0, load0, t0 = tree_cpu_seconds(server_pid), os.getloadavg()[0], time.monotonic()
    proc = subprocess.run(
        ["wrk", "-t1", f"-c{users}", f"-d{seconds}s", "--timeout", "10s",
         "-s", str(ROOT / "loadtests" / "wrk_retrieve.lua"), url],
        env={**os.environ, "WRK_BODIES": str(bodies)}, capture_output=True, text=True,
        timeout=seconds + 60)
    wall = time.monotonic() - t0
    client_cpu = children_cpu() - children0
    server_cpu = tree_cpu_seconds(server_pid) - server_cpu0
    return {"users": users, "seconds": seconds,
            **parse_wrk(proc.stdout, proc.stderr),
            "server_cpu_share": round(server_cpu / wall, 2),
            "load_cpu_share": round(client_cpu / wall, 2),
            "load_average": [round(load0, 2), round(os.getloadavg()[0], 2)]}


def parse_wrk(stdout: str, stderr: str = "") -> dict[str, Any]:
    """The JSON line ``wrk_retrieve.lua`` prints at the end -> throughput, latency in ms,
    failures (non-2xx statuses and socket errors)."""
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"wrk printed no result line: {(stdout + stderr)[-2000:]}")
    r = json.loads(lines[-1])
    if r["requests"] == 0:
        raise RuntimeError(f"wrk made no requests: {(stdout + stderr)[-2000:]}")
    return {
        "requests": r["requests"], "failures": r["status_errors"] + r["socket_errors"],
        "throughput_rps": round(r["requests"] / (r["duration_us"] / 1e6), 1),
        **{f"p{q}_ms": round(r[f"p{q}_us"] / 1e3, 2) for q in (50, 95, 99)},
        "mean_ms": round(r["mean_us"] / 1e3, 2),
    }


def best_under_target(points: list[dict]) -> dict | None:
    ok = [p for p in points if p["p99_ms"] <= P99_TARGET_MS and p["failures"] == 0]
    return max(ok, key=lambda p: p["throughput_rps"]) if ok else None


def run_http(args, bundle: Path, dense_bundle: Path) -> dict[str, Any]:
    users = [int(u) for u in args.users.split(",")]
    if args.quick:
        users, args.duration = users[:2], min(args.duration, 8)
    common = {"SEATER_INTRA_OP_THREADS": str(args.server_threads),
              "SEATER_ALLOW_SPINNING": "true" if args.spinning else "false",
              "SEATER_MAX_WAIT_MS": str(args.max_wait_ms), "SEATER_PROVIDERS": "cpu",
              "SEATER_BATCH_WORKERS": str(args.batch_workers),
              "SEATER_WORKERS": str(args.workers)}
    configs = {
        "seater": (bundle, {"SEATER_MAX_BATCH_SIZE": "64"}),
        "seater_batch1": (bundle, {"SEATER_MAX_BATCH_SIZE": "1"}),
        "dense": (dense_bundle, {"SEATER_MAX_BATCH_SIZE": "64"}),
    }
    generator = pick_generator(args.load_generator)
    tmp = tempfile.TemporaryDirectory()
    if generator == "wrk":
        histories = Histories(read_sequences(ROOT / args.data), args.seed)
        bodies = write_bodies(Path(tmp.name) / "bodies.jsonl", histories, args.n, args.beam,
                              WRK_BODIES)

        def point(server: Server, users: int, seconds: int) -> dict[str, Any]:
            return wrk_point(server.url, users, seconds, bodies, server.proc.pid)
    else:
        def point(server: Server, users: int, seconds: int) -> dict[str, Any]:
            return locust_point(server.url, users, seconds, args, server.proc.pid)
    out: dict[str, Any] = {"settings": {**common, "users": users, "seconds": args.duration,
                                        "warmup_seconds": WARMUP_S,
                                        "n": args.n, "beam": args.beam,
                                        "load_generator": {
                                            "wrk": f"wrk, 1 thread, {WRK_BODIES} request "
                                                   "bodies cycled, closed loop",
                                            "locust": "locust, 1 process, FastHttpUser, "
                                                      "closed loop"}[generator],
                                        "order": "interleaved: every user count runs each "
                                                 "configuration in turn, servers all up"}}
    # All servers stay up (idle ones sleep: no spinning) and the points interleave, so
    # the ratios compare configurations under the same machine conditions; on a shared
    # machine absolute throughput drifts over tens of minutes.
    servers: dict[str, Server] = {}
    points: dict[str, list[dict[str, Any]]] = {name: [] for name in configs}
    try:
        for name, (path, env) in configs.items():
            servers[name] = Server(path, {**common, **env})
            # warm-up (discarded): ONNX Runtime sizes its buffers for the shapes it meets
            point(servers[name], max(users), WARMUP_S)
        for u in users:
            for name, server in servers.items():
                p = point(server, u, args.duration)
                points[name].append(p)
                print(f"http {name:14s} users={u:>4}: {p['throughput_rps']:7.1f} rps  "
                      f"p50 {p['p50_ms']:.1f}  p95 {p['p95_ms']:.1f}  "
                      f"p99 {p['p99_ms']:.1f} ms  fail {p['failures']}  "
                      f"(server cpu {p['server_cpu_share']}, {generator} cpu "
                      f"{p['load_cpu_share']}, load {p['load_average']})", flush=True)
    finally:
        for server in servers.values():
            server.stop()
        tmp.cleanup()
    for name, (path, env) in configs.items():
        out[name] = {"bundle": str(path), "env": env, "points": points[name],
                     "best_at_p99_le_50ms": best_under_target(points[name])}
    out["summary"] = summarize(points)
    return out


def summarize(points: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The figures the issue asks for, from each configuration's points.

    A configuration with no point at p99 <= 50 ms serves nothing within the target: its
    throughput there is null, a ratio over it null, and a target that compares against
    it is met by any throughput at all (the dense baseline at 1M items meets the latency
    target at no load tested).
    """
    best = {name: (best_under_target(ps) or {}).get("throughput_rps")
            for name, ps in points.items()}
    peak = {name: max(p["throughput_rps"] for p in ps) for name, ps in points.items()}

    def at_least(share: float, a: str, b: str) -> bool:
        return bool(best[a]) and (best[b] is None or best[a] >= share * best[b])

    return {
        "throughput_rps_at_p99_le_50ms": best,
        "peak_throughput_rps_any_latency": peak,
        "peak_batching_over_batch1": _ratio(peak["seater"], peak["seater_batch1"]),
        "batching_over_batch1": _ratio(best["seater"], best["seater_batch1"]),
        "seater_over_dense": _ratio(best["seater"], best["dense"]),
        "peak_seater_over_dense": _ratio(peak["seater"], peak["dense"]),
        "target_batching_3x": at_least(3.0, "seater", "seater_batch1"),
        "target_500_rps_p99_50ms": (best["seater"] or 0) >= 500,
        "target_seater_over_dense_0_8": at_least(0.8, "seater", "dense"),
        # cores the server (all its processes) used at its highest-throughput point
        "server_cores_at_peak": {name: max(ps, key=lambda p: p["throughput_rps"])[
            "server_cpu_share"] for name, ps in points.items()},
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    report: dict[str, Any] = {**engine_bench.header("benchmarks.service", argv, args.max_load),
                              "quick": args.quick,
                              "settings": {k: v for k, v in vars(args).items() if k != "out"},
                              "dataset": "beauty (histories from data/beauty/interactions.txt)",
                              "catalogue": describe_catalogue(args)}
    with pinned_threads(args.blas_threads) as pinned:
        report["threads"] = pinned
        if args.items:
            bundle, dense = catalogue_bundles(args.items, args.seed)
        else:
            bundle = (Path(args.bundle) if args.bundle
                      else engine_bench.beauty_shape_bundle(args.seed))
            dense = (Path(args.dense_bundle) if args.dense_bundle
                     else engine_bench.dense_shape_bundle(args.seed))
        args.bundle, args.dense_bundle = str(bundle), str(dense)
        if not args.skip_engine:
            report["engine"] = engine_bench.run_engine_benchmarks(args)
        if not args.skip_http:
            report["http"] = run_http(args, bundle, dense)
    engine_bench.footer(report)
    if not report["timing_valid"]:
        print(f"WARNING: {report['load']['busy_cores_at_start']} cores were busy at the "
              "start: these timings are from a loaded machine", flush=True)
    write_report(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
