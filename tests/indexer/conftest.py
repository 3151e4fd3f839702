"""Shared helpers for the indexer tests: small trees and exact, batch-independent scorers."""

from __future__ import annotations

import numpy as np
import pytest

from indexer import BuildConfig, IdTree, TableScorer, build_tree
from indexer.build import assemble

# The 1-D example whose codes are worked out by hand in test_build.py:
# x = [0, 1, 3, 10, 11], k = 2 -> codes [0,0,0] [0,0,1] [0,1,0] [1,0,0] [1,1,0].
TINY_X = np.array([[0.0], [1.0], [3.0], [10.0], [11.0]])
TINY_CODES = np.array([[0, 0, 0], [0, 0, 1], [0, 1, 0], [1, 0, 0], [1, 1, 0]])


@pytest.fixture
def tiny() -> IdTree:
    return assemble(TINY_CODES, k=2)


def make_tree(n: int, k: int, method: str = "balanced", seed: int = 0, d: int = 4) -> IdTree:
    """A quick tree (fast splitter) over random embeddings."""
    x = np.random.default_rng(seed).standard_normal((n, d))
    tree, _ = build_tree(x, BuildConfig(k=k, method=method, splitter="fast", seed=seed,
                                        progress=False, max_iter=10))
    return tree


def clustered(n: int, seed: int = 0) -> np.ndarray:
    """Embeddings with one dense blob and scattered points: k-means trees get ragged."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 3)) * 10
    x[: n // 2] = rng.standard_normal((n // 2, 3)) * 0.01
    return x


def table_scorer(tree: IdTree, batch: int, seed: int = 0) -> TableScorer:
    rng = np.random.default_rng(seed)
    return TableScorer(tree.children, rng.standard_normal((batch, tree.n_nodes)).astype(np.float32))
