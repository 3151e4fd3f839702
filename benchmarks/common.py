"""What every benchmark records beside its figures, and how it pins threads.

A figure means nothing without the commit, the machine and how busy the machine was:
:func:`provenance` gathers them once at the start (machine facts from
``training.reports.machine_info``, the one helper for them), :func:`closing_load` at the
end. :func:`pinned_threads` limits BLAS, OpenMP (FAISS) and torch pools for a block,
instead of environment variables set before numpy is imported.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parents[1]


def command(module: str, argv: Sequence[str]) -> str:
    """The command line that reproduces this run, as ``python -m benchmarks.<name> ...``."""
    return shlex.join(["python", "-m", module, *argv])


def option_value(argv: Sequence[str], flag: str) -> str | None:
    """The value after ``flag`` in an argument list (None when absent)."""
    return argv[list(argv).index(flag) + 1] if flag in argv[:-1] else None


def write_report(report: dict[str, Any], out: str | Path) -> Path:
    """Write a benchmark's report JSON (its folder made if needed) and say where it went:
    every benchmark leaves its figures the same way, so they read and diff alike."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}")
    return path


class Process(NamedTuple):
    cpu: float  # seconds, utime + stime
    parent: int
    command: str


def processes() -> dict[int, Process]:
    """CPU seconds, parent and command line of every process, from /proc (empty where
    /proc is missing)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError):
            continue  # the process ended meanwhile
        out[int(entry.name)] = Process((int(fields[11]) + int(fields[12])) / tick,
                                       int(fields[1]), cmd.strip()[:160])
    return out


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process and its live descendants (a supervisor's workers)."""
    procs = processes()
    children: dict[int, list[int]] = {}
    for child, proc in procs.items():
        children.setdefault(proc.parent, []).append(child)
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += procs[p].cpu if p in procs else 0.0
        todo += children.get(p, [])
    return total


def machine_activity(seconds: float = 2.0, min_share: float = 0.1) -> dict[str, Any]:
    """Cores busy over the last ``seconds`` (from /proc/stat) and the processes busy then.

    The load average lags by minutes, so it still reads "busy" just after other jobs
    stopped; this is what the machine does right now, and who does it. Busy cores are
    -1 where /proc is missing.
    """

    def snapshot() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(fields), fields[3] + fields[4]  # total, idle + iowait

    try:
        (total0, idle0), procs0 = snapshot(), processes()
        time.sleep(seconds)
        (total1, idle1), procs1 = snapshot(), processes()
    except (OSError, ValueError, IndexError):
        return {"busy_cores": -1.0, "busy_processes": []}
    share = 1 - (idle1 - idle0) / max(total1 - total0, 1)
    cores = {pid: (p.cpu - procs0[pid].cpu) / seconds for pid, p in procs1.items()
             if pid in procs0 and pid != os.getpid()}
    busy = [{"pid": pid, "cores": round(c, 2), "command": procs1[pid].command}
            for pid, c in cores.items() if c >= min_share]
    return {"busy_cores": round(share * (os.cpu_count() or 1), 2),
            "busy_processes": sorted(busy, key=lambda p: -p["cores"])}


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
        "load": {"load_average_at_start": load_average(), **_activity("at_start")},
    }


def closing_load(report: dict[str, Any]) -> None:
    """Add the load at the end beside the one at the start."""
    report["load"]["load_average_at_end"] = load_average()
    report["load"].update(_activity("at_end"))


def _activity(when: str) -> dict[str, Any]:
    """:func:`machine_activity` under keys that say when it was taken (this process is
    left out of the processes, not of the busy cores)."""
    now = machine_activity()
    return {f"busy_cores_{when}": now["busy_cores"],
            f"other_busy_processes_{when}": now["busy_processes"]}


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
