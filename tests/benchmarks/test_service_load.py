"""The HTTP benchmark's load generation: shared histories, the wrk driver and its parser."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from benchmarks import service as bench
from benchmarks.common import ROOT
from loadtests.histories import Histories, read_sequences, write_bodies


@pytest.fixture
def interactions(tmp_path: Path) -> Path:
    path = tmp_path / "interactions.txt"
    path.write_text("u1 a b c d\nu2 x\nu3 p q\n")  # u2 has one item: never drawn
    return path


def test_histories_are_prefixes_that_leave_the_next_item_unseen(interactions):
    sequences = read_sequences(interactions)
    assert sequences == [["a", "b", "c", "d"], ["p", "q"]]
    hist = Histories(sequences, seed=3, max_history=2)
    draws = [hist.draw() for _ in range(200)]
    allowed = {("a",), ("a", "b"), ("b", "c"), ("p",)}  # capped at 2, never the last item
    assert {tuple(d) for d in draws} == allowed
    again = Histories(sequences, seed=3, max_history=2)
    assert [again.draw() for _ in range(200)] == draws


def test_histories_refuse_a_file_without_usable_users(tmp_path):
    with pytest.raises(ValueError, match="two or more items"):
        Histories([], seed=0)


def test_bodies_are_one_retrieve_request_per_line(interactions, tmp_path):
    hist = Histories(read_sequences(interactions), seed=0)
    path = write_bodies(tmp_path / "b.jsonl", hist, n=10, beam=5, count=7)
    bodies = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(bodies) == 7
    assert all(b["n"] == 10 and b["beam_size"] == 10 and b["history"] for b in bodies)


WRK_STDOUT = """Running 2s test @ http://127.0.0.1:1
  1 threads and 4 connections
  Latency   1.00ms  0.50ms  12.34ms   90.00%
{"requests": 1000, "duration_us": 2500000, "status_errors": 3, "socket_errors": 2, \
"p50_us": 1500, "p95_us": 4000, "p99_us": 12340, "mean_us": 1750.0}
"""


def test_parse_wrk_reads_the_scripts_result_line():
    assert bench.parse_wrk(WRK_STDOUT) == {
        "requests": 1000, "failures": 5, "throughput_rps": 400.0,
        "p50_ms": 1.5, "p95_ms": 4.0, "p99_ms": 12.34, "mean_ms": 1.75}


@pytest.mark.parametrize("stdout", ["wrk: connection refused\n",
                                    WRK_STDOUT.replace('"requests": 1000', '"requests": 0')])
def test_parse_wrk_refuses_a_run_without_requests(stdout):
    with pytest.raises(RuntimeError, match="wrk"):
        bench.parse_wrk(stdout)


def test_asking_for_wrk_without_it_names_the_fix(monkeypatch, capsys):
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    with pytest.raises(SystemExit) as stop:
        bench.parse_args(["--load-generator", "wrk"])
    assert stop.value.code == 2
    assert "apt-get install wrk" in capsys.readouterr().err
    assert bench.pick_generator("auto") == "locust"


def test_locustfile_imports_its_shared_histories():
    """locust puts the locustfile's folder on sys.path; the sibling import must work so."""
    code = ("import sys; sys.path.insert(0, 'loadtests'); import locustfile; "
            "print(locustfile.Histories.__module__)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("histories")


class _Recorder(BaseHTTPRequestHandler):
    status = 200
    seen: list[tuple[str, str, str]] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        self.seen.append((self.path, self.headers["Content-Type"], body))
        self.send_response(self.status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *_args) -> None:
        pass


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, *_args) -> None:
        pass  # wrk drops its connections mid-response when its time is up


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
@pytest.mark.parametrize("status", [200, 503])
def test_wrk_posts_the_bodies_in_turn_and_counts_errors(status, tmp_path):
    bodies = tmp_path / "b.jsonl"
    bodies.write_text("".join(json.dumps({"history": [str(i)], "n": 1}) + "\n"
                              for i in range(5)))
    handler = type("Handler", (_Recorder,), {"status": status, "seen": []})
    server = _QuietServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        point = bench.wrk_point(url, users=1, seconds=1, bodies=bodies, server_pid=os.getpid())
    finally:
        server.shutdown()
    lines = bodies.read_text().splitlines()
    seen = handler.seen
    assert point["requests"] >= len(lines) and len(seen) >= point["requests"]
    assert {(p, t) for p, t, _ in seen} == {("/retrieve", "application/json")}
    # every body in turn (wrk draws one request at start-up to probe the script, so the
    # cycle starts anywhere): each request's body is the file's next line after the last
    at = [lines.index(b) for _, _, b in seen]
    assert all(b == (a + 1) % len(lines) for a, b in zip(at, at[1:], strict=False))
    assert point["failures"] == (0 if status == 200 else point["requests"])


@pytest.mark.parametrize("argv", [["--items", "12101"],
                                  ["--items", "20000", "--bundle", "somewhere"]])
def test_items_flag_refuses_what_it_cannot_serve(argv, capsys):
    with pytest.raises(SystemExit) as stop:
        bench.parse_args(argv)
    assert stop.value.code == 2
    assert "--items must exceed 12101" in capsys.readouterr().err


def test_catalogue_bundles_are_built_once_and_a_half_built_pair_again(monkeypatch, tmp_path):
    from benchmarks import engine as engine_bench
    from benchmarks import scale

    built = []

    def fake_build(x, root, seed):
        built.append((len(x), seed))
        paths = {kind: root / f"{kind}-{len(x)}" for kind in ("seater", "dense")}
        for p in paths.values():
            p.mkdir(parents=True)
            (p / "manifest.json").write_text("{}")
        return {"paths": paths}

    monkeypatch.setattr(engine_bench, "CACHE", tmp_path)
    monkeypatch.setattr(scale, "build_and_export", fake_build)
    first = bench.catalogue_bundles(20_000, seed=1)
    assert first == bench.catalogue_bundles(20_000, seed=1)
    assert built == [(20_000, 1)]
    (first[1] / "manifest.json").unlink()  # the dense export never finished
    assert bench.catalogue_bundles(20_000, seed=1) == first
    assert built == [(20_000, 1), (20_000, 1)]


def _points(*rows: tuple[float, float]) -> list[dict]:
    """(throughput, p99) pairs as the benchmark's points, at 1.5 server cores."""
    return [{"throughput_rps": t, "p99_ms": p99, "failures": 0, "server_cpu_share": 1.5}
            for t, p99 in rows]


def test_summary_takes_the_best_point_under_the_p99_target_and_the_peaks():
    s = bench.summarize({
        "seater": _points((400, 20), (900, 45), (1200, 80)),
        "seater_batch1": _points((300, 30), (350, 60)),
        "dense": _points((1000, 10), (1500, 49.9), (2000, 70)),
    })
    assert s["throughput_rps_at_p99_le_50ms"] == {"seater": 900, "seater_batch1": 300,
                                                  "dense": 1500}
    assert s["seater_over_dense"] == 0.6 and s["peak_seater_over_dense"] == 0.6
    assert s["batching_over_batch1"] == 3.0 and s["target_batching_3x"]
    assert s["peak_batching_over_batch1"] == round(1200 / 350, 2)
    assert not s["target_seater_over_dense_0_8"] and s["target_500_rps_p99_50ms"]


def test_a_baseline_that_never_meets_the_p99_target_is_beaten_by_any_throughput():
    s = bench.summarize({
        "seater": _points((600, 40)),
        "seater_batch1": _points((400, 45)),
        "dense": _points((90, 95), (150, 700)),  # brute force over a large catalogue
    })
    assert s["throughput_rps_at_p99_le_50ms"]["dense"] is None
    assert s["seater_over_dense"] is None and s["peak_seater_over_dense"] == 4.0
    assert s["target_seater_over_dense_0_8"]
    failed = bench.summarize({"seater": _points((600, 90)), "seater_batch1": _points((1, 1)),
                              "dense": _points((90, 95))})
    assert not failed["target_seater_over_dense_0_8"]  # neither within the target
