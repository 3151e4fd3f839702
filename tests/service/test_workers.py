"""Several worker processes as one service: the group's state folder, the core count, and
a real ``python -m service --workers 2`` (readiness, summed metrics, a reload every worker
takes, a restarted worker on the reloaded bundle, a clean stop)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.mmap_dict import MmapedDict

from service.core.workers import WorkerGroup, WorkerStatus
from service.settings import Settings
from service.supervisor import (
    BLAS_THREAD_VARS,
    available_cores,
    worker_count,
    worker_environment,
)
from tests.service.bundles import copy_bundle, export_version, external_ids
from tests.service.server import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "t" * 32


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_publish_numbers_generations_and_keeps_folder_and_asked_path(tmp_path):
    group = WorkerGroup(tmp_path, expected=2)
    assert group.desired() is None and group.changed_since(0) is None
    first = group.publish(tmp_path / "v1", tmp_path / "current", "v1")
    second = group.publish(tmp_path / "v2", tmp_path / "current", "v2")
    assert (first.generation, second.generation) == (1, 2)
    assert group.desired() == second
    assert group.changed_since(1) == second and group.changed_since(2) is None
    assert (second.folder, second.asked) == (str(tmp_path / "v2"), str(tmp_path / "current"))


def test_concurrent_publishers_never_share_a_generation(tmp_path):
    group = WorkerGroup(tmp_path, expected=2)
    with ThreadPoolExecutor(8) as pool:
        gens = list(pool.map(lambda i: group.publish(tmp_path, tmp_path, f"v{i}").generation,
                             range(40)))
    assert sorted(gens) == list(range(1, 41))


def test_readiness_counts_live_workers_with_a_model_and_forgets_dead_ones(tmp_path):
    group = WorkerGroup(tmp_path, expected=2)
    me, gone = os.getpid(), dead_pid()
    group.report(WorkerStatus(me, 1, "v1"))
    group.report(WorkerStatus(gone, 1, "v1"))  # a worker that died: its file lingers
    assert group.serving() == 1 and not group.ready()
    assert not (tmp_path / "workers" / f"{gone}.json").exists()
    parent = os.getppid()
    group.report(WorkerStatus(parent, 0, None))  # alive, no model yet
    assert not group.ready()
    group.report(WorkerStatus(parent, 1, "v1"))
    assert group.ready()


def test_progress_counts_who_loaded_or_failed_a_generation(tmp_path):
    group = WorkerGroup(tmp_path, expected=3)
    group.report(WorkerStatus(os.getpid(), 2, "v2"))
    group.report(WorkerStatus(os.getppid(), 2, "v1", error="bundle rejected"))
    progress = group.progress(2)
    assert (progress.updated, progress.failed, progress.live) == (1, 1, 2)
    assert not progress.settled  # the third worker has not answered
    assert group.progress(3).updated == 0


@pytest.mark.parametrize(("cpu_max", "cap"), [
    ("max 100000\n", None), ("150000 100000\n", 2), ("50000 100000\n", 1), ("garbage", None),
])
def test_available_cores_honours_a_cgroup_quota(tmp_path, cpu_max, cap):
    affinity = len(os.sched_getaffinity(0))
    path = tmp_path / "cpu.max"
    path.write_text(cpu_max)
    assert available_cores(path) == (affinity if cap is None else min(affinity, cap))
    assert available_cores(tmp_path / "absent") == affinity


def test_each_worker_gets_its_share_of_the_cores_unless_threads_are_set(tmp_path):
    settings = Settings(port=8123, artifacts=tmp_path)
    assert worker_count(settings, cores=6) == 6
    assert worker_count(Settings(workers=3), cores=6) == 3
    env = worker_environment(settings, 3, tmp_path / "state", cores=6)
    assert env["SEATER_INTRA_OP_THREADS"] == "2" and env["SEATER_WORKERS"] == "3"
    assert env["SEATER_PORT"] == "8123" and env["SEATER_ARTIFACTS"] == str(tmp_path)
    assert env["PROMETHEUS_MULTIPROC_DIR"] == str(tmp_path / "state" / "metrics")
    fixed = worker_environment(Settings(intra_op_threads=4), 3, tmp_path, cores=6)
    assert "SEATER_INTRA_OP_THREADS" not in fixed
    assert worker_environment(settings, 8, tmp_path, cores=2)["SEATER_INTRA_OP_THREADS"] == "1"


def test_each_worker_gets_its_share_of_numpys_blas_threads_unless_the_operator_set_them(tmp_path):
    env = worker_environment(Settings(), 2, tmp_path, cores=6, inherited={})
    assert {env[v] for v in BLAS_THREAD_VARS} == {"3"}
    # SEATER_INTRA_OP_THREADS fixes ONNX Runtime's pool only; BLAS still gets the share
    assert worker_environment(Settings(intra_op_threads=1), 2, tmp_path, cores=6,
                              inherited={})["OPENBLAS_NUM_THREADS"] == "3"
    mine = worker_environment(Settings(), 2, tmp_path, cores=6,
                              inherited={"OPENBLAS_NUM_THREADS": "6"})
    assert "OPENBLAS_NUM_THREADS" not in mine and mine["OMP_NUM_THREADS"] == "3"


# -- a real two-worker server -------------------------------------------------------------
def requests_per_worker(metrics_dir: Path) -> dict[int, float]:
    """POST /retrieve answers each worker counted, read from its own value file."""
    counts: dict[int, float] = {}
    for path in metrics_dir.glob("counter_*.db"):
        pid = int(path.stem.split("_")[-1])
        for key, value, _, _ in MmapedDict.read_all_values_from_file(str(path)):
            name, sample, labels, _ = json.loads(key)
            if sample == "seater_requests_total" and labels.get("route") == "/retrieve":
                counts[pid] = counts.get(pid, 0.0) + value
    return counts


def total_retrievals(url: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("seater_requests_total{") and 'route="/retrieve"' in line)


def retrieve(url: str, history: list[str]) -> int:
    # a fresh connection per request, so the kernel may hand it to either worker
    return httpx.post(f"{url}/retrieve", json={"history": history, "n": 5}).status_code


def test_two_workers_serve_as_one_service(tiny_bundle, tmp_path):
    root = tmp_path / "artifacts"
    v1 = copy_bundle(tiny_bundle.path, root / "tiny-v1")
    v2, _ = export_version(tiny_bundle, root, "tiny-v2", seed=5)
    (root / "current").unlink(missing_ok=True)  # the exporter pointed it at tiny-v2
    (root / "current").symlink_to("tiny-v1")
    run_tmp = tmp_path / "tmp"
    run_tmp.mkdir()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "TMPDIR": str(run_tmp), "SEATER_PROVIDERS": "cpu", "REDIS_URL": "",
           "SEATER_LOG_LEVEL": "WARNING", "SEATER_RELOAD_ENABLED": "true",
           "SEATER_RELOAD_TOKEN": TOKEN, "SEATER_GROUP_POLL_S": "0.05"}
    server = subprocess.Popen(
        [sys.executable, "-m", "service", "--artifacts", str(root / "current"), "--port",
         str(port), "--workers", "2"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True)
    try:
        ready = wait_until(lambda: (r := httpx.get(f"{url}/v2/health/ready")).status_code == 200
                           and r.json(), what="readiness")
        assert ready == {"ready": True, "model_version": "tiny-v1", "workers": 2,
                         "workers_serving": 2}
        state = next(run_tmp.glob("seater-workers-*"))
        pids = {int(p.stem) for p in (state / "workers").glob("*.json")}
        assert len(pids) == 2 and server.pid not in pids

        # every worker answers, and /metrics (from either) counts all of their answers
        ids = external_ids(v1)
        sent = 0
        with ThreadPoolExecutor(16) as pool:
            while len(requests_per_worker(state / "metrics")) < 2 and sent < 2000:
                codes = list(pool.map(lambda i: retrieve(url, ids[i % 7: i % 7 + 3]),
                                      range(64)))
                assert codes == [200] * 64
                sent += 64
        assert set(requests_per_worker(state / "metrics")) == pids
        for _ in range(6):
            assert total_retrievals(url) == sent

        # a reload reaches every worker before it answers
        reload = httpx.post(f"{url}/v1/admin/reload", json={"path": str(v2)},
                            headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)
        assert reload.status_code == 200, reload.text
        body = reload.json()
        assert (body["model_version"], body["workers"], body["workers_updated"],
                body["workers_failed"]) == ("tiny-v2", 2, 2, 0)
        assert {httpx.get(f"{url}/v1/model").json()["version"] for _ in range(20)} \
            == {"tiny-v2"}
        info = [line for line in httpx.get(f"{url}/metrics").text.splitlines()
                if line.startswith("seater_model_info{")]
        assert sorted(info) == ['seater_model_info{version="tiny-v1"} 0.0',
                                'seater_model_info{version="tiny-v2"} 1.0']

        # a worker that dies is replaced by one on the reloaded bundle, not SEATER_ARTIFACTS
        victim = min(pids)
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: {int(p.stem) for p in (state / "workers").glob("*.json")} - pids
                   and httpx.get(f"{url}/v2/health/ready").status_code == 200,
                   what="a replacement worker")
        assert {httpx.get(f"{url}/v1/model").json()["version"] for _ in range(20)} \
            == {"tiny-v2"}
    finally:
        server.send_signal(signal.SIGTERM)
        _, err = server.communicate(timeout=60)
    assert server.returncode == 0, err[-3000:]
    assert not list(run_tmp.glob("seater-workers-*"))  # the state folder is cleaned up


def test_sigterm_lets_every_worker_finish_its_requests(tiny_bundle, tmp_path):
    """Requests held in the micro-batch queue (1 s max wait) when SIGTERM arrives are all
    answered before the server exits."""
    bundle = copy_bundle(tiny_bundle.path, tmp_path / "tiny-v1")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "SEATER_PROVIDERS": "cpu", "REDIS_URL": "", "SEATER_LOG_LEVEL":
           "WARNING", "SEATER_MAX_WAIT_MS": "1000", "SEATER_MAX_BATCH_SIZE": "1000"}
    server = subprocess.Popen(
        [sys.executable, "-m", "service", "--artifacts", str(bundle), "--port", str(port),
         "--workers", "2"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True)
    ids = external_ids(bundle)
    try:
        wait_until(lambda: httpx.get(f"{url}/v2/health/ready").status_code == 200,
                   what="readiness")
        with ThreadPoolExecutor(12) as pool:
            pending = [pool.submit(retrieve, url, ids[i: i + 3]) for i in range(12)]
            time.sleep(0.4)  # all sent, none answered yet (they wait for the batch)
            assert not any(f.done() for f in pending)
            server.send_signal(signal.SIGTERM)
            codes = [f.result(timeout=30) for f in pending]
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
        _, err = server.communicate(timeout=60)
    assert codes == [200] * 12
    assert server.returncode == 0, err[-3000:]
