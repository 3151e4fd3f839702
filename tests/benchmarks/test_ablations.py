"""The ablation report's computed findings: labels and gaps on hand-made rows."""

from __future__ import annotations

from benchmarks.ablations import findings, label


def row(model: str, variant: str, r10: float, n10: float, epochs: int = 200) -> dict:
    return {"model": model, "variant": variant, "key": f"{model}/loo/{variant}",
            "config": {"train": {"epochs": epochs}},
            "metrics": {"test": {"recall@10": r10, "ndcg@10": n10}}}


def test_labels_tell_widths_refits_and_budgets_apart():
    assert label(row("sasrec", "ss-d64-L1-h1-len50-neg256-sequence", 0, 0)) == "SASRec"
    assert label(row("sasrec", "ss-d256-L1-h1-len50-neg256-sequence-refit", 0, 0)) == (
        "SASRec d=256 (refit)")
    assert label(row("sasrec", "ss-d64-L1-h1-len50-neg4096-batch-xavier-itemdrop0.2-padkeys"
                               "-b2-0.98-refit", 0, 0)) == (
        "SASRec RecTools-style 4096 shared negatives (refit)")
    assert label(row("seater", "balanced-k16-d64-beam50-no-rank-ep4", 0, 0, epochs=4)) == (
        "SEATER balanced no-rank *")


def test_gaps_are_relative_to_the_named_baseline():
    runs = [
        row("sasrec", "ss-d64-L1-h1-len50-neg256-sequence", 0.0800, 0.0500),
        row("seater", "balanced-k16-d64-beam50", 0.0760, 0.0510),
        row("seater", "balanced-k16-d64-beam50-ep4", 0.0700, 0.0400, epochs=4),
        row("seater", "balanced-k16-d64-beam50-gen-only-ep4", 0.0770, 0.0380, epochs=4),
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
        row("sasrec", "ss-d64-L1-h1-len50-neg256-sequence", 0.0800, 0.0500),
        row("sasrec", "ss-d64-L1-h1-len50-neg256-sequence-xavier-itemdrop0.2", 0.0900, 0.0540),
        row("sasrec", "ss-d256-L1-h1-len50-neg256-sequence", 0.0700, 0.0400),
        row("seater", "balanced-k16-d64-beam50", 0.0720, 0.0510),
    ]
    text = findings(runs, "beauty")
    # 0.0720 / 0.0900 - 1 = -20.0 %, 0.0510 / 0.0540 - 1 = -5.6 %
    assert ("SEATER balanced vs SASRec RecTools-style: recall@10 0.0720 vs 0.0900 (-20.0%), "
            "ndcg@10 0.0510 vs 0.0540 (-5.6%)") in text
    assert "SEATER balanced vs SASRec: recall@10 0.0720 vs 0.0800 (-10.0%)" in text
    assert "d=256" not in text  # neither the tree's source nor the strongest


def test_no_pairs_no_findings():
    assert findings([row("sasrec", "ss-d64-L1-h1-len50-neg256-sequence", 0.08, 0.05)],
                    "beauty") == ""
