"""The scale benchmark on a tiny catalogue: the JSON has the promised fields, sane values."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks import scale

pytest.importorskip("faiss", reason="the scale benchmark's ANN baseline: pip install -e '.[bench]'")


def test_recall_counts_the_shared_items():
    truth = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    found = np.array([[4, 3, 9, 9], [5, 6, 7, 8]])
    assert scale.recall_at(found, truth) == pytest.approx((2 / 4 + 4 / 4) / 2)


def test_nlist_is_a_power_of_two_near_four_sqrt_n():
    assert scale.nlist_for(1_000_000) == 4096  # 4 * 1000 = 4000
    assert scale.nlist_for(100) == 32  # 4 * 10 = 40, nearest power of two 32
    assert scale.nlist_for(4) == 16  # the floor
    assert all(n & (n - 1) == 0 for n in map(scale.nlist_for, (12_101, 100_000, 10**7)))


def test_a_size_that_would_overrun_the_budget_is_skipped_with_its_estimate():
    done = [{"n_items": 1000, "seconds": 60.0}]
    why = scale.cannot_run(100_000, done, budget_s=600, elapsed_s=100, available_mb=None)
    assert why is not None and "~100 min" in why  # 60 s * 100 = 100 min
    assert scale.cannot_run(2000, done, budget_s=600, elapsed_s=100, available_mb=None) is None


def test_a_size_that_would_not_fit_in_memory_is_skipped_with_its_estimate():
    one = [{"n_items": 1000, "seconds": 1.0, "peak_rss_mb": 530.0, "peak_rss_mb_grown": 30.0}]
    why = scale.cannot_run(100_000, one, budget_s=1e9, elapsed_s=0, available_mb=2000)
    assert why is not None and why.startswith("memory") and "~3,000 MB" in why  # 30 MB * 100
    assert scale.cannot_run(50_000, one, budget_s=1e9, elapsed_s=0, available_mb=2000) is None
    # two sizes: the slope between them, not the first size's growth (imports included)
    two = [*one, {"n_items": 3000, "seconds": 3.0, "peak_rss_mb": 550.0,
                  "peak_rss_mb_grown": 20.0}]
    assert scale.memory_per_item_mb(two) == pytest.approx(20.0 / 2000)
    assert scale.cannot_run(150_000, two, budget_s=1e9, elapsed_s=0, available_mb=2000) is None
    why = scale.cannot_run(300_000, two, budget_s=1e9, elapsed_s=0, available_mb=2000)
    assert why is not None and "~3,000 MB" in why  # 0.01 MB per item * 300,000


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("scale") / "scale.json"
    rc = scale.main(["--sizes", "1500,10000000", "--quick", "--recall-queries", "40",
                     "--out", str(out)])
    assert rc == 0
    return json.loads(out.read_text())


def test_report_records_where_and_how_it_ran(report):
    assert report["command"].startswith("python -m benchmarks.scale --sizes 1500,10000000")
    assert report["commit"] and report["machine"]["cpu_count"] >= 1
    for when in ("at_start", "at_end"):
        assert len(report["load"][f"load_average_{when}"]) == 3
        assert 0 <= report["load"][f"busy_cores_{when}"] <= report["machine"]["cpu_count"]
        for proc in report["load"][f"other_busy_processes_{when}"]:
            assert proc["cores"] >= 0.1 and proc["command"]
    assert "busy_cores" in report["sizes"][0]["machine_activity_before_latency"]
    assert report["threads"]["threads"] == 1 and report["threads"]["faiss_omp"] == 1
    assert report["threads"]["onnxruntime_intra_op"] == 1


def test_every_system_is_measured_with_consistent_figures(report):
    size = report["sizes"][0]
    assert size["n_items"] == 1500 and size["build"]["n_nodes"] > 1500
    for bundle in size["bundle_bytes"].values():
        assert bundle["total"] == sum(v for k, v in bundle.items() if k != "total") > 0
    for load in size["load"].values():
        assert load["seconds"] > 0 and load["rss_mb"] >= load["rss_mb_before_load"] > 0
    assert size["peak_rss_mb"] >= size["peak_rss_mb_grown"] >= 0
    faiss = size["faiss"]
    for name in scale.QUERY_SETS:
        tuned = faiss[name]["sweep"][-1]  # the chosen nprobe, on the tuning queries
        assert tuned["nprobe"] == faiss[name]["nprobe"]
        assert tuned["recall@10"] >= faiss["target_recall@10"] or tuned["nprobe"] == faiss["nlist"]
        assert 0 <= faiss[name]["recall@10"] <= 1
    for b in scale.BATCHES:
        lat = size["latency"][f"B={b}"]
        assert set(lat) == {"seater", "dense_bruteforce", "faiss", "faiss_in_distribution_nprobe"}
        for t in lat.values():
            assert 0 < t["median_ms"] <= t["p95_ms"]
            assert t["throughput_per_s"] == pytest.approx(b / t["median_ms"] * 1e3, rel=1e-2)


def test_summary_ratios_are_the_throughput_quotients(report):
    lat = report["sizes"][0]["latency"]["B=64"]
    summary = report["summary"]["1500"]
    want = lat["seater"]["throughput_per_s"] / lat["dense_bruteforce"]["throughput_per_s"]
    assert summary["seater_over_dense_bruteforce_b64"] == pytest.approx(want, abs=0.01)
    want = lat["seater"]["throughput_per_s"] / lat["faiss"]["throughput_per_s"]
    assert summary["seater_over_faiss_b64"] == pytest.approx(want, abs=0.01)


def test_a_catalogue_beyond_the_budget_is_skipped_not_faked(report):
    big = report["sizes"][1]
    assert big["n_items"] == 10_000_000 and "latency" not in big
    assert big["skipped"].startswith("time: the 1,500-item size took")
    assert "10000000" not in report["summary"]
