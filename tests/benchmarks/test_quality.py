"""The quality experiments' definitions: what a rerun of a named experiment builds on."""

from __future__ import annotations

from benchmarks.common import option_value
from benchmarks.quality import EXPERIMENTS
from training.sasrec.pipeline import SASRecRun


def option(cmd: list[str], flag: str, default: str | None = None) -> str | None:
    return option_value(cmd, flag) or default


def sasrec_run_folders() -> dict[str, str]:
    """runs/<dataset>/<run name> -> the SASRec experiment that writes it."""
    folders = {}
    for name, (_, cmd) in EXPERIMENTS.items():
        if cmd[:3] == ["seater", "train", "sasrec"]:
            run = SASRecRun(protocol=option(cmd, "-p", "loo"), name=option(cmd, "--name", ""))
            folders[f"runs/{option(cmd, '-d')}/{run.run_name}"] = name
    return folders


def test_every_seater_experiment_names_a_sasrec_run_another_experiment_writes():
    """Without --sasrec-run a SEATER run takes whichever SASRec runs/ holds (or trains one
    on the spot at its own budget), so a rerun could build on another tree than its row."""
    folders = sasrec_run_folders()
    seater = {name: cmd for name, (_, cmd) in EXPERIMENTS.items()
              if cmd[:3] == ["seater", "train", "seater"]}
    assert len(seater) > 50
    for name, cmd in seater.items():
        run = option(cmd, "--sasrec-run")
        assert run in folders, f"{name}: --sasrec-run {run} is written by no experiment"
        assert run.split("/")[1] == option(cmd, "-d"), name
        sasrec = EXPERIMENTS[folders[run]][1]
        assert option(sasrec, "-p", "loo") == option(cmd, "-p", "loo"), name


def test_distilled_arms_of_a_dataset_share_one_epoch_budget():
    budgets: dict[str, set[str]] = {}
    for _, cmd in EXPERIMENTS.values():
        if any(arg.startswith("losses.lambda_distill=") for arg in cmd):
            epochs = [a for a in cmd if a.startswith("train.epochs=")]
            budgets.setdefault(option(cmd, "-d"), set()).update(epochs)
    assert set(budgets) == {"beauty", "sports", "yelp"}
    assert all(len(b) == 1 for b in budgets.values()), budgets
