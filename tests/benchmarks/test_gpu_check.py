"""The GPU check: its comparisons on hand-made answers, its time boxes, and a dry run of
the whole script (``gpu_check.sh run --dry-run``) on this CPU, whose JSON must hold every
promised field with CUDA stages either measured or skipped with the reason."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from benchmarks import gpu_check
from benchmarks.common import ROOT
from service.model.engine import SearchHit

SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"


def hit(items: list[int], scores: list[float]) -> SearchHit:
    return SearchHit(np.array(items, np.int64), np.array(scores, np.float32),
                     np.zeros((len(items), 0), np.int64))


def test_the_script_parses_and_refuses_an_unknown_verb():
    assert subprocess.run(["bash", "-n", str(SCRIPT)]).returncode == 0
    done = subprocess.run(["bash", str(SCRIPT), "bogus"], capture_output=True, text=True)
    assert done.returncode == 2 and "usage: bash benchmarks/gpu_check.sh" in done.stderr


def test_main_parses_only_the_argv_it_is_given(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["x", "--not-an-option"])
    with pytest.raises(SystemExit) as stop:
        gpu_check.main(["--help"])
    assert stop.value.code == 0 and "python -m benchmarks.gpu_check" in capsys.readouterr().out


def test_parity_counts_orders_sets_and_the_gap_where_lists_part():
    cpu = [hit([1, 2, 3], [-1.0, -2.0, -3.0]),
           hit([4, 5, 6], [-1.0, -1.00001, -3.0]),  # a near-tie ...
           hit([7, 8, 9], [-1.0, -2.0, -3.0])]
    cuda = [hit([1, 2, 3], [-1.0, -2.0, -3.0]),
            hit([4, 6, 5], [-1.0, -1.00002, -1.00003]),  # ... tipped; 5 and 6 rescored
            hit([7, 8, 10], [-1.0, -2.5, -3.0])]  # another item at the tail
    out = gpu_check.compare_hits(cpu, cuda)
    assert out["requests"] == 3
    assert out["identical_order"] == 1 and out["identical_set"] == 2
    assert out["identical_order_share"] == pytest.approx(1 / 3, abs=1e-4)
    # common items: 5 moved by 2e-5, 6 by ~2.0 (-3.0 -> -1.00002), 8 by 0.5
    assert out["max_abs_score_diff_common_items"] == pytest.approx(2.0, abs=1e-4)
    first = out["differing"]
    assert [(d["request"], d["rank"]) for d in first] == [(1, 1), (2, 2)]
    assert first[0]["score_gap_at_rank"] == pytest.approx(1e-5, abs=2e-6)
    assert first[1]["score_gap_at_rank"] == pytest.approx(0.0, abs=1e-6)  # -3.0 both
    assert out["max_score_gap_at_first_difference"] == pytest.approx(1e-5, abs=2e-6)


def test_a_shorter_list_parts_where_it_ends():
    out = gpu_check.compare_hits([hit([1, 2], [-1.0, -2.0])], [hit([1], [-1.0])])
    assert out["differing"][0]["rank"] == 1
    assert out["differing"][0]["score_gap_at_rank"] is None  # the CUDA list ended
    assert out["identical_set"] == 0


def test_summary_ratios_come_from_the_stages_figures():
    stages = {
        "engine": {"cpu": {"B=1": {"requests_per_s": 100.0}},
                   "cuda": {"B=1": {"requests_per_s": 250.0}},
                   "cuda_over_cpu_requests_per_s": {"B=1": 2.5}},
        "parity": {"error": "skipped: no CUDA provider"},
        "train_cuda": {"sasrec": {"examples_per_s": 2000.0}, "seater": {"error": "boom"}},
        "train_cpu": {"sasrec": {"examples_per_s": 500.0}, "seater": {"examples_per_s": 80.0}},
    }
    out = gpu_check.summarise(stages)
    assert out["engine_cpu_B=1_requests_per_s"] == 100.0
    assert out["engine_cuda_B=1_requests_per_s"] == 250.0
    assert out["engine_cuda_over_cpu_B=1"] == 2.5
    assert out["train_sasrec_cuda_over_cpu"] == 4.0
    assert out["train_seater_cpu_examples_per_s"] == 80.0
    assert "train_seater_cuda_over_cpu" not in out and "parity_identical_order_share" not in out


def test_a_stage_without_budget_left_is_skipped_and_a_crashed_one_reported(tmp_path):
    out = gpu_check.run_stage("engine", tmp_path, deadline=time.monotonic() + 8)
    assert out["error"].startswith("skipped:") and "of the budget left" in out["error"]
    (tmp_path / "context.json").write_text("not json")  # the child dies before its result
    out = gpu_check.run_stage("environment", tmp_path, deadline=time.monotonic() + 60)
    assert out["error"] == ("its process ended with code 1 before writing a result "
                            "(see the log)")


def test_the_smoke_graph_agrees_with_numpy_on_the_cpu_provider():
    out = gpu_check.cuda_smoke("CPUExecutionProvider")
    assert out["providers"] == ["CPUExecutionProvider"]
    assert out["topk_indices_equal"] and out["max_abs_diff"] < 1e-5


@pytest.mark.slow
def test_a_stage_past_its_time_box_is_killed_with_its_commands_and_keeps_what_it_did(
        tmp_path, monkeypatch):
    from dataclasses import asdict

    cfg = gpu_check.CheckConfig.dry(str(tmp_path))
    (tmp_path / "context.json").write_text(json.dumps({"config": asdict(cfg), "stages": {}}))
    monkeypatch.setitem(gpu_check.TIME_BOX_S, "train_cpu", 12)  # two trainings and an export
    out = gpu_check.run_stage("train_cpu", tmp_path, deadline=time.monotonic() + 300)
    assert out["error"].startswith("timed out after 12 s (its time box)")
    assert out["seconds"] < 16
    for model in ("sasrec", "seater"):  # whichever finished before the kill was kept
        assert model not in out or out[model]["examples_per_s"] > 0
    time.sleep(0.5)
    assert processes_mentioning(str(tmp_path)) == []  # its training CLI went with it


def processes_mentioning(text: str) -> list[int]:
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if text in (proc / "cmdline").read_bytes().decode(errors="replace"):
                found.append(int(proc.name))
        except OSError:  # ended meanwhile
            continue
    return found


def test_install_notes_are_read_as_key_value_lines(tmp_path):
    notes = tmp_path / "install.txt"
    notes.write_text("deps=installed from .whl/deps\nonnxruntime_gpu=missing: a=b\n")
    assert gpu_check.read_notes(str(notes)) == {"deps": "installed from .whl/deps",
                                                "onnxruntime_gpu": "missing: a=b"}
    assert gpu_check.read_notes(str(tmp_path / "none.txt")) == {}


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory) -> tuple[dict, Path, subprocess.CompletedProcess]:
    base = tmp_path_factory.mktemp("gpu_check")
    (base / "out").mkdir()
    (base / "carry").mkdir()  # nothing carried: onnxruntime-gpu stays as it is here
    env = {**os.environ, "OUT": str(base / "out"), "SEATER_GPU_WORK": str(base / "work"),
           "SEATER_GPU_CARRY": str(base / "carry"), "SEATER_GPU_PYTHON": sys.executable,
           "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    done = subprocess.run(["bash", str(SCRIPT), "run", "--dry-run"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    report = json.loads((base / "out" / "gpu.json").read_text())
    return report, base, done


@pytest.mark.slow
def test_dry_run_records_where_what_and_how_it_ran(dry_run):
    report, base, done = dry_run
    assert done.returncode == 0, done.stdout[-3000:]
    assert report["dry_run"] is True and report["commit"] and report["machine"]["cpu_count"]
    assert report["command"].startswith("python -m benchmarks.gpu_check --out ")
    assert report["install"]["deps"] == "already importable"
    assert report["install"]["onnxruntime_gpu"] in (
        "already installed", f"missing: none installed and no {base / 'carry'}/ort-*/ part carried")
    assert (base / "out" / "gpu_check.log").read_text().count("[gpu_check] stage ") == 5
    assert list(report["stages"]) == list(gpu_check.STAGES)
    env = report["stages"]["environment"]
    assert "CPUExecutionProvider" in env["onnxruntime"]["providers"]
    assert isinstance(env["torch"]["cuda_available"], bool)


@pytest.mark.slow
def test_dry_run_times_the_engine_at_every_batch_size_or_says_why_not(dry_run):
    report, _, _ = dry_run
    engine = report["stages"]["engine"]
    assert engine["bundle"]["n_items"] > 0 and engine["beam"] == 50 and engine["n"] == 10
    for provider in ("cpu", "cuda"):
        row = engine[provider]
        if "error" in row:
            assert provider == "cuda" and row["error"].startswith("skipped: no CUDA provider")
            assert report["stages"]["parity"]["error"] == row["error"]
            continue
        assert row["device"] == provider
        for batch in (1, 64, 256):
            timed = row[f"B={batch}"]
            median = timed["end_to_end"]["median_ms"]
            assert 0 < timed["encode"]["median_ms"] < median
            assert timed["requests_per_s"] == pytest.approx(batch / median * 1e3, rel=1e-3)
            assert [s["prefix_t"] for s in timed["decoder_steps"]] == list(
                range(1, len(timed["decoder_steps"]) + 1))
    assert report["summary"]["engine_cpu_B=256_requests_per_s"] == \
        engine["cpu"]["B=256"]["requests_per_s"]


@pytest.mark.slow
def test_dry_run_trains_one_capped_epoch_of_each_model_and_exports_it(dry_run):
    report, _, _ = dry_run
    gpu = report["stages"]["train_cuda"]
    cpu = report["stages"]["train_cpu"]
    if "error" in gpu:
        assert gpu["error"].startswith("skipped: torch ")
        assert (Path(cpu["bundle"]) / "manifest.json").is_file()  # the CPU run exported
    for model in ("sasrec", "seater"):
        run = cpu[model]
        assert run["device"] == "cpu" and run["epochs_run"] == 1
        assert run["examples_per_s"] > 0 and run["command"].startswith(f"seater train {model}")
        assert "train.max_batches=2" in run["command"]
        assert report["summary"][f"train_{model}_cpu_examples_per_s"] == run["examples_per_s"]


def test_a_failing_training_command_is_reported_with_what_it_said(tmp_path):
    from dataclasses import replace

    cfg = replace(gpu_check.CheckConfig.dry(str(tmp_path)), dataset="no-such-dataset")
    saved: list[dict] = []
    with pytest.raises(gpu_check.StageError) as failed:
        gpu_check.train_both(cfg, "cpu", 2, False, saved.append)
    assert "`seater train seater -d no-such-dataset" in str(failed.value)
    assert "exited with 2" in str(failed.value) and "no-such-dataset" in str(failed.value)
    sasrec = saved[0]["sasrec"]["error"]  # kept before SEATER was tried
    assert sasrec.startswith("`seater train sasrec -d no-such-dataset")
    assert "exited with 2" in sasrec
