"""``seater demo``: the whole system on a quick preset, end to end, in a few minutes.

train SASRec (embeddings) -> balanced k-ary tree -> train SEATER -> export the bundle ->
start the service in its own process -> POST /retrieve with a real user's history ->
print the answer -> stop the service. Quality is far below a full run (a few epochs,
capped batches); the point is that every stage a deployment uses runs for real.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict
from pathlib import Path
from typing import Any

from training.config import build
from training.data import DataOptions, load_dataset
from training.export import export_run
from training.publish import default_version
from training.sasrec.pipeline import SASRecRun, run_sasrec
from training.sasrec.presets import PRESETS as SASREC_PRESETS
from training.seater.pipeline import SeaterRun, run_seater
from training.seater.presets import PRESETS as SEATER_PRESETS

log = logging.getLogger(__name__)

# the quick preset: a few epochs, capped batches and evaluation subsets
QUICK = {"train.epochs": 2, "train.patience": 2, "train.max_eval_users": 2000,
         "train.final_eval_users": 2000, "train.progress": True}


def quick_configs(dataset: str, out: Path, data: DataOptions | None = None
                  ) -> tuple[SASRecRun, SeaterRun]:
    """Both runs through the config builder, so each gets its default preset as a
    ``seater train`` command would."""
    common = {"dataset": dataset, "out_dir": str(out),
              **{f"data.{k}": v for k, v in asdict(data or DataOptions()).items()}}
    sasrec = build(SASRecRun, None, {**common, **QUICK, "model.d_model": 64,
                                     "model.max_len": 50, "train.epochs": 3,
                                     "train.patience": 3}, presets=SASREC_PRESETS)
    seater = build(SeaterRun, None, {**common, **QUICK, "beam_size": 50, "tree.ids": "balanced",
                                     "tree.k": 16, "train.batch_size": 256,
                                     "train.max_batches": 150}, presets=SEATER_PRESETS)
    return sasrec, seater


def _request(url: str, body: dict[str, Any] | None = None, timeout: float = 10.0) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


def _wait_ready(url: str, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the service exited with code {proc.returncode} before ready")
        try:
            _request(url + "/v2/health/ready", timeout=1.0)
            return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.3)
    raise RuntimeError(f"the service was not ready after {timeout:.0f} s")


def run_demo(dataset: str, out: Path, port: int, artifacts: Path = Path("artifacts"),
             data_options: DataOptions | None = None) -> dict[str, Any]:
    """Returns the bundle path, the first response and the model info; prints the answer."""
    out = Path(out)
    shutil.rmtree(out, ignore_errors=True)
    data = load_dataset(dataset, data_options)
    log.info("demo on %s: %s", data.name, json.dumps(data.stats()))
    sasrec_cfg, seater_cfg = quick_configs(dataset, out, data_options)

    log.info("[1/5] SASRec (item embeddings for the tree)")
    run_sasrec(sasrec_cfg, resume=False, data=data)
    log.info("[2/5] tree + SEATER (generation + alignment + ranking losses)")
    entry = run_seater(seater_cfg, resume=False, data=data)[0]
    run_dir = Path(entry["run_dir"])

    log.info("[3/5] export the bundle")
    bundle = export_run(run_dir, artifacts, default_version("demo-" + data.name))
    items = json.loads((bundle / "items.json").read_text())

    log.info("[4/5] start the service on port %d", port)
    env = {**os.environ, "SEATER_LOG_JSON": "false"}
    env.pop("REDIS_URL", None)  # the demo needs nothing running: in-process cache
    # one worker process: the repeated request must reach the worker whose in-process
    # cache holds its state (several workers share states only through Redis)
    proc = subprocess.Popen(
        [sys.executable, "-m", "service", "--artifacts", str(bundle), "--port", str(port),
         "--workers", "1"],
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, proc)
        user = data.sequences[0]
        history = [str(data.item_ids[i]) for i in user[:-1]]
        body = {"history": history, "n": 10, "beam_size": 50}
        log.info("[5/5] POST /retrieve for user %s (%d history items)", data.user_ids[0],
                 len(history))
        first = _request(url + "/retrieve", body)
        again = _request(url + "/retrieve", body)
        model_info = _request(url + "/v1/model")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    titles = items.get("titles")
    index = {x: i for i, x in enumerate(items["ids"])}
    lines = [f"history (most recent last) of user {data.user_ids[0]}:"]
    for x in history[-5:]:
        lines.append(f"  {x:>6}  {titles[index[x]] if titles else ''}")
    lines.append(f"top-10 from SEATER bundle {first['model_version']} "
                 f"(encoder state cached on repeat: {again['cached']}):")
    for hit in first["items"]:
        lines.append(f"  {hit['id']:>6}  code {hit['code']}  score {hit['score']:.3f}  "
                     f"{hit.get('title') or ''}")
    lines.append(f"actual next item: {data.item_ids[user[-1]]} "
                 f"{titles[int(user[-1])] if titles else ''}")
    lines.append(f"bundle: {bundle} (`{Path(artifacts) / 'current'}` points at it: "
                 "`docker compose up --build` serves it)")
    print("\n".join(lines))  # noqa: T201 - the demo's output is for the person running it
    return {"bundle": str(bundle), "response": first, "model": model_info}
