"""SASRec's training batches and ranking, in the trainer's ``Task`` shape."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from training.batching import length_batches
from training.data.sequences import Sequences
from training.metrics import topk_indices
from training.sasrec.model import SASRec


class SASRecTask:
    """Each training sequence gives one row: its last ``max_len + 1`` items, shifted.

    Rows are left-padded once up front; a batch is trimmed to the longest row in it,
    which is exact because padded positions are masked and positions right-aligned.
    Batches are plainly shuffled, not length-bucketed: every SASRec row reported so far
    was trained that way.
    """

    def __init__(self, model: SASRec, train: Sequences, device: torch.device) -> None:
        self.model = model
        self.device = device
        keep = np.flatnonzero(train.lengths >= 2)
        windows = train.take(keep).tail(model.p.max_len + 1)
        self.rows = windows.to_padded(model.p.max_len + 1, pad=model.pad_id)  # (U, L+1)
        self.lengths = np.minimum(windows.lengths - 1, model.p.max_len)

    def n_batches(self, batch_size: int) -> int:
        return -(-len(self.rows) // batch_size)

    def batches(self, rng: np.random.Generator, batch_size: int) -> Iterator[np.ndarray]:
        yield from length_batches(rng, self.lengths, batch_size, bucket=False)

    def examples_in(self, batch: np.ndarray) -> int:
        return len(batch)

    def loss(self, batch: np.ndarray, module: torch.nn.Module | None = None
             ) -> tuple[torch.Tensor, dict[str, float]]:
        width = int(self.lengths[batch].max())
        rows = torch.from_numpy(self.rows[batch, -(width + 1) :]).to(self.device)
        loss = (module or self.model)(rows[:, :-1], rows[:, 1:])
        return loss, {"total": loss.item()}

    @torch.no_grad()
    def recommend(self, histories: Sequences, k: int, exclude: Sequences | None) -> np.ndarray:
        model = self.model
        model.eval()
        seq = torch.from_numpy(histories.to_padded(model.p.max_len, pad=model.pad_id))
        scores = model.scores(seq.to(self.device)).float()
        if exclude is not None and exclude.values.size:
            scores[torch.from_numpy(exclude.row_ids()), torch.from_numpy(exclude.values)] = (
                float("-inf")
            )
        return topk_indices(scores.cpu().numpy(), k)
