"""``--refit-epochs N``: the refit alone, for a fit's known best epoch. It must be the very
refit a full ``--refit`` run trains after its fit, for SASRec and for a distilled SEATER,
and settings it cannot honour are refused before any work."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from training.cli import app

DATA = "synthetic:n_users=150,n_items=40,seed=3"
SASREC = ["train", "sasrec", "-d", DATA, "--d-model", "16", "--max-len", "8",
          "--batch-size", "64", "--epochs", "3", "--patience", "1",
          "--set", "model.n_negatives=16", "--set", "train.progress=false"]
SEATER = ["train", "seater", "-d", DATA, "--d-model", "16", "--max-len", "8",
          "--batch-size", "64", "--epochs", "2", "--patience", "1", "-k", "4",
          "--set", "losses.lambda_distill=1", "--set", "losses.distill_top=2",
          "--set", "train.progress=false"]


def run(args: list[str]) -> list[dict]:
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    folder = res.output.split("run folder: ")[1].split()[0]
    return json.loads((Path(folder) / "result.json").read_text())


@pytest.fixture(scope="module")
def sasrec(tmp_path_factory):
    """A full SASRec run (fit, then refit) and its refit alone at the fit's best epoch."""
    out = tmp_path_factory.mktemp("runs")
    full = run([*SASREC, "--out", str(out), "--refit", "--name", "full"])
    best = full[0]["best_epoch"]
    alone = run([*SASREC, "--out", str(out), "--refit", "--refit-epochs", str(best),
                 "--name", "alone"])
    return out / "synthetic", full, alone


def test_a_sasrec_refit_alone_is_the_refit_after_the_fit(sasrec):
    folder, full, alone = sasrec
    assert len(full) == 2 and len(alone) == 1  # the skipped fit has no row
    fit, refit = full
    (only,) = alone
    assert only["key"] == refit["key"] and only["key"].endswith("-refit")
    assert only["metrics"]["test"] == refit["metrics"]["test"]
    assert only["metrics"]["valid"] == {} and only["eval_users"]["valid"] == 0
    assert only["refit_epochs"] == only["best_epoch"] == only["epochs_run"] == fit["best_epoch"]
    assert "refit_epochs" not in refit
    assert np.array_equal(np.load(folder / "full" / "item_emb.npy"),
                          np.load(folder / "alone" / "item_emb.npy"))
    assert not (folder / "alone" / "fit").exists()
    assert (folder / "alone" / "refit" / "curves.png").is_file()


def test_a_distilled_seater_refit_alone_is_the_refit_after_the_fit(sasrec, tmp_path):
    """Taught by the SASRec's refit in both runs; the tree and the encoder come from its
    fit's embeddings."""
    folder, _, _ = sasrec
    base = [*SEATER, "--sasrec-run", str(folder / "full"), "--out", str(tmp_path), "--refit"]
    fit, refit = run([*base, "--name", "full"])
    (only,) = run([*base, "--refit-epochs", str(fit["best_epoch"]), "--name", "alone"])
    assert only["key"] == refit["key"]
    assert only["metrics"]["test"] == refit["metrics"]["test"]
    assert only["refit_epochs"] == fit["best_epoch"]


def test_a_seater_cannot_stand_on_a_sasrec_refit_alone(sasrec, tmp_path):
    folder, _, _ = sasrec
    res = CliRunner().invoke(app, [*SEATER, "--sasrec-run", str(folder / "alone"),
                                   "--out", str(tmp_path)])
    assert res.exit_code == 2
    assert "a --refit-epochs run skips the fit and has none" in res.output


@pytest.mark.parametrize(("flags", "message"), [
    (["--refit-epochs", "3"], "--refit-epochs 3 skips the fit and refits on "
     "train+validation for that many epochs: add --refit"),
    (["--refit", "--refit-epochs", "-1"], "refit_epochs must be >= 0, got -1"),
    (["-p", "seater", "--refit", "--refit-epochs", "3"],
     "--refit applies to the loo protocol only"),
])
def test_refit_epochs_it_cannot_honour_are_refused_before_any_work(tmp_path, flags, message):
    res = CliRunner().invoke(app, [*SASREC, "--out", str(tmp_path / "runs"), *flags])
    assert res.exit_code == 2
    assert message in res.output
    assert not (tmp_path / "runs").exists()
