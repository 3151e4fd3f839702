"""Helpers shared by tests of several packages (no test module imports another)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch


def fit_briefly(task, model: torch.nn.Module, batch_size: int, steps: int,
                rng: np.random.Generator | None = None, lr: float = 1e-2) -> torch.nn.Module:
    """A few Adam steps on ``task.loss`` (seeded), so scores are not uniform: ties would
    make top-n comparisons meaningless. Returns the model in eval mode."""
    opt = torch.optim.Adam(model.parameters(), lr)
    rng = rng if rng is not None else np.random.default_rng(0)
    for batch, _ in zip(task.batches(rng, batch_size), range(steps), strict=False):
        loss, _ = task.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def assert_one_error_line(res, *needles: str) -> str:
    """A CLI result that is a user's mistake: exit 2, no traceback, exactly one ``error:``
    line holding every needle. Returns that line."""
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, res.output
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


class ToyNodes(NamedTuple):
    """Node tokens of a four-node tree for the alignment loss by hand."""

    emb: torch.Tensor
    parent: torch.Tensor
    tokens: torch.Tensor
    tau: float

    def c(self, a: int, b: int) -> float:
        """Cosine of nodes ``a`` and ``b`` over tau: one logit of the alignment loss."""
        e = torch.nn.functional.normalize(self.emb, dim=-1)
        return float(e[a] @ e[b]) / self.tau


def toy_nodes() -> ToyNodes:
    """Nodes 0 (the root), 1 and 2 (its children) and 3 (a child of 1): small enough that
    every InfoNCE term can be written out, with an anchor that has a child."""
    return ToyNodes(emb=torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [1.0, -1.0]]),
                    parent=torch.tensor([-1, 0, 0, 1]), tokens=torch.tensor([0, 1, 2, 3]),
                    tau=0.5)


def random_tree(n_items: int, k: int, seed: int):
    """A balanced tree over random 4-d vectors: the shape of a real one, built in ms."""
    from indexer import BuildConfig, build_tree

    rng = np.random.default_rng(seed)
    tree, _ = build_tree(rng.normal(size=(n_items, 4)).astype(np.float32),
                         BuildConfig(k=k, progress=False))
    return tree
