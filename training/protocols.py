"""The two evaluation protocols of DESIGN.md, as data splits.

``loo`` (leave-one-out; TIGER, LMIndexer, the Amazon benchmarks): per user, the last item
is the test target and the second-to-last the validation target; training sees the rest.
At test time the context includes the validation item. With ``refit`` the training part
also includes the validation item (the model is retrained on it before testing, as the
eSASRec study's holdout run does); validation then no longer measures held-out data.

``seater`` (SEATER/ComiRec): users are split 8:1:1; validation and test users contribute
no training data; their first 80% of the history is the context and the remaining 20%
the ground-truth set.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from training.data.dataset import InteractionData
from training.data.sequences import Sequences

log = logging.getLogger(__name__)

PROTOCOLS = ("loo", "seater")


@dataclass(frozen=True)
class EvalSet:
    """Contexts and their ground-truth sets. ``users`` are row indices into the dataset."""

    users: np.ndarray
    contexts: Sequences
    targets: Sequences

    def __len__(self) -> int:
        return len(self.users)

    def subset(self, rows: np.ndarray) -> EvalSet:
        return EvalSet(self.users[rows], self.contexts.take(rows), self.targets.take(rows))


@dataclass(frozen=True)
class Split:
    protocol: str
    train: Sequences
    valid: EvalSet
    test: EvalSet
    refit: bool = False
    seed: int = 0
    dropped_users: int = 0  # too short for the protocol (loo needs 3 items)

    def describe(self) -> dict:
        out = {
            "protocol": self.protocol,
            "refit_on_validation": self.refit,
            "split_seed": self.seed,
            "train_sequences": len(self.train),
            "train_items": int(self.train.values.size),
            "valid_users": len(self.valid),
            "test_users": len(self.test),
        }
        if self.dropped_users:  # only where it happens, so benchmark rows stay as they were
            out["dropped_users"] = self.dropped_users
        return out


LOO_MIN_ITEMS = 3  # one to train on, one to validate, one to test


def loo_split(data: InteractionData, refit: bool = False) -> Split:
    """Users with fewer than three items cannot be split; they are left out and counted."""
    users = np.flatnonzero(data.sequences.lengths >= LOO_MIN_ITEMS)
    dropped = data.n_users - len(users)
    if not len(users):
        raise ValueError(f"leave-one-out needs users with at least {LOO_MIN_ITEMS} items; "
                         f"none of the {data.n_users} users of {data.name} has that many")
    if dropped:
        log.warning("leave-one-out: %d of %d users have fewer than %d items and are left out",
                    dropped, data.n_users, LOO_MIN_ITEMS)
    seqs = data.sequences.take(users) if dropped else data.sequences
    train = seqs.head(-1 if refit else -2)
    valid_ctx = seqs.head(-2)
    valid_tgt = seqs.slice_rows(seqs.lengths - 2, seqs.lengths - 1)
    test_ctx = seqs.head(-1)
    test_tgt = seqs.tail(1)
    return Split(
        "loo",
        train=train,
        valid=EvalSet(users, valid_ctx, valid_tgt),
        test=EvalSet(users, test_ctx, test_tgt),
        refit=refit,
        dropped_users=dropped,
    )


def seater_split(
    data: InteractionData,
    seed: int = 0,
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
    context_frac: float = 0.8,
) -> Split:
    seqs = data.sequences
    rng = np.random.default_rng(seed)
    perm = rng.permutation(data.n_users)
    n_train = int(round(ratios[0] * data.n_users))
    n_valid = int(round(ratios[1] * data.n_users))
    train_u = np.sort(perm[:n_train])
    valid_u = np.sort(perm[n_train : n_train + n_valid])
    test_u = np.sort(perm[n_train + n_valid :])

    def eval_set(us: np.ndarray) -> EvalSet:
        part = seqs.take(us)
        lengths = part.lengths
        k = np.clip((lengths * context_frac).astype(np.int64), 1, np.maximum(lengths - 1, 1))
        return EvalSet(us, part.head(k), part.slice_rows(k, lengths))

    return Split(
        "seater",
        train=seqs.take(train_u),
        valid=eval_set(valid_u),
        test=eval_set(test_u),
        seed=seed,
    )


def make_split(data: InteractionData, protocol: str, seed: int = 0, refit: bool = False) -> Split:
    if protocol == "loo":
        return loo_split(data, refit=refit)
    if protocol == "seater":
        if refit:
            raise ValueError("refit applies to the loo protocol only")
        return seater_split(data, seed=seed)
    raise ValueError(f"unknown protocol '{protocol}'; choose one of {', '.join(PROTOCOLS)}")
