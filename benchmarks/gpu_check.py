"""The GPU check: ONNX Runtime's CUDA provider beside its CPU one, and training on the GPU.

    python -m benchmarks.gpu_check [--out reports/bench/gpu.json] [--budget-s 420] [--dry-run]

On a lent machine run ``bash benchmarks/gpu_check.sh run``, which installs what was
carried and then calls this. Stages, in this order, each in its own process under its own
time box (a CUDA call that hangs cannot be interrupted from inside Python); a stage that
fails or runs out of time writes ``{"error": ...}`` under its name and the next still runs:

- ``environment``: torch and its CUDA device (name, capability, memory, CUDA and cuDNN
  versions), the driver (nvidia-smi), onnxruntime's version, location and providers.
- ``engine``: the service's ``SeaterEngine`` with the CPU provider and with the CUDA
  provider in the same run, on the same real Beauty histories: B = 1, 64, 256 requests,
  beam 50, n 10; encode, search, end-to-end and per-decoder-step latency
  (``benchmarks.engine``'s timing, after warm-up rounds), requests/s, CUDA over CPU.
  Every graph call goes through an IOBinding; on CUDA the per-batch memory and the
  constants stay on the device. Bundle: ``benchmarks.engine``'s Beauty-shaped untrained
  one (the cost does not depend on the weights).
- ``train_cuda``: ``seater train sasrec`` then ``seater train seater`` on Beauty, one
  epoch each on the GPU (validation and test on a subset of users), examples/s from the
  runs' own reports; the SEATER run exported by ``seater export`` as the trained bundle.
- ``parity``: the trained bundle (else the timing one, which the report says) on both
  providers for real histories: identical items in identical order, identical sets, the
  largest score difference, and where two lists differ the scores at the first differing
  rank (near-ties swap places under float32 rounding).
- ``train_cpu``: the same two commands on the CPU, each epoch capped at a number of
  batches, for examples/s against the GPU's.

``--dry-run``: tiny sizes (few repeats, batches and users), so the whole path runs in
seconds on a CPU; without a CUDA provider or a CUDA device the CUDA stages write
``"skipped: ..."``. The report is rewritten after every stage.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT

CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"
STAGES = ("environment", "engine", "train_cuda", "parity", "train_cpu")
TIME_BOX_S = {"environment": 60, "engine": 150, "train_cuda": 180, "parity": 60,
              "train_cpu": 90}
RESERVE_S = 8  # kept back for the closing load, yardstick and report
IO_BINDING = ("SeaterEngine binds every input and output of both graphs through an "
              "IOBinding; on CUDA the node table, children table and per-batch memory are "
              "OrtValues on the device, a beam step ships its prefix in and its log-probs out")


@dataclass(frozen=True)
class CheckConfig:
    """What every stage runs with (saved in the report)."""

    work: str
    dataset: str = "beauty"
    histories_file: str = "data/beauty/interactions.txt"
    timing_bundle: str = ""  # "" = benchmarks.engine's Beauty-shaped bundle
    batches: tuple[int, ...] = (1, 64, 256)
    repeats: tuple[int, ...] = (300, 60, 20)
    warmup: int = 3
    beam: int = 50
    n: int = 10
    parity_histories: int = 512
    parity_batch: int = 64
    gpu_batches: int = 0  # batches per epoch on the GPU (0 = the whole epoch)
    cpu_batches: int = 100  # batches per epoch on the CPU
    eval_users: int = 1000
    cpu_threads: int = 0  # torch threads of the CPU training (0 = all cores)
    seed: int = 0

    @classmethod
    def dry(cls, work: str) -> CheckConfig:
        return cls(work=work, repeats=(3, 2, 1), warmup=1, parity_histories=16,
                   parity_batch=8, gpu_batches=2, cpu_batches=2, eval_users=50,
                   cpu_threads=1)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CheckConfig:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


Save = Callable[[dict[str, Any]], None]
"""Writes a stage's figures so far: a stage killed at its time box keeps them."""


class StageError(RuntimeError):
    """A stage could not produce its figures; the message goes into the report."""


# ------------------------------------------------------------------ runtime
def cuda_provider() -> str | None:
    """None when onnxruntime can run on CUDA here, else why not.

    torch is imported first: it loads the CUDA and cuDNN libraries of its nvidia-* wheels,
    which onnxruntime's CUDA provider then finds already in the process.
    """
    with contextlib.suppress(ImportError):
        import torch  # noqa: F401
    import onnxruntime as ort

    offered = ort.get_available_providers()
    if CUDA not in offered:
        return f"skipped: no CUDA provider (onnxruntime {ort.__version__} offers {offered})"
    return None


def engine_for(bundle, provider: str, clock=None):
    """The service's engine with one provider (CPU: ONNX Runtime's default threads)."""
    from indexer.search import beam_search
    from service.model.seater import SeaterEngine
    from service.model.sessions import RuntimeOptions
    from service.settings import Settings

    settings = Settings(providers=provider, allow_spinning=provider == "cpu")
    engine = SeaterEngine(bundle, RuntimeOptions.from_settings(settings), clock or beam_search)
    if engine.device != provider:  # onnxruntime falls back to the CPU when CUDA fails to load
        engine.close()
        raise StageError(f"asked for {provider}, onnxruntime gave {engine.info.providers} "
                         "(its warning in the log says why)")
    return engine


def histories_for(cfg: CheckConfig, bundle, count: int) -> list:
    """Real histories (``benchmarks.engine``'s rule) mapped through the bundle's ids."""
    from benchmarks.engine import draw_histories
    from loadtests.histories import read_sequences

    sequences = read_sequences(ROOT / cfg.histories_file)
    known = set(bundle.catalog.ids)
    if not any(item in known for seq in sequences[:200] for item in seq):
        raise StageError(f"no item of {cfg.histories_file} is in the bundle's catalogue")
    return draw_histories(sequences, bundle.catalog.ids, count, cfg.seed, bundle.max_history)


def describe_bundle(path: Path, bundle) -> dict[str, Any]:
    return {"path": str(path), "version": bundle.version, "dataset": bundle.manifest.dataset,
            "n_items": int(bundle.tree.n_items), "config": bundle.manifest.config}


def timing_bundle(cfg: CheckConfig) -> Path:
    from benchmarks.engine import beauty_shape_bundle

    return Path(cfg.timing_bundle) if cfg.timing_bundle else beauty_shape_bundle(cfg.seed)


# ------------------------------------------------------------------ stages
def stage_environment(cfg: CheckConfig, previous: dict[str, Any],
                      save: Save) -> dict[str, Any]:
    out: dict[str, Any] = {"cpu_count": os.cpu_count()}
    try:
        import torch

        out["torch"] = {"version": torch.__version__, "built_for_cuda": torch.version.cuda,
                        "cuda_available": torch.cuda.is_available()}
        if torch.cuda.is_available():
            p = torch.cuda.get_device_properties(0)
            out["torch"].update({"device": p.name, "capability": f"{p.major}.{p.minor}",
                                 "memory_gib": round(p.total_memory / 2**30, 1),
                                 "multiprocessors": p.multi_processor_count,
                                 "cudnn": torch.backends.cudnn.version()})
    except ImportError as exc:
        out["torch"] = {"error": str(exc)}
    out["nvidia_smi"] = nvidia_smi()
    import onnxruntime as ort

    out["onnxruntime"] = {"version": ort.__version__, "file": ort.__file__,
                          "providers": ort.get_available_providers(),
                          "device": ort.get_device()}
    out["cuda_smoke"] = cuda_smoke() if CUDA in ort.get_available_providers() else {
        "error": "skipped: no CUDA provider"}
    return out


def cuda_smoke(provider: str = CUDA) -> dict[str, Any]:
    """A three-node graph (MatMul, Softmax, TopK) on the CUDA provider against numpy:
    whether the provider loads and computes at all, apart from the engine. What
    onnxruntime prints while the session is made (why it fell back, if it did) is kept."""
    import tempfile

    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = rng.standard_normal((64, 32)).astype(np.float32)
    x = rng.standard_normal((4, 64)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["s"]),
         helper.make_node("Softmax", ["s"], ["p"], axis=-1),
         helper.make_node("TopK", ["p", "k"], ["top", "idx"], axis=-1)],
        "smoke", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 64])],
        [helper.make_tensor_value_info("top", TensorProto.FLOAT, [None, 5]),
         helper.make_tensor_value_info("idx", TensorProto.INT64, [None, 5])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array([5], np.int64), "k")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    with tempfile.TemporaryFile(mode="w+b") as err:
        saved = os.dup(2)
        os.dup2(err.fileno(), 2)
        try:
            session = ort.InferenceSession(model.SerializeToString(),
                                           providers=list(dict.fromkeys([provider, CPU])))
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        err.seek(0)
        messages = err.read().decode(errors="replace").strip()
    top, idx = session.run(None, {"x": x})
    logits = x.astype(np.float64) @ w
    ref = np.exp(logits - logits.max(1, keepdims=True))
    ref /= ref.sum(1, keepdims=True)
    want = np.argsort(-ref, axis=1)[:, :5]
    return {"providers": session.get_providers(), "messages": messages[-2000:],
            "topk_indices_equal": bool((idx == want).all()),
            "max_abs_diff": float(np.abs(top - np.take_along_axis(ref, want, 1)).max())}


def nvidia_smi() -> dict[str, Any] | str:
    fields = ["name", "driver_version", "memory.total", "clocks.max.sm"]
    try:
        done = subprocess.run(["nvidia-smi", f"--query-gpu={','.join(fields)}",
                               "--format=csv,noheader"], capture_output=True, text=True,
                              timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"not available: {exc}"
    if done.returncode:
        return f"exited with {done.returncode}: {done.stderr.strip()[-200:]}"
    header = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=20).stdout
    cuda = next((line.split("CUDA Version:")[1].split("|")[0].strip()
                 for line in header.splitlines() if "CUDA Version:" in line), None)
    values = [v.strip() for v in done.stdout.splitlines()[0].split(",")]
    return {**dict(zip(fields, values, strict=False)), "driver_cuda_version": cuda}


def stage_engine(cfg: CheckConfig, previous: dict[str, Any],
                 save: Save) -> dict[str, Any]:
    why_not = cuda_provider()
    from service.model.bundle import load_seater_bundle

    path = timing_bundle(cfg)
    bundle = load_seater_bundle(path)
    histories = histories_for(cfg, bundle, 4096)
    out: dict[str, Any] = {"bundle": describe_bundle(path, bundle), "beam": cfg.beam,
                           "n": cfg.n, "io_binding": IO_BINDING,
                           "histories": {"source": cfg.histories_file, "count": len(histories)}}
    for provider in ("cpu", "cuda"):
        if provider == "cuda" and why_not:
            out["cuda"] = {"error": why_not}
            continue
        try:
            out[provider] = time_engine(bundle, provider, histories, cfg)
        except Exception as exc:  # one provider failing must not hide the other's figures
            traceback.print_exc()
            out[provider] = {"error": f"{type(exc).__name__}: {exc}"}
        save(out)
    if "error" not in out["cpu"] and "error" not in out["cuda"]:
        out["cuda_over_cpu_requests_per_s"] = {
            key: round(out["cuda"][key]["requests_per_s"] / out["cpu"][key]["requests_per_s"], 2)
            for key in out["cpu"] if key.startswith("B=")}
    return out


def time_engine(bundle, provider: str, histories: list, cfg: CheckConfig) -> dict[str, Any]:
    from benchmarks.engine import StepClock, bench_seater

    clock = StepClock()
    engine = engine_for(bundle, provider, clock)
    options = engine.decoder.get_provider_options()
    row: dict[str, Any] = {"providers": engine.info.providers, "device": engine.device,
                           "provider_options": options.get(engine.info.providers[0], {})}
    try:
        for batch, reps in zip(cfg.batches, cfg.repeats, strict=True):
            # warm-up: allocations, library handles and kernel choices are made per shape
            bench_seater(engine, clock, histories, batch, cfg.warmup, cfg.n, cfg.beam, None)
            timed = bench_seater(engine, clock, histories, batch, reps, cfg.n, cfg.beam, None)
            timed["requests_per_s"] = round(batch / timed["end_to_end"]["median_ms"] * 1e3, 1)
            row[f"B={batch}"] = timed
            print(f"[gpu_check] engine {provider} B={batch}: end-to-end median "
                  f"{timed['end_to_end']['median_ms']:.2f} ms", flush=True)
    finally:
        engine.close()
    return row


def stage_parity(cfg: CheckConfig, previous: dict[str, Any],
                 save: Save) -> dict[str, Any]:
    why_not = cuda_provider()
    if why_not:
        return {"error": why_not}
    import numpy as np

    from service.model.bundle import load_seater_bundle

    trained = previous.get("train_cuda", {}).get("bundle")
    path = Path(trained) if trained else timing_bundle(cfg)
    bundle = load_seater_bundle(path)
    histories = histories_for(cfg, bundle, cfg.parity_histories)
    engines = {p: engine_for(bundle, p) for p in ("cpu", "cuda")}
    hits: dict[str, list] = {p: [] for p in engines}
    state_diff = 0.0
    for start in range(0, len(histories), cfg.parity_batch):
        batch = histories[start : start + cfg.parity_batch]
        n, beam = np.full(len(batch), cfg.n), np.full(len(batch), cfg.beam)
        states = {p: e.encode(batch) for p, e in engines.items()}
        for a, b in zip(states["cpu"], states["cuda"], strict=True):
            state_diff = max(state_diff, float(np.abs(a.memory_k - b.memory_k).max()),
                             float(np.abs(a.memory_v - b.memory_v).max()))
        for p, engine in engines.items():
            hits[p] += engine.search(states[p], n, beam, batch)
    for engine in engines.values():
        engine.close()
    return {"bundle": describe_bundle(path, bundle),
            "bundle_kind": "trained (train_cuda)" if trained else
            "untrained timing bundle (train_cuda made none)",
            "beam": cfg.beam, "n": cfg.n, "encoder_state_max_abs_diff": state_diff,
            **compare_hits(hits["cpu"], hits["cuda"])}


def compare_hits(cpu: list, cuda: list, show: int = 5) -> dict[str, Any]:
    """Per request, do the two providers return the same top-n, in the same order?

    Scores are compared on the items both lists hold; where the lists differ, the two
    scores at the first differing rank say whether it was a near-tie that float32
    rounding tipped (a gap in the 5th decimal) or a real disagreement.
    """
    same_order = same_set = 0
    score_diff, first_gap, differ = 0.0, 0.0, []
    for i, (a, b) in enumerate(zip(cpu, cuda, strict=True)):
        ia, ib = a.items.tolist(), b.items.tolist()
        sa = dict(zip(ia, a.scores.tolist(), strict=True))
        sb = dict(zip(ib, b.scores.tolist(), strict=True))
        common = set(ia) & set(ib)
        if common:
            score_diff = max(score_diff, max(abs(sa[x] - sb[x]) for x in common))
        same_order += ia == ib
        same_set += set(ia) == set(ib)
        if ia != ib:
            rank = next(r for r in range(max(len(ia), len(ib)))
                        if r >= min(len(ia), len(ib)) or ia[r] != ib[r])
            gap = (abs(float(a.scores[rank]) - float(b.scores[rank]))
                   if rank < min(len(ia), len(ib)) else None)  # None: one list ended there
            first_gap = max(first_gap, gap or 0.0)
            if len(differ) < show:
                differ.append({"request": i, "rank": rank, "cpu_items": ia, "cuda_items": ib,
                               "score_gap_at_rank": gap})
    total = len(cpu)
    return {"requests": total, "identical_order": same_order, "identical_set": same_set,
            "identical_order_share": round(same_order / max(total, 1), 4),
            "max_abs_score_diff_common_items": score_diff,
            "max_score_gap_at_first_difference": first_gap, "differing": differ}


def stage_train_cuda(cfg: CheckConfig, previous: dict[str, Any],
                     save: Save) -> dict[str, Any]:
    import torch

    if not torch.cuda.is_available():
        return {"error": f"skipped: torch {torch.__version__} sees no CUDA device"}
    return train_both(cfg, "cuda", cfg.gpu_batches, True, save)


def stage_train_cpu(cfg: CheckConfig, previous: dict[str, Any],
                    save: Save) -> dict[str, Any]:
    # the export path runs here too when no GPU run made a bundle (a dry run on a CPU)
    return train_both(cfg, "cpu", cfg.cpu_batches,
                      not previous.get("train_cuda", {}).get("bundle"), save)


def train_both(cfg: CheckConfig, device: str, max_batches: int, export: bool,
               save: Save) -> dict[str, Any]:
    """One epoch of SASRec, then of SEATER on its embeddings, with the project's CLI;
    what is done is saved after each command, so a time-out keeps it."""
    root = Path(cfg.work) / f"train-{device}"
    shutil.rmtree(root, ignore_errors=True)
    common = ["-d", cfg.dataset, "-p", "loo", "--epochs", "1", "--device", device,
              "--out", str(root), "--no-resume", "--no-refit", "--set", "train.progress=false",
              "--set", f"train.max_eval_users={cfg.eval_users}",
              "--set", f"train.final_eval_users={cfg.eval_users}"]
    if max_batches:
        common += ["--set", f"train.max_batches={max_batches}"]
    if device == "cpu" and cfg.cpu_threads:
        common += ["--threads", str(cfg.cpu_threads)]
    out: dict[str, Any] = {"device": device, "epoch_cap_batches": max_batches or None}
    seater_args = ["train", "seater", *common, "--name", "seater",
                   "--set", "tree.splitter=fast"]  # exact needs k-means-constrained
    try:
        out["sasrec"] = run_summary(*seater_cli(["train", "sasrec", *common, "--name", "sasrec"],
                                                root, "sasrec"))
        seater_args += ["--sasrec-run", out["sasrec"]["run_dir"]]
    except StageError as exc:  # SEATER then trains its own SASRec first
        out["sasrec"] = {"error": str(exc)}
    save(out)
    out["seater"] = run_summary(*seater_cli(seater_args, root, "seater"))
    save(out)
    if export:
        _, _, seconds = seater_cli(["export", "--run", out["seater"]["run_dir"], "--out",
                                    str(root / "bundles"), "--version", f"trained-{device}"],
                                   root, None)
        out["bundle"] = str(root / "bundles" / f"trained-{device}")
        out["export_seconds"] = round(seconds, 1)
    return out


def seater_cli(args: list[str], root: Path, name: str | None) -> tuple[str, Path | None, float]:
    """Run ``seater ARGS`` (the training CLI) in a subprocess, its output streamed to the
    log as it comes (a stage killed at its time box keeps what the command had said)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "training.cli", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    tail: deque[str] = deque(maxlen=3)
    for line in proc.stdout or ():
        sys.stderr.write(line)
        if line.strip():
            tail.append(line.strip())
    command = "seater " + " ".join(args)
    if proc.wait():
        raise StageError(f"`{command}` exited with {proc.returncode}: {' | '.join(tail)[-400:]}")
    run_dir = next(root.glob(f"*/{name}"), None) if name else None
    return command, run_dir, time.perf_counter() - t0


def run_summary(command: str, run_dir: Path | None, wall_s: float) -> dict[str, Any]:
    """A training run's speed and quality, from the files the run itself wrote."""
    if run_dir is None:
        raise StageError(f"`{command}` wrote no run folder")
    result = json.loads((run_dir / "result.json").read_text())[-1]
    epoch = json.loads((run_dir / "fit" / "metrics.jsonl").read_text().splitlines()[0])
    test = result["metrics"].get("test", {})
    return {"command": command, "run_dir": str(run_dir), "wall_s": round(wall_s, 1),
            "device": result["machine"].get("device"), "epochs_run": result["epochs_run"],
            "examples_per_s": epoch["examples_per_s"], "train_seconds": epoch["train_seconds"],
            "valid_seconds": epoch.get("valid_seconds"), "eval_users": result["eval_users"],
            "eval_users_per_s": result["throughput"].get("eval_users_per_s"),
            "test": {k: test[k] for k in ("recall@10", "ndcg@10") if k in test}}


STAGE_FUNCTIONS: dict[str, Callable[[CheckConfig, dict[str, Any], Save], dict[str, Any]]] = {
    "environment": stage_environment, "engine": stage_engine, "train_cuda": stage_train_cuda,
    "parity": stage_parity, "train_cpu": stage_train_cpu}


# ------------------------------------------------------------------ orchestration
def run_child(name: str, work: Path) -> int:
    """Inside a stage's process: run it, write its fragment (its error if it raised)."""
    context = json.loads((work / "context.json").read_text())
    cfg = CheckConfig.from_json(context["config"])
    fragment = work / f"stage-{name}.json"

    def save(result: dict[str, Any]) -> None:
        tmp = fragment.with_suffix(".tmp")
        tmp.write_text(json.dumps(result, indent=2, default=str))
        tmp.replace(fragment)

    try:
        result, rc = STAGE_FUNCTIONS[name](cfg, context["stages"], save), 0
    except Exception as exc:
        traceback.print_exc()
        done = json.loads(fragment.read_text()) if fragment.is_file() else {}
        result, rc = {**done, "error": f"{type(exc).__name__}: {exc}"}, 1
    save(result)
    return rc


def run_stage(name: str, work: Path, deadline: float) -> dict[str, Any]:
    """The stage in its own process, killed (with its children) at its time box."""
    left = deadline - time.monotonic() - RESERVE_S
    limit = min(TIME_BOX_S[name], left)
    if limit < 10:
        return {"error": f"skipped: {max(left, 0):.0f} s of the budget left"}
    fragment = work / f"stage-{name}.json"
    fragment.unlink(missing_ok=True)
    print(f"[gpu_check] stage {name} (time box {limit:.0f} s)", flush=True)
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.gpu_check", "--stage", name,
                             "--work", str(work)], cwd=ROOT, start_new_session=True)
    try:
        rc = proc.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        done = json.loads(fragment.read_text()) if fragment.is_file() else {}
        return {**done, "error": f"timed out after {limit:.0f} s (its time box); the "
                "figures beside this are what it had finished",
                "seconds": round(time.monotonic() - t0, 1)}
    if fragment.is_file():
        result = json.loads(fragment.read_text())
    else:
        why = f"signal {signal.Signals(-rc).name}" if rc < 0 else f"code {rc}"
        result = {"error": f"its process ended with {why} before writing a result (see the log)"}
    result["seconds"] = round(time.monotonic() - t0, 1)
    return result


def summarise(stages: dict[str, Any]) -> dict[str, Any]:
    """The headline figures, each taken from a stage's own numbers."""
    out: dict[str, Any] = {}
    engine = stages.get("engine", {})
    for provider in ("cpu", "cuda"):
        row = engine.get(provider, {})
        for key, value in row.items():
            if key.startswith("B="):
                out[f"engine_{provider}_{key}_requests_per_s"] = value["requests_per_s"]
    out.update({f"engine_cuda_over_cpu_{k}": v
                for k, v in engine.get("cuda_over_cpu_requests_per_s", {}).items()})
    parity = stages.get("parity", {})
    if "identical_order_share" in parity:
        out["parity_identical_order_share"] = parity["identical_order_share"]
        out["parity_max_abs_score_diff"] = parity["max_abs_score_diff_common_items"]
    for model in ("sasrec", "seater"):
        rates = {d: stages.get(f"train_{d}", {}).get(model, {}).get("examples_per_s")
                 for d in ("cuda", "cpu")}
        for d, rate in rates.items():
            if rate:
                out[f"train_{model}_{d}_examples_per_s"] = rate
        if rates["cuda"] and rates["cpu"]:
            out[f"train_{model}_cuda_over_cpu"] = round(rates["cuda"] / rates["cpu"], 2)
    return out


def read_notes(path: str | None) -> dict[str, str]:
    """The install script's ``key=value`` lines (what it installed, from where)."""
    if not path or not Path(path).is_file():
        return {}
    lines = Path(path).read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


def write_report(report: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=2, default=str))
    tmp.replace(out)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="reports/bench/gpu.json")
    parser.add_argument("--work", default=str(ROOT / "runs" / "gpu_check"),
                        help="scratch folder: stage results, training runs, bundles")
    parser.add_argument("--budget-s", type=float, default=420.0,
                        help="all stages together; each also has its own time box")
    parser.add_argument("--dry-run", action="store_true",
                        help="tiny sizes: the whole path in seconds, CUDA stages skipped "
                             "without CUDA")
    parser.add_argument("--timing-bundle", default="",
                        help="SEATER bundle for the engine stage (default: the Beauty-shaped one)")
    parser.add_argument("--commit", default="unknown",
                        help="recorded when the working tree is a copy without .git")
    parser.add_argument("--install-notes", help="key=value lines from gpu_check.sh")
    parser.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    work = Path(args.work)
    if args.stage:
        return run_child(args.stage, work)
    from benchmarks.engine import footer, header

    start = time.monotonic()
    work.mkdir(parents=True, exist_ok=True)
    cfg = CheckConfig.dry(str(work)) if args.dry_run else CheckConfig(work=str(work))
    cfg = replace(cfg, timing_bundle=args.timing_bundle)
    report = header("benchmarks.gpu_check", argv, max_load=0.5)
    if report["commit"] == "unknown":
        report["commit"] = args.commit
    report.update({"dry_run": args.dry_run, "budget_s": args.budget_s,
                   "install": read_notes(args.install_notes), "config": asdict(cfg),
                   "stages": {}})
    out = Path(args.out)
    for name in STAGES:
        (work / "context.json").write_text(json.dumps(
            {"config": asdict(cfg), "stages": report["stages"]}, default=str))
        report["stages"][name] = run_stage(name, work, start + args.budget_s)
        write_report(report, out)
    report["summary"] = summarise(report["stages"])
    footer(report)
    write_report(report, out)
    failed = [name for name, stage in report["stages"].items()
              if not str(stage.get("error", "skipped")).startswith("skipped")]
    for name, stage in report["stages"].items():
        print(f"[gpu_check] {name:<12} {stage.get('error', 'ok')} ({stage.get('seconds')} s)")
    for key, value in report["summary"].items():
        print(f"[gpu_check] {key} = {value}")
    print(f"wrote {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
