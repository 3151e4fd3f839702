import json
import subprocess

from training.reports import _cpu_model, git_commit, update_quality_report


def entry(key, recall):
    return {"key": key, "protocol": {"protocol": "loo"},
            "metrics": {"test": {"recall@10": recall}}, "epochs_run": 3, "best_epoch": 2,
            "train_seconds": 1.0, "commit": "abc"}


def test_entries_replace_by_key_and_other_reports_in_the_folder_are_left_alone(tmp_path):
    quality = tmp_path / "quality"
    quality.mkdir()
    # a different kind of report beside the run lists (the semantic-ID benchmark's)
    other = quality / "semantic_ids_beauty.json"
    other.write_text(json.dumps({"dataset": "beauty", "ami": {}}))
    update_quality_report("beauty", entry("sasrec/loo/a", 0.1), tmp_path)
    update_quality_report("beauty", entry("sasrec/loo/b", 0.2), tmp_path)
    path = update_quality_report("beauty", entry("sasrec/loo/a", 0.3), tmp_path)
    runs = json.loads(path.read_text())["runs"]
    assert [(r["key"], r["metrics"]["test"]["recall@10"]) for r in runs] == [
        ("sasrec/loo/a", 0.3), ("sasrec/loo/b", 0.2)]
    md = (quality / "README.md").read_text()
    assert "| sasrec/loo/a | test | nan | nan | 0.3000 |" in md
    assert json.loads(other.read_text()) == {"dataset": "beauty", "ami": {}}


def test_commit_is_dirty_for_code_changes_but_not_for_report_files(tmp_path):
    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
                       cwd=tmp_path, check=True, capture_output=True)

    (tmp_path / "reports").mkdir()
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "reports" / "run.json").write_text("{}\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "init")
    sha = git_commit(tmp_path)
    assert len(sha) == 40  # clean
    (tmp_path / "reports" / "run.json").write_text('{"runs": [1]}\n')
    (tmp_path / "untracked.py").write_text("")
    assert git_commit(tmp_path) == sha
    (tmp_path / "code.py").write_text("x = 2\n")
    assert git_commit(tmp_path) == sha + "-dirty"


def test_the_cpu_model_is_the_first_processors_family_and_model(tmp_path):
    """Hosts that print the same "model name" run different kernels by generation."""
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\n"
                       "model\t\t: 17\nmodel name\t: AMD EPYC\n\n"
                       "processor\t: 1\ncpu family\t: 23\nmodel\t\t: 49\n")
    assert _cpu_model(cpuinfo) == "family 25 model 17"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: some ARM core\n")
    assert _cpu_model(cpuinfo) == ""
    assert _cpu_model(tmp_path / "absent") == ""
