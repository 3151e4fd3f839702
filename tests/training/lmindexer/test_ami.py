"""AMI of ID prefixes against categories (LMIndexer Table 1) and the source comparison."""

from __future__ import annotations

import json

import numpy as np
import pytest

from training.data.dataset import ItemText
from training.lmindexer.ami import (
    ami,
    ami_table,
    category_labels,
    distinctive_words,
    first_varying_level,
    neighbour_agreement,
    prefix_clusters,
)
from training.lmindexer.compare import id_sources, seater_comparison


def catalogue(n: int = 600, seed: int = 0) -> tuple[ItemText, np.ndarray, np.ndarray]:
    """Every path starts with "Beauty"; top = level 1 (3 values), sub = level 2 (2 each)."""
    rng = np.random.default_rng(seed)
    top = rng.integers(3, size=n)
    sub = rng.integers(2, size=n)
    cats = [[["Beauty", f"T{t}", f"S{s}"]] for t, s in zip(top, sub, strict=True)]
    cats[0] = []  # unknown category: left out
    return ItemText(title=[f"item {i}" for i in range(n)], categories=cats), top, sub


def test_first_varying_level_skips_the_shared_root():
    text, _, _ = catalogue()
    assert first_varying_level(text) == 1
    assert category_labels(text, 2)[1].startswith("Beauty > T")
    assert category_labels(text, 1)[0] == ""
    with pytest.raises(ValueError, match="no category level"):
        first_varying_level(ItemText(["a", "b"], [[["X"]], [["X"]]]))


def test_ami_is_one_for_codes_equal_to_the_category_and_near_zero_for_random():
    text, top, sub = catalogue(3000)
    labels = category_labels(text, 1)
    score, used = ami(top, labels)
    assert score == pytest.approx(1.0) and used == 2999
    rng = np.random.default_rng(1)
    assert abs(ami(rng.integers(16, size=3000), labels)[0]) < 0.01
    # a code that refines the category (more clusters, each inside one category) is < 1
    refined = top * 5 + rng.integers(5, size=3000)
    assert 0.3 < ami(refined, labels)[0] < 1.0


def test_ami_table_uses_prefixes_of_the_codes():
    text, top, sub = catalogue(1200)
    n = len(top)
    perfect = np.stack([top, sub, np.arange(n) % 16], axis=1)
    rng = np.random.default_rng(0)
    noise = rng.integers(16, size=(n, 3))
    table = ami_table({"perfect": perfect, "random": noise}, text)
    assert table["category_levels"]["top"] == 1
    assert table["n_categories"] == {"top": 3, "sub": 6, "leaf": 6}
    head = table["sources"]["perfect"]["headline"]
    assert head["level1_vs_top"] == pytest.approx(1.0)
    assert head["level2_vs_sub"] == pytest.approx(1.0)  # (top, sub) prefix = the sub-category
    assert abs(table["sources"]["random"]["headline"]["level1_vs_top"]) < 0.02
    assert len(np.unique(prefix_clusters(perfect, 2))) == 6


def test_id_sources_builds_trees_and_notes_what_is_missing(tmp_path):
    rng = np.random.default_rng(0)
    semantic = rng.integers(4, size=(70, 3))
    sources, notes = id_sources(semantic, tmp_path / "missing.npy",
                                rng.normal(size=(70, 8)).astype(np.float32), k=4, seed=0)
    assert set(sources) == {"semantic", "random", "balanced_text"}
    assert "balanced_sasrec" in notes and "not found" in notes["balanced_sasrec"]
    assert sources["random"].shape == (70, 4)  # ceil(log_4 70) = 4 levels
    np.save(tmp_path / "emb.npy", rng.normal(size=(70, 8)).astype(np.float32))
    sources, notes = id_sources(semantic, tmp_path / "emb.npy", None, k=4, seed=0)
    assert "balanced_sasrec" in sources and not notes


def test_seater_comparison_pairs_semantic_and_balanced_runs(tmp_path):
    (tmp_path / "quality").mkdir()
    codes = tmp_path / "runs" / "semantic-title-s0" / "codes.npy"
    codes.parent.mkdir(parents=True)
    (codes.parent / "config.json").write_text(json.dumps({"text": {"fields": "title"}}))

    def run(ids, r5, seed=0):
        tag = f"-s{seed}" if seed else ""
        return {"key": f"seater/loo/{ids}-k16-d64-beam50-default{tag}", "seed": seed,
                "metrics": {"test": {"recall@5": r5, "ndcg@5": 0.6 * r5, "recall@10": 2 * r5,
                                     "ndcg@10": r5}},
                "config": {"tree": {"codes": str(codes) if ids.startswith("semantic") else ""}}}
    # a title-labelled semantic key pairs with the balanced row of the same settings and
    # seed; an unpaired balanced seed (s2) is left out
    data = {"dataset": "beauty", "runs": [
        run("semantic-title", 0.05), run("balanced", 0.052),
        run("semantic-title", 0.04, seed=1), run("balanced", 0.050, seed=1),
        run("balanced", 0.9, seed=2)]}
    (tmp_path / "quality" / "beauty.json").write_text(json.dumps(data))
    out = seater_comparison("beauty", tmp_path)
    pair = out["pairs"][0]
    assert pair["codes"] == str(codes) and pair["text_fields"] == "title"
    assert pair["balanced"] == "seater/loo/balanced-k16-d64-beam50-default"
    assert pair["test"]["recall@5"]["ratio"] == pytest.approx(0.05 / 0.052, abs=1e-4)
    assert pair["within_10pct_of_balanced"] and pair["above_lmindexer"]
    second = out["pairs"][1]
    assert second["seed"] == 1 and second["balanced"].endswith("-default-s1")
    assert not second["within_10pct_of_balanced"]  # .04 / .05 = 0.8
    (group,) = out["seeds"]
    assert group["seeds"] == [0, 1] and group["text_fields"] == "title"
    r5 = group["test"]["recall@5"]
    assert r5["semantic"] == pytest.approx(0.045) and r5["balanced"] == pytest.approx(0.051)
    assert r5["semantic_std"] == pytest.approx(np.std([0.05, 0.04], ddof=1), abs=1e-5)
    assert r5["ratio"] == pytest.approx(0.045 / 0.051, abs=1e-4)
    assert not group["within_10pct_of_balanced"] and group["above_lmindexer"]  # .045 > .0415
    assert seater_comparison("sports", tmp_path)["status"].endswith("no SEATER runs reported yet")


def test_neighbour_agreement_judges_queries_by_the_other_items_in_their_node():
    codes = np.array([[0], [0], [0], [1], [1], [2]])
    labels = ["a", "a", "b", "b", "b", "a"]
    query = np.array([False, False, True, False, True, True])
    # item 2 (b) sits with two a's: disagrees; item 4 (b) with a b: agrees; item 5 alone
    assert neighbour_agreement(codes, labels, query, 1) == (0.5, 2)
    assert np.isnan(neighbour_agreement(codes, labels, np.zeros(6, bool), 1)[0])


def test_semantic_seater_rows_are_keyed_by_the_codes_text_fields(tmp_path):
    from dataclasses import replace

    from training.seater.pipeline import SeaterRun, TreeParams, variant_name

    def key(fields):
        folder = tmp_path / fields
        folder.mkdir()
        if fields != "missing":
            (folder / "config.json").write_text(json.dumps({"text": {"fields": fields}}))
        cfg = replace(SeaterRun(), tree=TreeParams(ids="semantic",
                                                   codes=str(folder / "codes.npy")))
        return variant_name(cfg)

    assert key("title").startswith("semantic-title-k16-")
    assert key("title+categories").startswith("semantic-title-categories-k16-")
    assert key("missing").startswith("semantic-k16-")  # folder not here: unlabelled
    assert variant_name(SeaterRun()).startswith("balanced-k16-")


def test_every_text_setting_of_a_semantic_key_names_the_same_balanced_twin():
    from training.lmindexer.compare import SEMANTIC_KEY

    for ids in ("semantic", "semantic-title", "semantic-title-categories"):
        key = f"seater/loo/{ids}-k16-d64-beam50-default-s1"
        assert key[SEMANTIC_KEY.match(key).end():] == "k16-d64-beam50-default-s1", ids
    assert SEMANTIC_KEY.match("seater/loo/balanced-k16-d64-beam50-default") is None


def test_distinctive_words_rank_by_lift_within_each_label():
    labels = ["A"] * 4 + ["B"] * 4 + [""] * 2
    texts = ["fish hook red", "fish rod red", "fish hook", "fish lure red",
             "bike tire red", "bike chain", "bike tire", "bike bell red",
             "red fish", "red bike"]
    words = distinctive_words(labels, texts, n_words=2)
    assert list(words) == ["A", "B"]  # '' is not a label; ties in size go by name
    # fish: 4/4 of A vs 5/10 overall = lift 2; hook: 2/4, under the floor of 3 items;
    # red: 3/4 vs 6/10 = 1.25
    assert words["A"] == {"items": 4, "words": ["fish", "red"]}
    # in B only bike reaches 3 items (red and tire are in 2)
    assert words["B"] == {"items": 4, "words": ["bike"]}
