"""The ablation report's computed findings: labels and gaps on hand-made rows."""

from __future__ import annotations

from benchmarks.ablations import findings, label


def row(kind: str, variant: str, r10: float, n10: float, epochs: int = 200,
        refit: bool = False, **config) -> dict:
    """A report entry; ``config`` holds the sections the label reads (model, tree, losses).

    The variant name is kept realistic but the label must not depend on it."""
    return {"model": kind, "variant": variant, "key": f"{kind}/loo/{variant}",
            "protocol": {"protocol": "loo", "refit_on_validation": refit},
            "config": {"train": {"epochs": epochs}, **config},
            "metrics": {"test": {"recall@10": r10, "ndcg@10": n10}}}


SASREC = {"model": {"d_model": 64, "negatives": "sequence", "n_negatives": 256}}
SEATER = {"tree": {"ids": "balanced", "k": 16},
          "losses": {"lambda_align": 0.05, "lambda_rank": 0.05}}


def test_labels_come_from_the_config_not_the_variant_name():
    assert label(row("sasrec", "ss-d64-L1-h1-len50-neg256-sequence", 0, 0, **SASREC)) == "SASRec"
    wide = {"model": {**SASREC["model"], "d_model": 256}}
    assert label(row("sasrec", "x", 0, 0, refit=True, **wide)) == "SASRec d=256 (refit)"
    rectools = {"model": {"d_model": 64, "init": "xavier", "negatives": "batch",
                          "n_negatives": 4096}}
    assert label(row("sasrec", "x", 0, 0, refit=True, **rectools)) == (
        "SASRec RecTools-style 4096 shared negatives (refit)")
    no_rank = {**SEATER, "losses": {"lambda_align": 0.05, "lambda_rank": 0.0}}
    assert label(row("seater", "x", 0, 0, epochs=4, **no_rank)) == "SEATER balanced no-rank *"
    gen_only = {**SEATER, "losses": {"lambda_align": 0.0, "lambda_rank": 0.0,
                                     "rank_cosine_scale": 5.0}}  # no rank loss: no cosine
    assert label(row("seater", "x", 0, 0, epochs=4, **gen_only)) == "SEATER balanced gen-only *"
    cosine = {**SEATER, "losses": {**SEATER["losses"], "rank_cosine_scale": 5.0}}
    assert label(row("seater", "x", 0, 0, epochs=4, **cosine)) == (
        "SEATER balanced cosine rank score x5 *")
    distilled = {**SEATER, "losses": {**SEATER["losses"], "lambda_distill": 1.0}}
    assert label(row("seater", "x", 0, 0, **distilled)) == "SEATER balanced distilled x1"
    warm = {**SEATER, "losses": {**SEATER["losses"], "lambda_distill": 0.5,
                                 "distill_temperature": 2.0}}
    assert label(row("seater", "x", 0, 0, **warm)) == "SEATER balanced distilled x0.5 T=2"
    top = {**SEATER, "losses": {**SEATER["losses"], "lambda_distill": 1.0, "distill_top": 4}}
    assert label(row("seater", "x", 0, 0, **top)) == (
        "SEATER balanced distilled x1 +top 4 paths")
    k8 = {"tree": {"ids": "kmeans", "k": 8}, "losses": SEATER["losses"],
          "init_from_sasrec": False}
    assert label(row("seater", "x", 0, 0, refit=True, **k8)) == (
        "SEATER kmeans k=8 scratch (refit)")
    semantic = {"tree": {"ids": "semantic", "k": 16}, "losses": SEATER["losses"]}
    # text fields are recorded only in the variant name, so they are read from there
    assert label(row("seater", "semantic-title-categories-k16-d64", 0, 0, **semantic)) == (
        "SEATER semantic (title+categories)")
    assert label(row("seater", "semantic-title-k16-d64", 0, 0, **semantic)) == (
        "SEATER semantic (title)")
    assert label(row("seater", "semantic-k16-d64", 0, 0, **semantic)) == "SEATER semantic"


def test_a_beam_re_evaluation_is_labelled_with_its_runs_config(tmp_path, monkeypatch):
    import json

    from benchmarks import ablations

    trained = row("seater", "balanced-k8-d64-beam50-refit", 0.07, 0.04, refit=True,
                  **{**SEATER, "tree": {"ids": "balanced", "k": 8}})
    beam = {k: v for k, v in trained.items() if k != "config"}
    beam.update(key=trained["key"] + "@beam10", beam_size=10,
                variant=trained["variant"] + " evaluated at beam 10")
    (tmp_path / "quality").mkdir()
    (tmp_path / "quality" / "beauty.json").write_text(json.dumps({"runs": [trained, beam]}))
    monkeypatch.setattr(ablations, "REPORTS", tmp_path)
    labels = [label(r) for r in ablations.load("beauty")]
    assert labels == ["SEATER balanced k=8 (refit)", "SEATER balanced k=8 (refit) beam 10"]


def test_gaps_are_relative_to_the_named_baseline():
    runs = [
        row("sasrec", "ss-d64-L1-h1-len50-neg256-sequence", 0.0800, 0.0500, **SASREC),
        row("seater", "balanced-k16-d64-beam50", 0.0760, 0.0510, **SEATER),
        row("seater", "balanced-k16-d64-beam50-ep4", 0.0700, 0.0400, epochs=4, **SEATER),
        row("seater", "balanced-k16-d64-beam50-gen-only-ep4", 0.0770, 0.0380, epochs=4,
            tree=SEATER["tree"], losses={"lambda_align": 0.0, "lambda_rank": 0.0}),
    ]
    text = findings(runs, "beauty")
    # 0.0760 / 0.0800 - 1 = -5.0 %, 0.0510 / 0.0500 - 1 = +2.0 %
    assert "recall@10 0.0760 vs 0.0800 (-5.0%), ndcg@10 0.0510 vs 0.0500 (+2.0%)" in text
    # TIGER beauty .0648 / .0384: 0.0760 / 0.0648 - 1 = +17.3 %, 0.0510 / 0.0384 - 1 = +32.8 %
    assert "recall@10 +17.3%, ndcg@10 +32.8%" in text
    # budgeted gen-only against the budgeted three-loss row: +10.0 % / -5.0 %
    assert "SEATER balanced gen-only +10.0% / -5.0%" in text
    assert "What these runs tried" in text


def test_seater_is_also_compared_with_the_strongest_sasrec():
    runs = [
        row("sasrec", "ss-d64-L1-h1-len50-neg256-sequence", 0.0800, 0.0500, **SASREC),
        row("sasrec", "ss-d64-L1-h1-len50-neg256-sequence-xavier-itemdrop0.2", 0.0900, 0.0540,
            model={**SASREC["model"], "init": "xavier"}),
        row("sasrec", "ss-d256-L1-h1-len50-neg256-sequence", 0.0700, 0.0400,
            model={**SASREC["model"], "d_model": 256}),
        row("seater", "balanced-k16-d64-beam50", 0.0720, 0.0510, **SEATER),
    ]
    text = findings(runs, "beauty")
    # 0.0720 / 0.0900 - 1 = -20.0 %, 0.0510 / 0.0540 - 1 = -5.6 %
    assert ("SEATER balanced vs SASRec RecTools-style: recall@10 0.0720 vs 0.0900 (-20.0%), "
            "ndcg@10 0.0510 vs 0.0540 (-5.6%)") in text
    assert "SEATER balanced vs SASRec: recall@10 0.0720 vs 0.0800 (-10.0%)" in text
    assert "d=256" not in text  # neither the tree's source nor the strongest


def test_no_pairs_no_findings():
    # a dataset without published anchors: a lone SASRec row has nothing to be read against
    assert findings([row("sasrec", "ss-d64-L1-h1-len50-neg256-sequence", 0.08, 0.05, **SASREC)],
                    "ml-1m") == ""


def test_seeds_of_one_configuration_give_mean_and_std_against_the_strongest_sasrec():
    def seeded(seed: int, r10: float, n10: float, epochs: int = 200) -> dict:
        cfg = {**SEATER, "preset": "default", "train": {"epochs": epochs, "seed": seed}}
        entry = row("seater", f"s{seed}", r10, n10, **cfg)
        entry["config"] = cfg
        entry["sasrec_run"] = "runs/beauty/sasrec-tuned"
        return entry

    runs = [row("sasrec", "a", 0.0800, 0.0500, **SASREC),
            seeded(0, 0.0700, 0.0400), seeded(1, 0.0720, 0.0420), seeded(2, 0.0740, 0.0440)]
    assert label(runs[2]) == "SEATER balanced preset default on sasrec-tuned seed 1"
    text = findings(runs, "beauty")
    # mean .0720, sample std .0020; .0720 / .0800 - 1 = -10.0%
    assert ("SEATER balanced preset default on sasrec-tuned, 3 seeds: recall@10 0.0720 ± "
            "0.0020, ndcg@10 0.0420 ± 0.0020; vs SASRec: recall@10 -10.0%, ndcg@10 -16.0%"
            in text)
    # a budgeted configuration groups its seeds too, named with its budget; a lone seed
    # of another budget is not a group
    runs += [seeded(0, 0.0900, 0.0600, epochs=55), seeded(1, 0.0880, 0.0580, epochs=55),
             seeded(0, 0.0500, 0.0300, epochs=4)]
    text = findings(runs, "beauty")
    assert ("SEATER balanced preset default on sasrec-tuned (55 epochs) *, 2 seeds: recall@10 "
            "0.0890 ± 0.0014, ndcg@10 0.0590 ± 0.0014; vs SASRec: recall@10 +11.2%, "
            "ndcg@10 +18.0%" in text)
    assert "(4 epochs) *" not in text


def test_a_seeded_sasrec_bar_is_its_seeds_mean_and_the_gap_gets_a_verdict():
    def sasrec(seed: int, r10: float, n10: float, **model) -> dict:
        return row("sasrec", f"s{seed}", r10, n10, model={**SASREC["model"], **model},
                   train={"epochs": 200, "seed": seed})

    def seater(seed: int, r10: float, n10: float) -> dict:
        return row("seater", f"s{seed}", r10, n10, **SEATER, train={"epochs": 200, "seed": seed})

    seeds = [sasrec(0, 0.0800, 0.0500), sasrec(1, 0.0820, 0.0500), sasrec(2, 0.0840, 0.0500)]
    assert [label(r) for r in seeds] == ["SASRec", "SASRec seed 1", "SASRec seed 2"]
    students = [seater(0, 0.0900, 0.0500), seater(1, 0.0920, 0.0520), seater(2, 0.0940, 0.0540)]
    text = findings(seeds + students, "beauty")
    assert "- SASRec, 3 seeds: recall@10 0.0820 ± 0.0020, ndcg@10 0.0500 ± 0.0000." in text
    # .0920 / .0820 - 1 = +12.2%; Welch half-width 4.303 * sqrt(2 * .002^2 / 3) = .0070 < .0100
    assert ("- SEATER balanced, 3 seeds: recall@10 0.0920 ± 0.0020, ndcg@10 0.0520 ± 0.0020; "
            "vs SASRec (3 seeds, mean): recall@10 +12.2% (above), ndcg@10 +4.0% "
            "(within the noise).") in text
    # the bar is the configuration with the best mean, not the luckiest seed: a single run
    # at .0830 beats the seeded mean .0820 though seed 2 reached .0840
    text = findings(seeds + students + [sasrec(0, 0.0830, 0.0400, init="xavier")], "beauty")
    assert "vs SASRec RecTools-style: recall@10 +10.8%, ndcg@10 +30.0%." in text
    assert "vs SASRec seed 2" not in text


def test_the_sasrec_bar_and_the_strongest_seater_are_read_against_the_published_anchors():
    def seeded(kind: str, seed: int, r10: float, n10: float, **config) -> dict:
        return row(kind, f"s{seed}", r10, n10, **config, train={"epochs": 200, "seed": seed})

    runs = [seeded("sasrec", 0, 0.0900, 0.0520, **SASREC),
            seeded("sasrec", 1, 0.0940, 0.0540, **SASREC),
            seeded("seater", 0, 0.0950, 0.0560, **SEATER),
            seeded("seater", 0, 0.0800, 0.0500, **{**SEATER, "tree": {"ids": "kmeans"}}),
            row("seater", "r", 0.2, 0.2, refit=True, **SEATER),  # refit: not comparable
            row("seater", "rb", 0.3, 0.3, epochs=55, refit=True, **SEATER)]  # nor budgeted
    text = findings(runs, "beauty")
    # SASRec mean .0920 / .0921 (SASRec+SS) - 1 = -0.1%, .0530 / .0531 - 1 = -0.2%
    assert ("- SASRec (2 seeds, mean) vs SASRec+SS (eSASRec study, published): recall@10 "
            "0.0920 vs 0.0921 (-0.1%), ndcg@10 0.0530 vs 0.0531 (-0.2%).") in text
    # best published per metric: R@10 eSASRec .0928, N@10 SASRec+SS .0531
    assert ("- Strongest SEATER configuration, SEATER balanced (1 seed), vs the best published "
            "figure of each metric (recall@10 eSASRec, ndcg@10 SASRec+SS): recall@10 0.0950 vs "
            "0.0928 (+2.4%), ndcg@10 0.0560 vs 0.0531 (+5.5%).") in text
    assert "published" not in findings(runs, "yelp")  # no anchors for it


def test_seeded_arms_are_compared_pairwise_with_a_verdict():
    from benchmarks.ablations import paired_arms

    def arm(align: float, seed: int, r10: float, n10: float, epochs: int = 4) -> dict:
        losses = {"lambda_align": align, "lambda_rank": 0.05}
        return row("seater", "x", r10, n10, epochs=epochs, preset="default",
                   tree=SEATER["tree"], losses=losses, train={"epochs": epochs, "seed": seed})

    runs = [arm(0.05, 0, 0.080, 0.0470), arm(0.0, 0, 0.070, 0.0471),
            arm(0.05, 1, 0.082, 0.0480), arm(0.0, 1, 0.071, 0.0470),
            arm(0.05, 2, 0.081, 0.0460), arm(0.0, 2, 0.072, 0.0469),
            arm(0.05, 0, 0.200, 0.1000, epochs=50)]  # another budget: not seed 0's pair
    (line,) = paired_arms(runs)
    # recall@10 differences .010, .011, .009: mean .010, std .001 -> helps;
    # ndcg@10 differences -.0001, +.0010, -.0009: within the noise
    assert line == ("- SEATER balanced preset default (4 epochs): full model minus no-align, "
                    "paired over seeds 0, 1, 2: recall@10 +0.0100 ± 0.0010 (helps); "
                    "ndcg@10 +0.0000 ± 0.0010 (within the noise).")
    assert paired_arms(runs[:2]) == []  # one seed: no comparison


def test_an_added_component_is_paired_with_the_runs_without_it():
    from benchmarks.ablations import paired_arms

    def distilled(top: int, seed: int, r10: float, n10: float) -> dict:
        losses = {"lambda_align": 0.05, "lambda_rank": 0.05, "lambda_distill": 1.0,
                  "distill_top": top}
        entry = row("seater", "x", r10, n10, epochs=55, preset="default",
                    tree=SEATER["tree"], losses=losses, train={"epochs": 55, "seed": seed})
        entry["sasrec_run"] = "runs/beauty/sasrec-tuned"
        return entry

    runs = [distilled(0, 0, 0.0883, 0.0546), distilled(4, 0, 0.0936, 0.0560),
            distilled(0, 1, 0.0893, 0.0537), distilled(4, 1, 0.0940, 0.0530),
            distilled(0, 2, 0.0888, 0.0545), distilled(4, 2, 0.0932, 0.0552),
            distilled(8, 0, 0.0950, 0.0570)]  # top 8: one seed, no line
    (line,) = paired_arms(runs)
    # recall@10 gains .0053, .0047, .0044: mean .0048, std .00046 -> helps;
    # ndcg@10 gains +.0014, -.0007, +.0007: mean .00047 -> within the noise
    assert line == ("- SEATER balanced distilled x1 preset default on sasrec-tuned (55 epochs):"
                    " +top 4 paths minus without, paired over seeds 0, 1, 2: recall@10 +0.0048"
                    " ± 0.0005 (helps); ndcg@10 +0.0005 ± 0.0011 (within the noise).")


def test_the_seater_protocol_is_compared_at_hr_recall_and_ndcg_at_20_and_50():
    from benchmarks.ablations import VIEWS, table

    def seater_row(kind: str, hr20: float, hr50: float, **config) -> dict:
        entry = row(kind, "x", 0.0, 0.0, **config)
        entry["protocol"]["protocol"] = "seater"
        entry["metrics"]["test"] = {"hr@20": hr20, "recall@20": hr20 / 2, "ndcg@20": 0.04,
                                    "hr@50": hr50, "recall@50": hr50 / 2, "ndcg@50": 0.05}
        return entry

    runs = [seater_row("sasrec", 0.2000, 0.3000, **SASREC),
            seater_row("seater", 0.2200, 0.2700, **SEATER)]
    view = VIEWS["seater"]
    text = findings(runs, "yelp", view)
    # .22 / .20 - 1 = +10.0 %, .27 / .30 - 1 = -10.0 %, halves keep the ratios
    assert ("SEATER balanced vs SASRec: hr@20 0.2200 vs 0.2000 (+10.0%), recall@20 0.1100 vs "
            "0.1000 (+10.0%), ndcg@20 0.0400 vs 0.0400 (+0.0%), hr@50 0.2700 vs 0.3000 "
            "(-10.0%), recall@50 0.1350 vs 0.1500 (-10.0%)") in text
    assert "TIGER" not in text + table(runs, "yelp", view)  # TIGER's figures are loo
    assert "| hr@20 | recall@20 | ndcg@20 | hr@50 | recall@50 | ndcg@50 |" in table(
        runs, "yelp", view)


def test_the_tree_oracle_is_summarised_for_its_protocol(tmp_path, monkeypatch):
    import json

    from benchmarks import ablations

    (tmp_path / "quality").mkdir()
    report = {"protocol": "loo", "sasrec_run": "runs/beauty/sasrec-tuned", "results": {
        "exhaustive": {"metrics": {"recall@10": 0.09, "ndcg@10": 0.05},
                       "share_of_exhaustive": {"recall@10": 1.0, "ndcg@10": 1.0}},
        "oracle_beam10": {"metrics": {"recall@10": 0.08, "ndcg@10": 0.05},
                          "share_of_exhaustive": {"recall@10": 0.889, "ndcg@10": 1.0}},
        "oracle_beam50": {"metrics": {"recall@10": 0.09, "ndcg@10": 0.05},
                          "share_of_exhaustive": {"recall@10": 1.0, "ndcg@10": 1.0},
                          "where_targets_went": {"lost_at_depth_1": 0.25,
                                                 "found_in_top10": 0.75}}}}
    (tmp_path / "quality" / "tree_oracle_beauty.json").write_text(json.dumps(report))
    monkeypatch.setattr(ablations, "REPORTS", tmp_path)
    (line,) = ablations.oracle_lines("beauty")
    assert line == ("- Tree oracle (tree_oracle_beauty.json), oracle beam50: recall@10 0.0900 "
                    "(100.0%), ndcg@10 0.0500 (100.0%) of sasrec-tuned's exhaustive ranking; "
                    "test targets: lost at depth 1 25.0%; found in top10 75.0%.")
    assert ablations.oracle_lines("beauty", ablations.VIEWS["seater"]) == []
    assert ablations.oracle_lines("sports") == []


def test_a_seater_row_is_read_against_the_sasrec_it_was_built_on():
    cfg = {**SEATER, "losses": {**SEATER["losses"], "lambda_distill": 1.0}}
    teacher = {"key": "sasrec/loo/x", "commit": "0123456789abcdef", "best_epoch": 96,
               "test": {"recall@10": 0.0560, "ndcg@10": 0.0320}}
    built = row("seater", "x", 0.0504, 0.0288, **cfg)
    built["sasrec_results"] = [teacher, {**teacher, "key": "sasrec/loo/x-refit",
                                         "test": {"recall@10": 0.07, "ndcg@10": 0.04}}]
    older = row("seater", "y", 0.0400, 0.0250, **SEATER)  # written before rows named theirs
    text = findings([row("sasrec", "a", 0.0551, 0.0314, **SASREC), built, older], "sports")
    # .0504 / .0560 - 1 = -10.0%, .0288 / .0320 - 1 = -10.0%: against its own fit, not
    # the committed SASRec row (.0551) nor the teacher's refit
    assert ("- SEATER balanced distilled x1 vs the SASRec it was built on (its run's "
            "sasrec/loo/x, commit 012345678, best epoch 96): recall@10 0.0504 vs 0.0560 "
            "(-10.0%), ndcg@10 0.0288 vs 0.0320 (-10.0%)." in text)
    assert text.count("it was built on") == 1
