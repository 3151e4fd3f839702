"""The traffic every load test replays: a random user's sequence cut at a random point.

The service then sees what a live user would have had at that moment. Shared by
``locustfile.py`` (which draws a history per request) and ``benchmarks.service``'s wrk
driver (which writes a file of request bodies that ``wrk_retrieve.lua`` cycles through),
so both load generators send the same kind of requests.
"""

from __future__ import annotations

import json
import random
from pathlib import Path


def read_sequences(path: Path) -> list[list[str]]:
    """Per-user item sequences (chronological), users with at least two items."""
    sequences = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            parts = line.split()
            if len(parts) >= 3:  # user id + at least two items
                sequences.append(parts[1:])
    return sequences


class Histories:
    """Draws realistic histories, at most ``max_history`` items, reproducibly from ``seed``."""

    def __init__(self, sequences: list[list[str]], seed: int, max_history: int = 50) -> None:
        if not sequences:
            raise ValueError("no user has two or more items: nothing to draw histories from")
        self.sequences = sequences
        self.max_history = max_history
        self.rng = random.Random(seed)

    def draw(self) -> list[str]:
        seq = self.rng.choice(self.sequences)
        end = self.rng.randint(1, len(seq) - 1)  # keep at least the next item unseen
        return seq[max(0, end - self.max_history) : end]


def write_bodies(path: Path, histories: Histories, n: int, beam: int, count: int) -> Path:
    """``count`` POST /retrieve bodies, one JSON object per line (what the Lua script reads)."""
    with path.open("w", encoding="utf-8") as fh:
        for _ in range(count):
            body = {"history": histories.draw(), "n": n, "beam_size": max(beam, n)}
            fh.write(json.dumps(body, separators=(",", ":")) + "\n")
    return path
