"""Several worker processes behind one port: how many, and what they share.

One process serves at most about one core (the beam search's bookkeeping holds the GIL),
so a container runs ``SEATER_WORKERS`` of them (default: the cores it may use) under
uvicorn's supervisor, which binds the port once, restarts a worker that dies, and on
SIGTERM lets every worker drain before it exits. The workers share:

- a state folder (``SEATER_STATE_DIR``) through which a reload reaches all of them and
  readiness counts them (:mod:`service.core.workers`);
- prometheus-client's multiprocess folder, so ``/metrics`` adds up every worker;
- the Redis cache, as separate containers do.

Each worker gets ``cores / workers`` ONNX Runtime threads unless SEATER_INTRA_OP_THREADS
says otherwise, so N workers do not start N pools of one thread per core each. numpy's BLAS
(the dense engine's brute-force matmul) gets the same share unless its own variables are
set: by default OpenBLAS starts a thread per core in every worker, and its idle threads spin,
so two workers on two cores burn a core between them doing nothing.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

from service.metrics import MULTIPROC_ENV
from service.settings import Settings

log = logging.getLogger(__name__)

BLAS_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def available_cores(cpu_max: Path = CGROUP_CPU_MAX) -> int:
    """The cores this process may use: its CPU affinity, capped by a cgroup v2 CPU quota
    (a Kubernetes CPU limit shows there, not in the affinity)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)
    try:
        quota, period = cpu_max.read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def worker_count(settings: Settings, cores: int | None = None) -> int:
    return settings.workers or (cores or available_cores())


def worker_environment(settings: Settings, workers: int, state_dir: Path,
                       cores: int | None = None,
                       inherited: Mapping[str, str] | None = None) -> dict[str, str]:
    """What each worker's Settings must read: the command line's values, the group and
    its folders, and its share of the cores (for BLAS too, where ``inherited``, the
    environment the workers start from, does not already say)."""
    cores = cores or available_cores()
    env = {
        "SEATER_HOST": settings.host,
        "SEATER_PORT": str(settings.port),
        "SEATER_WORKERS": str(workers),
        "SEATER_STATE_DIR": str(state_dir),
        MULTIPROC_ENV: str(state_dir / "metrics"),
    }
    if settings.artifacts is not None:
        env["SEATER_ARTIFACTS"] = str(settings.artifacts)
    share = str(max(1, cores // workers))
    if settings.intra_op_threads == 0:
        env["SEATER_INTRA_OP_THREADS"] = share
    inherited = os.environ if inherited is None else inherited
    env.update({var: share for var in BLAS_THREAD_VARS if var not in inherited})
    return env


def run_workers(settings: Settings, workers: int) -> None:
    """Serve with ``workers`` processes until SIGTERM / SIGINT, then drain and clean up."""
    import uvicorn

    state_dir = Path(tempfile.mkdtemp(prefix="seater-workers-"))
    (state_dir / "metrics").mkdir()
    env = worker_environment(settings, workers, state_dir)
    os.environ.update(env)  # the workers are spawned: they inherit it and build Settings()
    log.info("starting %d worker processes (%s ONNX Runtime threads each)", workers,
             env.get("SEATER_INTRA_OP_THREADS", settings.intra_op_threads))
    try:
        uvicorn.run(
            "service.app:factory",
            factory=True,
            workers=workers,
            host=settings.host,
            port=settings.port,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=settings.graceful_shutdown_s,
            proxy_headers=True,
        )
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)
