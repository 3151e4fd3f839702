"""Shared pieces of the LMIndexer tests: tiny sizes, a fast schedule, a word-hashing
text encoder standing in for MiniLM, and a four-topic corpus."""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np

from training.lmindexer.config import IndexerParams, ScheduleParams
from training.lmindexer.text import tokenize
from training.lmindexer.train import Corpus

TINY = IndexerParams(k=4, levels=2, d_text=24, d_code=8, hidden=16, d_recon=16, dropout=0.0)
FAST = ScheduleParams(recon_warmup_epochs=1, encoder_warmup_epochs=1, epochs=2, batch_size=16,
                      progress=False, threads=0)


def hashing_encoder(dim: int = 48):
    """Stand-in for MiniLM (slow to load): texts -> unit vectors, the sum
    of one fixed random vector per word, so texts sharing words are close."""

    def encode(texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), dim), np.float32)
        for i, text in enumerate(texts):
            for w in tokenize(text):
                out[i] += np.random.default_rng(zlib.crc32(w.encode())).normal(size=dim)
            out[i] += 1e-3
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    return encode


def tiny_corpus(n: int = 40, d: int = 24, seed: int = 0) -> Corpus:
    """Four topics, each with its own words; x is a noisy topic vector."""
    rng = np.random.default_rng(seed)
    topic = np.arange(n) % 4
    centres = rng.normal(size=(4, d))
    x = centres[topic] + 0.3 * rng.normal(size=(n, d))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    bags = np.full((n, 3), -1, np.int64)
    bags[:, 0] = topic * 3
    bags[:, 1] = topic * 3 + 1 + (np.arange(n) // 4) % 2
    return Corpus(x, bags, 12)
