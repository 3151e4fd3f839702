"""What every benchmark records beside its figures, and how it pins threads.

A figure means nothing without the commit, the machine and how busy the machine was:
:func:`provenance` gathers them once at the start (machine facts from
``training.reports.machine_info``, the one helper for them), :func:`closing_load` at the
end. :func:`pinned_threads` limits BLAS, OpenMP (FAISS) and torch pools for a block,
instead of environment variables set before numpy is imported.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def command(module: str, argv: Sequence[str]) -> str:
    """The command line that reproduces this run, as ``python -m benchmarks.<name> ...``."""
    return shlex.join(["python", "-m", module, *argv])


def busy_cores(seconds: float = 2.0) -> float:
    """Cores busy over the last ``seconds`` (from /proc/stat; -1 where it is missing).

    The load average lags by minutes, so it still reads "busy" just after other jobs
    stopped; this is what the machine does right now.
    """

    def snapshot() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(fields), fields[3] + fields[4]  # total, idle + iowait

    try:
        total0, idle0 = snapshot()
        time.sleep(seconds)
        total1, idle1 = snapshot()
    except (OSError, ValueError, IndexError):
        return -1.0
    share = 1 - (idle1 - idle0) / max(total1 - total0, 1)
    return round(share * (os.cpu_count() or 1), 2)


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def provenance(module: str, argv: Sequence[str]) -> dict[str, Any]:
    """Command, commit, date, machine and the load before the run starts."""
    from training.reports import git_commit, machine_info, now

    return {
        "command": command(module, argv),
        "commit": git_commit(),
        "date": now(),
        "machine": machine_info(),
        "load": {"load_average_at_start": load_average(),
                 "busy_cores_at_start": busy_cores()},
    }


def closing_load(report: dict[str, Any]) -> None:
    """Add the load at the end beside the one at the start."""
    report["load"]["load_average_at_end"] = load_average()
    report["load"]["busy_cores_at_end"] = busy_cores()


@contextlib.contextmanager
def pinned_threads(threads: int) -> Iterator[dict[str, Any]]:
    """BLAS, OpenMP and torch limited to ``threads`` inside the block.

    Yields what was pinned, for the report. On a shared machine OpenBLAS's spinning
    threads slow small matmuls badly whenever another process runs, so benchmarks pin
    them instead of taking the library default.
    """
    from threadpoolctl import threadpool_limits

    pinned: dict[str, Any] = {"threads": threads}
    with threadpool_limits(limits=threads):
        torch_before = None
        try:
            import torch

            torch_before = torch.get_num_threads()
            torch.set_num_threads(threads)
            pinned["torch"] = threads
        except ImportError:
            pass
        try:
            from threadpoolctl import threadpool_info

            pinned["pools"] = sorted({f"{p['internal_api']}={p['num_threads']}"
                                      for p in threadpool_info()})
            yield pinned
        finally:
            if torch_before is not None:
                torch.set_num_threads(torch_before)
