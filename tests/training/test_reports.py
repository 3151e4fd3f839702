import json

from training.reports import update_quality_report


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
