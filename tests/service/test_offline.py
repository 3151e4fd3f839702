"""``seater recommend``: many users through the service's engine and micro-batcher, written
to Parquet or JSONL. Driven through the real CLI on a real bundle and checked against what
POST /retrieve answers for the same histories; user mistakes are one ``error:`` line."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from service.model.load import load_engine
from service.offline import OfflineConfig, OfflineError, Recommender
from service.settings import HARD_MAX_HISTORY, Settings
from tests.helpers import assert_one_error_line
from tests.service.bundles import copy_bundle
from tests.service.conftest import running
from training.cli import app

N, BEAM = 5, 20
FILTER = {"categories": ["group 1"], "attributes": {"brand": ["Zed", "Nova"]}}
# the tiny bundle's data (tests/conftest.py), as `--dataset` spells it
SYNTHETIC = "synthetic:n_users=300,n_items=90,n_clusters=5,seed=3"


def invoke(*args: str):
    return CliRunner().invoke(app, ["recommend", *args])


@pytest.fixture(scope="module")
def users_log(meta_bundle, tmp_path_factory) -> tuple[Path, dict[str, list[str]]]:
    """A log in the CLI's own format: 12 users, string user ids, 1..9 events, one user
    whose items are all unknown to the model and one with an unknown item among known ones."""
    ids = json.loads((meta_bundle / "items.json").read_text())["ids"]
    rng = np.random.default_rng(5)
    histories = {f"user-{u}": [ids[i] for i in rng.choice(len(ids), 1 + u % 9, replace=False)]
                 for u in range(12)}
    histories["user-ghost"] = ["nope-1", "nope-2"]
    histories["user-3"] = ["nope-3", *histories["user-3"]]
    rows = [{"uid": u, "sku": item, "ts": f"2022-01-{1 + t:02d}T10:00:00"}
            for u, h in histories.items() for t, item in enumerate(h)]
    path = tmp_path_factory.mktemp("users") / "users.csv"
    pd.DataFrame(rows).sample(frac=1, random_state=0).to_csv(path, index=False)  # shuffled
    return path, histories


COLS = ["--user-col", "uid", "--item-col", "sku", "--time-col", "ts"]


def retrieve_all(bundle: Path, bodies: dict[str, dict]) -> dict[str, list[dict]]:
    """POST /retrieve for each body through the app on a real bundle: the reference."""

    async def ask() -> dict[str, list[dict]]:
        settings = Settings(artifacts=bundle, providers="cpu", intra_op_threads=1,
                            redis_url=None, log_json=False)
        async with running(settings, load_engine) as client:
            return {user: (await client.post("/retrieve", json=body)).json()["items"]
                    for user, body in bodies.items()}

    return asyncio.run(ask())


def test_parquet_recs_equal_what_post_retrieve_answers(meta_bundle, users_log, tmp_path):
    path, histories = users_log
    out = tmp_path / "recs.parquet"
    res = invoke("--bundle", str(meta_bundle), "--users", str(path), *COLS, "--out", str(out),
                 "--n", str(N), "--beam", str(BEAM), "--filters", json.dumps(FILTER),
                 "--batch-size", "4", "--threads", "1")
    assert res.exit_code == 0, res.output
    lines = res.stdout.strip().splitlines()
    assert lines[0] == str(out) and len(lines) == 2  # the path, then one summary line
    assert "12 users" in lines[1] and "1 users skipped" in lines[1]
    assert "3 unknown history ids dropped" in lines[1] and "users/s" in lines[1]
    recs = pd.read_parquet(out)
    assert list(recs.columns) == ["user", "rank", "item", "score", "title"]
    assert set(recs["user"]) == set(histories) - {"user-ghost"}
    known = {u: h for u, h in histories.items() if u != "user-ghost"}
    want = retrieve_all(copy_bundle(meta_bundle, tmp_path / "tiny-meta"), {
        u: {"history": h, "n": N, "beam_size": BEAM, "filters": FILTER} for u, h in known.items()})
    for user, history in known.items():
        got = recs[recs["user"] == user].sort_values("rank")
        assert got["item"].tolist() == [i["id"] for i in want[user]], user
        assert got["rank"].tolist() == list(range(1, len(want[user]) + 1))
        np.testing.assert_allclose(got["score"], [i["score"] for i in want[user]], atol=1e-5)
        assert got["title"].tolist() == [i["title"] for i in want[user]]
        assert not set(got["item"]) & set(history)
    assert (recs.groupby("user").size() == N).all()  # the filter leaves >= N items to each


def test_jsonl_for_every_user_of_a_dataset_follows_its_full_sequences(tiny_bundle, tmp_path):
    out = tmp_path / "recs.jsonl"
    res = invoke("--bundle", str(tiny_bundle.path), "--dataset", SYNTHETIC, "--out", str(out),
                 "--n", str(N), "--beam", str(BEAM), "--batch-size", "32")
    assert res.exit_code == 0, res.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    data = tiny_bundle.data
    assert [r["user"] for r in lines] == [str(u) for u in data.user_ids]  # one per user
    assert all(len(r["items"]) == N for r in lines)
    engine = load_engine(tiny_bundle.path, Settings(providers="cpu", intra_op_threads=1))
    ids = engine.catalog.ids
    for u in (0, 7, 299):
        seq = np.asarray(data.sequences[u])
        state = engine.encode([seq[-engine.info.max_history:]])
        hit = engine.search(state, np.array([N]), np.array([BEAM]), [np.unique(seq)])[0]
        assert [r["item"] for r in lines[u]["items"]] == [ids[i] for i in hit.items]
        assert all(r["title"] for r in lines[u]["items"])


def test_every_seen_item_stays_out_even_beyond_the_request_history_cap(tiny_bundle, tmp_path):
    job = Recommender.open(OfflineConfig(bundle=tiny_bundle.path, out=tmp_path / "r.jsonl"))
    ids = job.engine.catalog.ids
    history = [ids[i % 90] for i in range(HARD_MAX_HISTORY + 50)]
    history[:3] = ["only-old-1", ids[89], "only-old-1"]
    req = job.request(history)
    assert req.history == history[-HARD_MAX_HISTORY:] and req.exclude_seen
    assert req.exclude == ["only-old-1"]  # older than the cap, not in the recent part
    assert job.request(["nope"]) is None
    keep = Recommender.open(OfflineConfig(bundle=tiny_bundle.path, out=tmp_path / "r.jsonl",
                                          exclude_seen=False))
    assert keep.request(history).exclude == [] and not keep.request(history).exclude_seen


@pytest.mark.parametrize(("args", "needles"), [
    (["--bundle", "{tmp}/nowhere"], ["no bundle at", "--bundle", "seater export"]),
    (["--filters", "{not json"], ["--filters", "categories"]),
    (["--filters", '{"colour": ["red"]}'], ["--filters", "colour", "Extra inputs"]),
    (["--filters", '{"attributes": {"colour": ["red"]}}'], ["attributes.colour", "no attributes"]),
    (["--filters", '{"categories": ["group 1"]}'], ["no categories"]),
    (["--out", "{tmp}/recs.csv"], [".parquet or .jsonl", "recs.csv"]),
    (["--n", "30", "--beam", "10"], ["--beam must be 30 (--n)"]),
    (["--batch-size", "0"], ["--batch-size must be 1..1024"]),
], ids=["bundle", "json", "schema", "attribute", "categories", "suffix", "beam", "batch"])
def test_mistakes_are_one_error_line_before_any_work(tiny_bundle, tmp_path, args, needles):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    base = {"--bundle": str(tiny_bundle.path), "--out": str(tmp_path / "recs.parquet")}
    for flag in list(base):
        if flag in args:
            del base[flag]
    res = invoke(*[x for kv in base.items() for x in kv], "--dataset", SYNTHETIC, *args)
    assert_one_error_line(res, *needles)
    assert not list(tmp_path.glob("*.parquet")) and not list(tmp_path.glob(".*tmp"))


def test_the_dataset_and_the_users_are_one_or_the_other(tiny_bundle, tmp_path):
    out = str(tmp_path / "recs.parquet")
    assert_one_error_line(invoke("--bundle", str(tiny_bundle.path), "--out", out),
                   "exactly one of --users", "--dataset")
    assert_one_error_line(invoke("--bundle", str(tiny_bundle.path), "--out", out,
                          "--dataset", "no-such-dataset"), "'no-such-dataset' not found")


def test_a_failed_run_leaves_no_output(tiny_bundle, tmp_path):
    out = tmp_path / "recs.parquet"
    job = Recommender.open(OfflineConfig(bundle=tiny_bundle.path, out=out, progress=False))
    with pytest.raises(OfflineError, match="user 'u2'"):
        job.run(["u1", "u2"], [[job.engine.catalog.ids[0]], ["x" * 500, "1"]])
    assert not out.exists() and not list(tmp_path.iterdir())
