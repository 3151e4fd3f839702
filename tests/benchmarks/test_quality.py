"""The quality experiments' definitions: what a rerun of a named experiment builds on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import quality
from benchmarks.common import option_value
from benchmarks.quality import EXPERIMENTS, FIT, FIT_BEST_EPOCH, missing_inputs, writers

ROOT = Path(__file__).resolve().parents[2]


def option(cmd: list[str], flag: str, default: str | None = None) -> str | None:
    return option_value(cmd, flag) or default


def sasrec_run_folders() -> dict[str, str]:
    """runs/<dataset>/<run name> -> the SASRec experiment that writes it."""
    return {path.removesuffix(f"/{FIT}"): name for path, name in writers().items()
            if path.endswith(f"/{FIT}")}


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


def test_every_file_an_experiment_reads_is_written_by_an_experiment_on_its_dataset():
    written_by = writers()
    for name, (_, cmd) in EXPERIMENTS.items():
        for path in quality.inputs(cmd):
            assert path in written_by, f"{name} reads {path}, which no experiment writes"
            assert option(EXPERIMENTS[written_by[path]][1], "-d") == option(cmd, "-d"), name


def test_distilled_arms_of_a_dataset_share_one_epoch_budget():
    """Arms compared with each other share a budget; a longer one is its own family,
    named (`-ep<N>`) and in run folders of its own, so its rows never pool with others."""
    budgets: dict[tuple[str, str], set[str]] = {}
    for name, (_, cmd) in EXPERIMENTS.items():
        if any(arg.startswith("losses.lambda_distill=") for arg in cmd):
            epochs = [a for a in cmd if a.startswith("train.epochs=")]
            family = next((part for part in name.split("-") if part.startswith("ep")), "")
            budgets.setdefault((option(cmd, "-d"), family), set()).update(epochs)
            if family:
                assert epochs == [f"train.epochs={family[2:]}"], name
                assert f"-{family}-s" in option(cmd, "--name"), name
    assert {ds for ds, family in budgets if not family} == {"beauty", "sports", "yelp"}
    assert ("sports", "ep45") in budgets
    assert all(len(b) == 1 for b in budgets.values()), budgets


def test_a_refit_alone_runs_for_the_best_epoch_of_its_fits_committed_row():
    """The epoch count is the fit row's, read here from the report it was filed in, and
    the command is the fit's with the refit asked and a run folder of its own."""
    assert FIT_BEST_EPOCH
    for name, best in FIT_BEST_EPOCH.items():
        fit = EXPERIMENTS[name][1]
        dataset, run_name = option(fit, "-d"), option(fit, "--name")
        report = json.loads((ROOT / "reports" / "quality" / f"{dataset}.json").read_text())
        rows = [r for r in report["runs"] if r["run_dir"] == f"runs/{dataset}/{run_name}"
                and not r["protocol"]["refit_on_validation"]]
        assert [r["best_epoch"] for r in rows] == [best], name
        alone = EXPERIMENTS[f"{name}-refit-alone"][1]
        assert option(alone, "--name") == f"{run_name}-refit-alone"
        assert alone[-3:] == ["--refit", "--refit-epochs", str(best)]
        assert "--no-refit" not in alone
        assert quality.outputs(alone) == []  # no fit: nothing SEATER could build on


def test_a_distilled_refit_is_taught_by_a_sasrec_experiment_that_refits():
    """SEATER's refit distils the SASRec's refit: the run refuses a SASRec without one,
    so the experiment that writes its SASRec run must refit."""
    folders = sasrec_run_folders()
    refits = [(name, cmd) for name, (_, cmd) in EXPERIMENTS.items()
              if cmd[:3] == ["seater", "train", "seater"] and "--refit" in cmd
              and any(a.startswith("losses.lambda_distill=") for a in cmd)]
    assert any("--refit-epochs" in cmd for _, cmd in refits)
    for name, cmd in refits:
        assert "--refit" in EXPERIMENTS[folders[option(cmd, "--sasrec-run")]][1], name

def test_an_experiment_whose_inputs_nothing_has_written_is_refused_naming_the_writer(tmp_path):
    student = "seater-beauty-tuned-distill1-top4-s1"
    (line,) = missing_inputs([student], tmp_path)
    assert line == (f"{student} reads runs/beauty/sasrec-loo-rectools-batch4096/fit/item_emb.npy"
                    ", which does not exist yet: run `python -m benchmarks.quality "
                    f"sasrec-beauty-rectools-batch4096` first, or name it before {student}")
    # named after its teacher: the teacher writes it first; named before: still missing
    assert missing_inputs(["sasrec-beauty-rectools-batch4096", student], tmp_path) == []
    assert len(missing_inputs([student, "sasrec-beauty-rectools-batch4096"], tmp_path)) == 1
    # a semantic-ID run reads the indexer's codes of its seed as well
    lines = missing_inputs(["seater-sports-semantic-title-s2"], tmp_path)
    assert [line.split(": run ")[1].split("`")[1] for line in lines] == [
        "python -m benchmarks.quality sasrec-sports-rectools-batch4096",
        "python -m benchmarks.quality semantic-sports-title-s2"]
    emb = tmp_path / "runs/beauty/sasrec-loo-rectools-batch4096/fit/item_emb.npy"
    emb.parent.mkdir(parents=True)
    emb.touch()  # a finished fit on disk
    assert missing_inputs([student], tmp_path) == []


def test_the_command_refuses_before_running_anything(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(quality, "ROOT", Path(tmp_path))
    monkeypatch.setattr(quality, "run", lambda *a: pytest.fail("an experiment started"))
    with pytest.raises(SystemExit) as exit_:
        quality.main(["seater-yelp-tuned-distill1-top4-s2"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "sasrec-yelp-seater-tuned` first" in err and "Traceback" not in err
