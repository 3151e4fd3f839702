"""A team's own log through the CLI: the holes a newcomer fell into (issue 16), each closed.

Every test drives the real ``seater`` command on small CSV/Parquet files with string ids,
uneven users and messy timestamps, and checks what a person would see: the result, or
one ``error:`` line naming the problem and the fix.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from tests.helpers import assert_one_error_line
from training.cli import app
from training.data import DataError, load_dataset, load_interaction_log

TINY_SASREC = ["--d-model", "16", "--max-len", "8", "--negatives", "8", "--epochs", "1",
               "--batch-size", "64", "--set", "train.progress=false", "--threads", "1"]


def make_log(n_users: int = 60, n_items: int = 40, seed: int = 0) -> pd.DataFrame:
    """String ids, 2 to 9 events per user, ISO timestamps written in two formats."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        n = int(rng.integers(2, 10))
        items = rng.choice(n_items, size=n, replace=False)
        for t, i in enumerate(items):
            day = 1 + t
            stamp = f"2021-03-{day:02d}" if t % 2 else f"2021-3-{day}T00:00:00Z"
            rows.append({"uid": f"user-{u}", "sku": f"sku-{i}", "ts": stamp})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def log_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "log.csv"
    make_log().to_csv(path, index=False)
    return path


COLS = ["--user-col", "uid", "--item-col", "sku", "--time-col", "ts"]


def _seater_16():
    from training.seater.model import SeaterParams

    return SeaterParams(d_model=16, max_len=8)


SEATER_16 = _seater_16()


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


# --- reading the log --------------------------------------------------------------------

def test_column_flags_exist_and_are_used(log_csv):
    res = invoke("data", "stats", "-d", str(log_csv), *COLS)
    assert res.exit_code == 0, res.output
    stats = json.loads(res.output.strip().splitlines()[-1])
    assert stats["users"] == 60 and stats["hygiene"]["time_kind"] == "datetime"
    res = invoke("data", "stats", "-d", str(log_csv))
    assert_one_error_line(res, "--user-col/--item-col/--time-col", "'uid'")


def test_mixed_date_formats_sort_by_time_not_by_string(tmp_path):
    path = tmp_path / "log.csv"
    pd.DataFrame({"user": ["u"] * 3, "item": ["late", "early", "mid"],
                  "timestamp": ["2021-10-01", "2021-9-30T23:00:00Z", "2021-09-30"]}
                 ).to_csv(path, index=False)
    d = load_interaction_log(path)
    # as strings "2021-10-01" < "2021-09-30" < "2021-9-30"; as times the reverse
    assert d.item_ids[d.sequences[0]].tolist() == ["mid", "early", "late"]


def test_unparseable_times_are_refused_with_a_count_and_an_example(tmp_path):
    path = tmp_path / "log.csv"
    pd.DataFrame({"user": ["u"] * 4, "item": list("abcd"),
                  "timestamp": ["2021-01-01", "yesterday", "2021-01-03", "soon"]}
                 ).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"2 value\(s\) .* e\.g\. 'yesterday'"):
        load_interaction_log(path)


def test_duplicates_missing_values_and_the_core_are_counted(tmp_path):
    path = tmp_path / "log.csv"
    pd.DataFrame({"user": ["a", "a", "a", "a", "b", "c", None],
                  "item": ["x", "y", "y", "z", "x", "y", "z"],
                  "timestamp": [1, 2, 2, 3, 1, 1, 1]}).to_csv(path, index=False)
    d = load_interaction_log(path)
    h = d.meta["hygiene"]
    assert (h["rows_read"], h["rows_with_missing_values"], h["duplicate_rows"]) == (7, 1, 1)
    assert (h["core_dropped_users"], h["core_dropped_rows"]) == (2, 2)  # b and c: 1 item each
    assert d.item_ids[d.sequences[0]].tolist() == ["x", "y", "z"]
    assert d.stats()["hygiene"] == h


def test_parquet_integer_ids_with_a_missing_value_stay_integers(tmp_path):
    path = tmp_path / "log.parquet"
    pd.DataFrame({"user": [1, 1, 2, 2, None], "item": [10, 11, 10, 12, 13],
                  "timestamp": [1, 2, 1, 2, 3]}).to_parquet(path)
    d = load_interaction_log(path)
    assert sorted(d.user_ids.tolist()) == ["1", "2"]
    assert set(d.item_ids.tolist()) == {"10", "11", "12"}


def test_item_metadata_joins_on_the_exact_id_strings(tmp_path):
    log = tmp_path / "log.csv"
    pd.DataFrame({"user": ["u", "u", "v", "v"], "item": ["007", "7", "007", "x"],
                  "timestamp": [1, 2, 1, 2]}).to_csv(log, index=False)
    meta = tmp_path / "items.csv"
    pd.DataFrame({"item": ["007", "7", "x"], "title": ["agent", "seven", "ex"],
                  "categories": ["Toys > Spy", "", "Toys"], "brand": ["A", "B", ""]}
                 ).to_csv(meta, index=False)
    from training.data import DataOptions

    d = load_dataset(str(log), DataOptions(items=str(meta)))
    by_id = dict(zip(d.item_ids.tolist(), d.item_text.title, strict=True))
    assert by_id == {"007": "agent", "7": "seven", "x": "ex"}
    i = d.item_ids.tolist().index("007")
    assert d.item_text.categories[i] == [["Toys", "Spy"]]
    assert d.item_text.attributes["brand"][i] == "A"


def test_tsv_logs_load_and_unknown_suffixes_say_so(tmp_path):
    tsv = tmp_path / "log.tsv"
    make_log(10).to_csv(tsv, sep="\t", index=False)
    res = invoke("data", "stats", "-d", str(tsv), *COLS)
    assert res.exit_code == 0, res.output
    other = tmp_path / "log.json"
    other.write_text("{}")
    assert_one_error_line(invoke("data", "stats", "-d", str(other)), "unsupported file type")


def test_an_empty_file_is_one_error_line(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert_one_error_line(invoke("data", "stats", "-d", str(empty)), "empty")


# --- training ---------------------------------------------------------------------------

def test_short_users_are_left_out_and_counted(log_csv, tmp_path):
    data = load_dataset(str(log_csv), options_for(COLS))
    short = int((data.sequences.lengths < 3).sum())
    assert short > 0
    res = invoke("train", "sasrec", "-d", str(log_csv), *COLS, *TINY_SASREC,
                 "--out", str(tmp_path))
    assert res.exit_code == 0, res.output
    entry = json.loads((tmp_path / "log" / "sasrec-loo" / "result.json").read_text())[0]
    assert entry["protocol"]["dropped_users"] == short
    assert entry["protocol"]["test_users"] == data.n_users - short


def options_for(cols: list[str]):
    from training.data import DataOptions

    pairs = dict(zip(cols[::2], cols[1::2], strict=True))
    return DataOptions(user_col=pairs["--user-col"], item_col=pairs["--item-col"],
                       time_col=pairs["--time-col"])


@pytest.mark.parametrize("args, needles", [
    (["--epochs", "0"], ["train.epochs", "--epochs"]),
    (["--batch-size", "0"], ["train.batch_size", "--batch-size"]),
    (["--device", "gpu"], ["'gpu'", "cpu"]),
    (["--set", "train.metric=ndcg@100"], ["ndcg@100", "ndcg@10"]),
    (["--preset", "fastest"], ["fastest", "tuned"]),
])
def test_bad_settings_fail_before_any_work(log_csv, tmp_path, args, needles):
    res = invoke("train", "sasrec", "-d", str(log_csv), *COLS, "--out", str(tmp_path), *args)
    assert_one_error_line(res, *needles)
    assert not (tmp_path / "log").exists()  # checked before the run folder exists


def test_resume_refuses_another_run_in_the_same_folder(log_csv, tmp_path):
    base = ["train", "sasrec", "-d", str(log_csv), *COLS, *TINY_SASREC, "--out", str(tmp_path)]
    assert invoke(*base).exit_code == 0
    res = invoke(*base, "--d-model", "24")
    assert_one_error_line(res, "model.d_model: 16 -> 24", "--no-resume", "--name")
    # the same file name with other content
    make_log(seed=5).to_csv(log_csv.parent / "other.csv", index=False)
    os.replace(log_csv.parent / "other.csv", log_csv)
    try:
        assert_one_error_line(invoke(*base), "data:", "sha256")
        assert invoke(*base, "--no-resume").exit_code == 0
    finally:
        make_log().to_csv(log_csv, index=False)
    # settings that do not change what the checkpoint holds may change
    assert invoke(*base, "--no-resume").exit_code == 0
    assert invoke(*base, "--patience", "3", "--threads", "2").exit_code == 0


def test_a_folder_with_nothing_to_resume_takes_any_settings(tmp_path):
    from training.data import load_dataset as load
    from training.run_folder import open_run_dir

    data = load("synthetic:n_users=30,n_items=20,seed=1")
    open_run_dir(tmp_path / "run", {"model": {"d_model": 16}}, data, resume=True)
    open_run_dir(tmp_path / "run", {"model": {"d_model": 32}}, data, resume=True)  # no state
    (tmp_path / "run" / "tree.npz").write_bytes(b"")
    with pytest.raises(ValueError, match="model.d_model: 32 -> 16"):
        open_run_dir(tmp_path / "run", {"model": {"d_model": 16}}, data, resume=True)


def test_reports_stay_in_the_run_folder_unless_a_reports_dir_is_named(tmp_path, monkeypatch):
    from training import reports

    monkeypatch.setattr(reports, "REPORTS_DIR", tmp_path / "project-reports")
    beauty = tmp_path / "beauty.csv"
    make_log(30).to_csv(beauty, index=False)
    res = invoke("train", "sasrec", "-d", str(beauty), *COLS, *TINY_SASREC,
                 "--out", str(tmp_path / "runs"))
    assert res.exit_code == 0, res.output
    assert not (tmp_path / "project-reports").exists()
    assert (tmp_path / "runs" / "beauty" / "sasrec-loo" / "result.json").is_file()


def test_seater_trains_its_missing_sasrec_with_the_runs_budget(log_csv, tmp_path):
    from training.seater.pipeline import SeaterRun, sasrec_command

    res = invoke("train", "seater", "-d", str(log_csv), *COLS, "--d-model", "16",
                 "--max-len", "8", "--epochs", "1", "--batch-size", "64", "-k", "4",
                 "--threads", "1", "--set", "train.progress=false", "--out", str(tmp_path))
    assert res.exit_code == 0, res.output
    sasrec = json.loads((tmp_path / "log" / "sasrec-loo" / "config.json").read_text())
    assert sasrec["train"]["epochs"] == 1 and sasrec["train"]["threads"] == 1
    assert sasrec["data"]["user_col"] == "uid"
    # the command it logs reproduces that config when run by hand
    from training.config import from_dict
    from training.sasrec.pipeline import SASRecRun

    cmd = sasrec_command(from_dict(SASRecRun, sasrec))
    assert f"-d {log_csv}" in cmd and "--user-col uid" in cmd
    shown = invoke(*cmd.split()[1:], "--show-config")
    assert shown.exit_code == 0, shown.output
    again = json.loads(shown.output)
    for key in ("dataset", "protocol", "data", "model", "out_dir"):
        assert again[key] == sasrec[key], key
    assert again["train"]["epochs"] == 1 and again["train"]["threads"] == 1
    assert SeaterRun  # the SEATER run itself finished on that SASRec
    seater = json.loads((tmp_path / "log" / "seater-loo-balanced-k4" / "result.json")
                        .read_text())[0]
    assert seater["sasrec_run"].endswith("sasrec-loo")
    # and names the SASRec it was built on, with that run's own test figures
    fit = json.loads((tmp_path / "log" / "sasrec-loo" / "result.json").read_text())[0]
    assert seater["sasrec_results"] == [{
        "key": fit["key"], "commit": fit["commit"], "date": fit["date"],
        "best_epoch": fit["best_epoch"], "epochs_run": fit["epochs_run"],
        "test": fit["metrics"]["test"]}]


# --- evaluate and export ----------------------------------------------------------------

@pytest.fixture(scope="module")
def runs(log_csv, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    res = invoke("train", "seater", "-d", str(log_csv), *COLS, "--d-model", "16",
                 "--max-len", "8", "--epochs", "1", "--batch-size", "64", "-k", "4",
                 "--threads", "1", "--set", "train.progress=false", "--out", str(out))
    assert res.exit_code == 0, res.output
    return out / "log"


def test_export_without_a_version_names_it_after_the_dataset(runs, tmp_path):
    for run, prefix in (("seater-loo-balanced-k4", "log-2"), ("sasrec-loo", "log-sasrec-2")):
        res = invoke("export", "--run", str(runs / run), "--out", str(tmp_path))
        assert res.exit_code == 0, res.output
        path = Path(res.stdout.strip())  # stdout holds the bundle path and nothing else
        assert path.parent == tmp_path and path.name.startswith(prefix)
        assert (path / "manifest.json").is_file()
        assert (tmp_path / "current").resolve() == path.resolve()  # the latest export
        assert os.readlink(tmp_path / "current") == path.name  # relative: works when mounted


def test_evaluate_and_export_name_the_right_problem(runs, tmp_path):
    assert_one_error_line(invoke("evaluate", "--run", str(runs / "sasrec-loo")),
                          "is a SASRec run, not a SEATER run")
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("model.pt", "config.json", "items.json", "result.json"):
        (broken / name).write_bytes((runs / "seater-loo-balanced-k4" / name).read_bytes())
    assert_one_error_line(invoke("export", "--run", str(broken), "--out", str(tmp_path / "a")),
                          "tree.npz")


def test_a_run_whose_result_json_is_unreadable_still_exports(runs, tmp_path):
    """The bundle's metrics are a record, not what it serves: a truncated result.json (a
    run killed while writing it) leaves them blank instead of stopping the export."""
    import shutil

    run = tmp_path / "log" / "sasrec-loo"
    shutil.copytree(runs / "sasrec-loo", run)
    (run / "result.json").write_text('[{"key": ')
    res = invoke("export", "--run", str(run), "--out", str(tmp_path / "out"))
    assert res.exit_code == 0, res.output
    manifest = json.loads((Path(res.stdout.strip()) / "manifest.json").read_text())
    assert manifest["metrics"] == {}
    assert Path(res.stdout.strip()).name.startswith("log-sasrec-")  # named after its folder


def test_evaluate_from_another_folder_finds_a_relatively_named_dataset(log_csv, tmp_path,
                                                                       monkeypatch):
    monkeypatch.chdir(log_csv.parent)
    res = invoke("train", "seater", "-d", log_csv.name, *COLS, "--d-model", "16",
                 "--max-len", "8", "--epochs", "1", "--batch-size", "64", "-k", "4",
                 "--threads", "1", "--set", "train.progress=false", "--out", str(tmp_path))
    assert res.exit_code == 0, res.output
    monkeypatch.chdir(tmp_path)
    res = invoke("evaluate", "--run", str(tmp_path / "log" / "seater-loo-balanced-k4"),
                 "--beam", "10", "--max-users", "20")
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith("beam 10: test recall@10")


def test_a_distilled_run_is_evaluated_without_its_teacher(runs, log_csv, tmp_path):
    """Searching needs no teacher: `seater evaluate` used to rebuild the training losses
    and refuse a distilled run for want of one."""
    res = invoke("train", "seater", "-d", str(log_csv), *COLS,
                 "--d-model", "16", "--max-len", "8", "--epochs", "1", "--batch-size", "64",
                 "-k", "4", "--threads", "1", "--set", "train.progress=false",
                 "--sasrec-run", str(runs / "sasrec-loo"), "--set", "losses.lambda_distill=1",
                 "--name", "distilled", "--out", str(tmp_path))
    assert res.exit_code == 0, res.output
    res = invoke("evaluate", "--run", str(tmp_path / "log" / "distilled"), "--beam", "10",
                 "--max-users", "20")
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith("beam 10: test recall@10")


def test_help_shows_the_defaults_the_configs_really_have():
    """Every ``(default: X)`` typed into a training flag's help is the dataclass default."""
    import re

    from training.sasrec.pipeline import SASRecRun
    from training.seater.pipeline import SeaterRun

    flag_keys = {"--d-model": "model.d_model", "--max-len": "model.max_len",
                 "--epochs": "train.epochs", "--patience": "train.patience",
                 "--batch-size": "train.batch_size", "--lr": "train.lr",
                 "--seed": "train.seed", "--device": "train.device",
                 "--layers": "model.n_layers", "--heads": "model.n_heads",
                 "--dropout": "model.dropout", "--loss": "model.loss",
                 "--negatives": "model.n_negatives", "-k": "tree.k", "--beam": "beam_size",
                 "--ids": "tree.ids", "--protocol": "protocol",
                 "--user-col": "data.user_col", "--item-col": "data.item_col",
                 "--time-col": "data.time_col", "--min-interactions": "data.min_interactions"}
    import typer.main

    for command, cls in (("sasrec", SASRecRun), ("seater", SeaterRun)):
        click_cmd = typer.main.get_command(app).commands["train"].commands[command]
        defaults = cls()
        checked = 0
        for param in click_cmd.params:
            m = re.search(r"\(default: ([^)]+)\)", param.help or "")
            flag = next((o for o in param.opts if o in flag_keys), None)
            if not m or flag is None:
                continue
            value = defaults
            for part in flag_keys[flag].split("."):
                value = getattr(value, part)
            assert str(value) == m.group(1), (command, flag, value, m.group(1))
            checked += 1
        assert checked >= 8, command
        shown = invoke("train", command, "--help").output
        assert shown.count("(default:") >= 8  # rendered, not swallowed as markup


class Foreign:
    """Anything a pickle could carry besides tensors and plain data."""


def test_a_checkpoint_with_a_foreign_object_is_refused_not_unpickled(runs, tmp_path):
    import shutil

    import torch

    from training.checkpoint import CheckpointError, load_checkpoint

    run = tmp_path / "run"
    shutil.copytree(runs / "seater-loo-balanced-k4", run)
    ckpt = torch.load(run / "model.pt", weights_only=True)
    torch.save({**ckpt, "extra": Foreign()}, run / "model.pt")
    with pytest.raises(CheckpointError, match="objects other than tensors and plain data"):
        load_checkpoint(run / "model.pt")
    assert_one_error_line(invoke("export", "--run", str(run), "--out", str(tmp_path / "a")),
                          "could run code")
    assert_one_error_line(invoke("evaluate", "--run", str(run)), "could run code")


def test_a_current_that_is_not_a_link_is_refused_before_anything_is_written(runs, tmp_path):
    (tmp_path / "current").mkdir()
    res = invoke("export", "--run", str(runs / "sasrec-loo"), "--out", str(tmp_path))
    assert_one_error_line(res, "is not a link")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["current"]  # no bundle, no temp


def test_the_best_sasrec_run_of_the_width_is_chosen(runs, log_csv, tmp_path):
    import shutil

    from training.data import load_dataset as load
    from training.seater.pipeline import SeaterRun, best_sasrec_run

    out = tmp_path / "runs"
    shutil.copytree(runs, out / "log")
    data = load(str(log_csv), options_for(COLS))
    cfg = SeaterRun(out_dir=str(out), model=SEATER_16)
    assert best_sasrec_run(cfg, data) == out / "log" / "sasrec-loo"
    other = out / "log" / "sasrec-better"
    shutil.copytree(out / "log" / "sasrec-loo", other)
    result = json.loads((other / "result.json").read_text())
    result[0]["metrics"]["valid"]["ndcg@10"] += 1.0
    (other / "result.json").write_text(json.dumps(result))
    (other / "data.json").unlink()  # a folder from before fingerprints: matched by items
    assert best_sasrec_run(cfg, data) == other
    assert best_sasrec_run(SeaterRun(out_dir=str(out)), data) is None  # no 64-wide run
