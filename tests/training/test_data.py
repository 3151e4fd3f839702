import numpy as np
import pandas as pd
import pytest

from training.data import DataError, load_dataset, load_interaction_log, load_s3rec
from training.data.registry import REPO_ROOT, resolve_dataset
from training.data.synthetic import SyntheticConfig, make_synthetic


@pytest.fixture
def s3rec_dir(tmp_path):
    (tmp_path / "interactions.txt").write_text("1 3 1 2\n2 2 10 3\n")
    (tmp_path / "items.tsv").write_text(
        "item_id\tasin\ttitle\tcategories\n"
        '1\tA1\t"Quoted" lipstick\tBeauty > Makeup > Lips | Beauty > Sale\n'
        "2\tA2\tShampoo\t\n3\tA3\tNail polish\tBeauty > Makeup > Nails\n"
        "10\tA10\tSoap\tBeauty\n"
    )
    return tmp_path


def test_load_s3rec_keeps_order_and_numeric_ids(s3rec_dir):
    d = load_s3rec(s3rec_dir)
    assert d.item_ids.tolist() == ["1", "2", "3", "10"]  # numeric order, not "1","10","2"
    assert [d.item_ids[s].tolist() for s in d.sequences] == [["3", "1", "2"], ["2", "10", "3"]]
    t = d.item_text
    assert t.title[0] == '"Quoted" lipstick'  # no quote handling
    assert t.categories[0] == [["Beauty", "Makeup", "Lips"], ["Beauty", "Sale"]]
    assert t.category_level(2) == ["Lips", "", "Nails", ""]
    assert t.text(0) == '"Quoted" lipstick. Beauty > Makeup > Lips | Beauty > Sale'


def test_missing_interactions_names_the_file(tmp_path):
    with pytest.raises(DataError, match=str(tmp_path / "interactions.txt")):
        load_s3rec(tmp_path)


def test_registry_uses_env_and_names_paths(monkeypatch, tmp_path, s3rec_dir):
    monkeypatch.setenv("SEATER_DATA_DIR", str(s3rec_dir.parent))
    assert resolve_dataset(s3rec_dir.name) == s3rec_dir
    with pytest.raises(DataError) as e:
        load_dataset("sports_missing")
    assert str(s3rec_dir.parent / "sports_missing") in str(e.value)
    assert "SEATER_DATA_DIR" in str(e.value)


def test_embedded_beauty_is_the_s3rec_file(monkeypatch):
    monkeypatch.setenv("SEATER_DATA_DIR", str(REPO_ROOT / "data"))
    s = load_dataset("beauty").stats()
    assert (s["users"], s["items"], s["interactions"]) == (22363, 12101, 198502)
    assert s["min_len"] == 5 and s["has_text"]


def test_interaction_log_csv_sorted_and_core_filtered(tmp_path):
    df = pd.DataFrame({
        "user": ["u1", "u1", "u1", "u2", "u2", "u3"],
        "item": ["a", "b", "c", "b", "a", "z"],
        "timestamp": [3, 1, 2, 5, 4, 1],
    })
    path = tmp_path / "log.csv"
    df.to_csv(path, index=False)
    d = load_interaction_log(path, min_user_len=2, min_item_freq=2)
    # 'c' and 'z' occur once -> dropped; u3 then has no items
    assert d.user_ids.tolist() == ["u1", "u2"]
    assert [d.item_ids[s].tolist() for s in d.sequences] == [["b", "a"], ["a", "b"]]
    pq = tmp_path / "log.parquet"
    df.to_parquet(pq)
    assert load_interaction_log(pq, min_user_len=1).n_interactions == 6


def test_interaction_log_missing_column_says_how_to_fix(tmp_path):
    path = tmp_path / "log.csv"
    pd.DataFrame({"uid": [1], "item": [2], "timestamp": [3]}).to_csv(path, index=False)
    with pytest.raises(DataError, match="--user-col"):
        load_interaction_log(path)


def test_synthetic_is_deterministic_and_clustered():
    cfg = SyntheticConfig(n_users=300, n_items=120, n_clusters=6, seed=5)
    a, b = make_synthetic(cfg), make_synthetic(cfg)
    assert np.array_equal(a.sequences.values, b.sequences.values)
    assert a.sequences.lengths.min() >= 5
    cluster = a.meta["cluster_of"]
    seq = a.sequences
    same = np.mean([np.mean(cluster[s[1:]] == cluster[s[:-1]]) for s in seq])
    assert same > 0.7  # transitions mostly stay inside a latent cluster
    assert all(np.unique(s).size == s.size for s in seq)  # no repeats, like Amazon


def test_synthetic_spec_parsing():
    d = load_dataset("synthetic:n_users=50,n_items=40,n_clusters=4,seed=2")
    assert (d.n_users, d.n_items) == (50, 40)
    with pytest.raises(DataError, match="unknown synthetic option"):
        load_dataset("synthetic:bogus=1")
