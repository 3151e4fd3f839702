"""A team's own data, start to finish, the way the README tells them (issue 16): a CSV log
with string ids, uneven users, ISO times and its own column names, plus an item file with
titles, categories and a brand -> `seater train sasrec` -> `seater train seater` ->
`seater export` (no --version) -> `seater serve` (a real process, on artifacts/current) ->
POST /retrieve with filters -> `seater recommend` for every user.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
from typer.testing import CliRunner

from tests.service.server import free_port
from training.cli import app

N_USERS, N_ITEMS = 60, 40
COLS = ["--user-col", "uid", "--item-col", "sku", "--time-col", "ts"]
TINY = ["--d-model", "16", "--max-len", "8", "--epochs", "1", "--batch-size", "64",
        "--threads", "1", "--set", "train.progress=false"]
SEATER = Path(sys.executable).parent / "seater"


def write_log(folder: Path) -> tuple[Path, Path]:
    """log.csv (uid, sku, ts) and items.csv (sku, title, categories, brand)."""
    rng = np.random.default_rng(1)
    rows = []
    for u in range(N_USERS):
        n = 2 if u % 4 == 0 else int(rng.integers(3, 10))  # a quarter with only 2 events
        items = rng.choice(N_ITEMS, size=n, replace=False)
        if u < N_ITEMS // 3:  # every item is in the log at least once
            items[0] = u * 3 % N_ITEMS
        for t, i in enumerate(items):
            rows.append({"uid": f"user-{u}", "sku": f"sku-{i}",
                         "ts": f"2023-05-{1 + t:02d}T{8 + u % 10:02d}:30:00Z"})
    log = folder / "log.csv"
    pd.DataFrame(rows).to_csv(log, index=False)
    paths = {0: "Beauty > Makeup > Lips", 1: "Beauty > Skin", 2: "Beauty > Makeupx > Eyes",
             3: "Home > Makeup"}  # level-wise traps: Makeupx, and Makeup under Home
    meta = pd.DataFrame({
        "sku": [f"sku-{i}" for i in range(N_ITEMS)],
        "title": [f"Product {i}" for i in range(N_ITEMS)],
        "categories": [paths[i % 4] + (" | Sale" if i % 5 == 0 else "") for i in range(N_ITEMS)],
        "brand": [("Acme", "Zed", "Nova")[i % 3] for i in range(N_ITEMS)],
    })
    items = folder / "items.csv"
    meta.to_csv(items, index=False)
    return log, items


def cli(*args: str) -> str:
    res = CliRunner().invoke(app, list(args))
    assert res.exit_code == 0, res.output
    return res.stdout


def wait_ready(url: str, proc: subprocess.Popen, log: Path, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"seater serve exited:\n{log.read_text()[-3000:]}"
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"seater serve not ready in {timeout_s}s:\n{log.read_text()[-3000:]}")


def test_own_csv_log_to_filtered_answers_and_batch_recs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # runs/ and artifacts/ land where a user would have them
    log, items = write_log(tmp_path)
    data = ["-d", "log.csv", *COLS, "--items", "items.csv"]
    cli("train", "sasrec", *data, *TINY, "--negatives", "8")
    cli("train", "seater", *data, *TINY, "-k", "4")
    bundle = Path(cli("export", "--run", "runs/log/seater-loo-balanced-k4").strip())
    assert bundle.parent == Path("artifacts") and bundle.name.startswith("log-")
    assert Path("artifacts/current").resolve() == bundle.resolve()

    meta = pd.read_csv(items).set_index("sku")
    history = ["sku-1", "sku-7", "sku-12"]  # no Beauty > Makeup item among them
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL" and not k.startswith("SEATER_")}
    server_log = tmp_path / "serve.log"
    with server_log.open("w") as out:
        proc = subprocess.Popen([str(SEATER), "serve", "--port", str(port)], cwd=tmp_path,
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_ready(url, proc, server_log)
        makeup = httpx.post(f"{url}/retrieve", timeout=30, json={
            "history": history, "n": 5, "filters": {"categories": ["Beauty > Makeup"]}})
        branded = httpx.post(f"{url}/retrieve", timeout=30, json={
            "history": history, "n": 5, "beam_size": 5,
            "filters": {"categories": ["Beauty>Makeup"], "attributes": {"brand": ["Acme", "Zed"]}}})
        unknown = httpx.post(f"{url}/retrieve", timeout=30, json={
            "history": history, "filters": {"attributes": {"colour": ["red"]}}})
        model = httpx.get(f"{url}/v1/model", timeout=10).json()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    assert makeup.status_code == 200, makeup.text
    assert model["version"] == bundle.name
    assert model["filters"] == {"categories": True, "attributes": ["brand"]}
    got = makeup.json()["items"]
    assert len(got) == 5  # 10 items lie under Beauty > Makeup, none of them in the history
    for item in got:  # every answer is under Beauty > Makeup (not Makeupx, not Home)
        assert meta.loc[item["id"], "categories"].startswith("Beauty > Makeup > ")
        assert item["title"] == meta.loc[item["id"], "title"]
    ids = [i["id"] for i in branded.json()["items"]]
    assert len(ids) == 5  # 7 Acme/Zed items under Makeup; a beam of 5 still finds 5
    assert all(meta.loc[i, "categories"].startswith("Beauty > Makeup > ")
               and meta.loc[i, "brand"] in ("Acme", "Zed") for i in ids)
    assert unknown.status_code == 422 and "'brand'" in unknown.json()["message"]

    out = cli("recommend", *data, "--out", "recs.parquet", "--batch-size", "16",
              "--threads", "1").splitlines()
    assert out[0] == "recs.parquet" and "users/s" in out[1]
    recs = pd.read_parquet(tmp_path / "recs.parquet")
    users = set(pd.read_csv(log)["uid"])
    assert set(recs["user"]) == users  # one row set per user, the 2-event users included
    sizes = recs.groupby("user")["rank"].agg(["count", "min", "max"])
    assert (sizes["count"] == 10).all() and (sizes["min"] == 1).all() and (sizes["max"] == 10).all()
    assert recs["title"].eq(recs["item"].map(meta["title"])).all()
    seen = pd.read_csv(log).groupby("uid")["sku"].agg(set)
    assert not any(set(g["item"]) & seen[u] for u, g in recs.groupby("user"))
