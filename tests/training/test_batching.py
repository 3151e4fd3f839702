"""The length-bucketed batcher both tasks use."""

import numpy as np

from training.batching import length_batches


def test_every_example_once_in_order_of_the_shuffle_without_buckets():
    lengths = np.arange(23)
    got = length_batches(np.random.default_rng(4), lengths, 5, bucket=False)
    want = np.random.default_rng(4).permutation(23)
    assert [len(b) for b in got] == [5, 5, 5, 5, 3]
    assert np.array_equal(np.concatenate(got), want)


def test_buckets_group_similar_lengths_and_keep_every_example():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 50, size=1000)
    got = length_batches(np.random.default_rng(1), lengths, 8, bucket=True)
    assert sorted(np.concatenate(got).tolist()) == list(range(1000))
    spread = np.mean([np.ptp(lengths[b]) for b in got])
    shuffled = length_batches(np.random.default_rng(1), lengths, 8, bucket=False)
    assert spread < 0.2 * np.mean([np.ptp(lengths[b]) for b in shuffled])
    again = length_batches(np.random.default_rng(1), lengths, 8, bucket=True)
    assert all(np.array_equal(a, b) for a, b in zip(got, again, strict=True))
