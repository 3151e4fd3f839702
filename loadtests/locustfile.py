"""Load test for POST /retrieve with realistic histories drawn from a dataset.

Each request takes a random user of the interactions file and a random prefix of that
user's sequence (the service sees what a live user would have had at that moment),
capped at SEATER_LOADTEST_MAX_HISTORY items, and asks for n items with a given beam.

    locust -f loadtests/locustfile.py --headless -u 50 -r 50 -t 30s --host http://127.0.0.1:8000

Environment:
    SEATER_LOADTEST_DATA         interactions file, one user per line "user item item ..."
                                 (default data/beauty/interactions.txt; item ids are the
                                 integers as strings, as the bundle's items.json has them)
    SEATER_LOADTEST_N            items per request (default 10)
    SEATER_LOADTEST_BEAM         beam size (default 50)
    SEATER_LOADTEST_MAX_HISTORY  longest history sent (default 50)
    SEATER_LOADTEST_WAIT_S       think time per user between requests (default 0: closed loop)
    SEATER_LOADTEST_SEED         RNG seed for reproducible runs (default 0)
If the file is missing, histories are drawn from ids "1".."n_items" (n_items from
GET /v1/model), which matches datasets whose ids are 1-based integers.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

from histories import Histories, read_sequences  # beside this file: locust puts it on the path
from locust import FastHttpUser, constant, events, task

DATA = Path(os.environ.get("SEATER_LOADTEST_DATA", "data/beauty/interactions.txt"))
N = int(os.environ.get("SEATER_LOADTEST_N", "10"))
BEAM = int(os.environ.get("SEATER_LOADTEST_BEAM", "50"))
MAX_HISTORY = int(os.environ.get("SEATER_LOADTEST_MAX_HISTORY", "50"))
WAIT_S = float(os.environ.get("SEATER_LOADTEST_WAIT_S", "0"))
SEED = int(os.environ.get("SEATER_LOADTEST_SEED", "0"))


HISTORIES: Histories | None = None


@events.test_start.add_listener
def load_histories(environment, **_kwargs) -> None:
    """Read the dataset once per process (workers each read their own copy)."""
    global HISTORIES
    if DATA.is_file():
        HISTORIES = Histories(read_sequences(DATA), SEED, MAX_HISTORY)
        print(f"loadtest: {len(HISTORIES.sequences)} user sequences from {DATA}")
        return
    import json
    import urllib.request

    with urllib.request.urlopen(f"{environment.host}/v1/model", timeout=10) as response:
        n_items = json.load(response)["n_items"]
    rng = random.Random(SEED)
    fake = [[str(rng.randint(1, n_items)) for _ in range(rng.randint(2, 30))] for _ in range(5000)]
    HISTORIES = Histories(fake, SEED, MAX_HISTORY)
    print(f"loadtest: {DATA} not found; drawing ids 1..{n_items}")


class RetrievalUser(FastHttpUser):
    """A client that retrieves top-n for a fresh history, back to back (closed loop)."""

    wait_time = constant(WAIT_S)

    @task
    def retrieve(self) -> None:
        assert HISTORIES is not None, "test_start did not run"
        body = {"history": HISTORIES.draw(), "n": N, "beam_size": max(BEAM, N)}
        with self.client.post("/retrieve", json=body, name="/retrieve", catch_response=True) as r:
            if r.status_code == 200:
                items = r.json().get("items", [])
                if not items:
                    r.failure("200 with no items")
            elif r.status_code == 503:
                r.failure(f"overloaded (Retry-After {r.headers.get('Retry-After')})")
            else:
                r.failure(f"{r.status_code}: {r.text[:200]}")
