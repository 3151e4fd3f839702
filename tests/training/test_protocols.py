import numpy as np
import pytest

from training.data import InteractionData, Sequences
from training.protocols import loo_split, make_split, seater_split


def tiny(rows):
    n_items = max(max(r) for r in rows) + 1
    return InteractionData(
        name="tiny",
        sequences=Sequences.from_lists(rows),
        item_ids=np.array([str(i) for i in range(n_items)]),
        user_ids=np.array([str(u) for u in range(len(rows))]),
    )


def test_loo_split_by_hand():
    data = tiny([[0, 1, 2, 3], [4, 5, 6]])
    s = loo_split(data)
    assert [r.tolist() for r in s.train] == [[0, 1], [4]]
    assert [r.tolist() for r in s.valid.contexts] == [[0, 1], [4]]
    assert [r.tolist() for r in s.valid.targets] == [[2], [5]]
    assert [r.tolist() for r in s.test.contexts] == [[0, 1, 2], [4, 5]]
    assert [r.tolist() for r in s.test.targets] == [[3], [6]]
    refit = loo_split(data, refit=True)
    assert [r.tolist() for r in refit.train] == [[0, 1, 2], [4, 5]]
    assert refit.describe()["refit_on_validation"] is True


def test_loo_needs_three_items():
    with pytest.raises(ValueError, match="at least 3"):
        loo_split(tiny([[0, 1]]))


def test_seater_split_users_disjoint_and_80_20_history():
    rows = [list(range(u, u + 5 + u % 6)) for u in range(100)]  # lengths 5..10
    s = seater_split(tiny(rows), seed=3)
    assert (len(s.train), len(s.valid), len(s.test)) == (80, 10, 10)
    valid_u, test_u = set(s.valid.users.tolist()), set(s.test.users.tolist())
    assert not valid_u & test_u
    for ev in (s.valid, s.test):
        for u, ctx, tgt in zip(ev.users, ev.contexts, ev.targets, strict=True):
            full = rows[u]
            k = int(len(full) * 0.8)
            assert ctx.tolist() == full[:k] and tgt.tolist() == full[k:]
    # length 5 -> 4 context, 1 target; length 10 -> 8 context, 2 targets
    assert {len(t) for t in s.test.targets} <= {1, 2}


def test_seater_split_is_deterministic_per_seed():
    data = tiny([list(range(u, u + 6)) for u in range(50)])
    a, b, c = seater_split(data, seed=1), seater_split(data, seed=1), seater_split(data, seed=2)
    assert np.array_equal(a.test.users, b.test.users)
    assert not np.array_equal(a.test.users, c.test.users)


def test_make_split_rejects_unknown_protocol_and_seater_refit():
    data = tiny([[0, 1, 2]])
    with pytest.raises(ValueError, match="unknown protocol"):
        make_split(data, "holdout")
    with pytest.raises(ValueError, match="loo protocol only"):
        make_split(data, "seater", refit=True)
