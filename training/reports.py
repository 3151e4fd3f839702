"""Measured results -> ``reports/quality/<dataset>.json`` and a generated markdown table.

Every entry carries what is needed to reproduce and to trust it: the command's config,
git commit, dataset, protocol, seed, machine and timings. Entries are keyed by
``model/protocol/variant`` so re-running a configuration replaces its row.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from training.data.registry import REPO_ROOT

REPORTS_DIR = REPO_ROOT / "reports"


def git_commit(root: Path = REPO_ROOT) -> str:
    """HEAD, with ``-dirty`` when a tracked file outside ``reports/`` differs from it.

    ``reports/`` is what runs write, not what they run: a run started while an earlier one's
    row sits uncommitted in a report JSON ran the committed code all the same."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                ".", ":(exclude)reports"],
                               cwd=root, capture_output=True, text=True).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "cpu": _cpu_name(),
        # two "AMD EPYC" hosts of different generations run different float kernels, so
        # the same seeded run can take another trajectory: the model and ISA tell them apart
        "cpu_model": _cpu_model(),
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        info["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


def _cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """``family F model M`` of the first processor in /proc/cpuinfo (empty without it)."""
    try:
        first = cpuinfo.read_text().split("\n\n")[0]
    except OSError:
        return ""
    fields = {k.strip(): v.strip() for k, v in
              (line.split(":", 1) for line in first.splitlines() if ":" in line)}
    family, model = fields.get("cpu family"), fields.get("model")
    return f"family {family} model {model}" if family and model else ""


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def command_line() -> str:
    """The ``seater`` command this process runs, as a shell would take it back."""
    return "seater " + shlex.join(sys.argv[1:])


def provenance(commit: str | None = None) -> dict[str, Any]:
    """The fields every report entry carries: command, commit, machine and date.

    ``commit``: the code a long run started from (HEAD may move during it)."""
    return {"command": command_line(), "commit": commit or git_commit(),
            "machine": machine_info(), "date": now()}


def update_quality_report(dataset: str, entry: dict[str, Any],
                          reports_dir: Path = REPORTS_DIR) -> Path:
    """Insert or replace ``entry`` (by its ``key``) in the dataset's report JSON."""
    path = Path(reports_dir) / "quality" / f"{dataset}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(path.read_text()) if path.is_file() else {"dataset": dataset, "runs": []}
    runs = [r for r in data["runs"] if r.get("key") != entry["key"]]
    runs.append(entry)
    data["runs"] = sorted(runs, key=lambda r: r["key"])
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    render_quality_markdown(Path(reports_dir))
    return path


def curve_links(runs: list[dict[str, Any]], base: Path) -> list[str]:
    """A markdown link per entry whose run folder holds its curve (the refit's for a
    refit entry)."""
    links = []
    for run in runs:
        part = "refit" if run.get("protocol", {}).get("refit_on_validation") else "fit"
        png = Path(run.get("run_dir", "")) / part / "curves.png"
        if run.get("run_dir") and png.is_file():
            target = os.path.relpath(png.resolve(), Path(base).resolve())
            links.append(f"- {run['key']} ({part}): [{png}]({target})")
    return links


def render_quality_markdown(reports_dir: Path = REPORTS_DIR) -> Path:
    """``reports/quality/README.md``: one table per dataset and protocol, from the JSONs."""
    qdir = Path(reports_dir) / "quality"
    lines = [
        "# Quality results",
        "",
        "Generated by `seater report` from the JSON files in this folder; every row was",
        "written by the command named in its JSON entry (`command`), at the commit shown.",
        "`train ex/s` is wall-clock (other jobs shared the 2 cores in most runs); `ex per",
        "CPU s` divides by the process's CPU time instead (logged since it was added).",
        "",
    ]
    curves: list[str] = []
    for path in sorted(qdir.glob("*.json")):
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or not isinstance(data.get("runs"), list):
            continue  # another report in this folder (e.g. semantic_ids_<ds>.json)
        curves += curve_links(data["runs"], qdir)
        by_proto: dict[str, list[dict[str, Any]]] = {}
        for run in data["runs"]:
            by_proto.setdefault(run["protocol"]["protocol"], []).append(run)
        for proto, runs in sorted(by_proto.items()):
            ks = (5, 10) if proto == "loo" else (20, 50)
            names = ("recall", "ndcg") if proto == "loo" else ("recall", "hr", "ndcg")
            cols = [f"{n}@{k}" for k in ks for n in names]
            lines += [f"## {data['dataset']} — protocol `{proto}`", ""]
            head = " | ".join(cols)
            lines.append(f"| run | split | {head} | epochs (best) | train s | train ex/s "
                         "| ex per CPU s | commit |")
            lines.append("|---" * (len(cols) + 7) + "|")
            for run in runs:
                for split in ("test", "valid"):
                    m = run["metrics"].get(split)
                    if not m:
                        continue
                    vals = " | ".join(f"{m.get(c, float('nan')):.4f}" for c in cols)
                    lines.append(
                        f"| {run['key']} | {split} | {vals} | {run.get('epochs_run', '')} "
                        f"({run.get('best_epoch', '')}) | {run.get('train_seconds', 0):.0f} | "
                        f"{run.get('throughput', {}).get('train_examples_per_s', '')} | "
                        f"{run.get('throughput', {}).get('train_examples_per_cpu_s', '')} | "
                        f"{str(run.get('commit', ''))[:9]} |"
                    )
            lines.append("")
    if curves:
        lines += ["## Training curves", "", "Loss terms and validation metrics per epoch "
                  "(`curves.png` beside each run's `metrics.jsonl`), for the runs whose "
                  "folders are on this machine.", "", *curves, ""]
    out = qdir / "README.md"
    qdir.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    return out
