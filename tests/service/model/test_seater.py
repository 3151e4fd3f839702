"""The SEATER engine on a REAL bundle (``tiny_bundle``: the real export code).

The engine's own logic - padding, slicing, re-batching, IOBinding, result shaping - is
checked end to end through onnxruntime against the exported graphs, and its answers
against the exhaustive oracle.
"""

from __future__ import annotations

import numpy as np
import pytest

from indexer import exhaustive_search
from service.core.cache import decode_state, encode_state
from service.model.bundle import load_seater_bundle
from service.model.engine import smoke_check
from service.model.seater import SeaterEngine
from service.model.sessions import CPU, RuntimeOptions
from service.settings import Settings

HISTORIES = [
    np.array([3, 1, 4, 1, 5]),
    np.array([9]),
    np.array([2, 6, 5, 3, 5, 8, 9, 7, 9, 3, 2, 3, 8, 4]),  # longer than max_history (12)
    np.array([7, 7]),
]


def options(**settings) -> RuntimeOptions:
    return RuntimeOptions.from_settings(Settings(providers="cpu", **settings))


@pytest.fixture(scope="module")
def engine(tiny_bundle) -> SeaterEngine:
    return SeaterEngine(load_seater_bundle(tiny_bundle.path), options(intra_op_threads=1))


def test_engine_loads_reports_and_passes_the_smoke_test(engine, tiny_bundle):
    smoke_check(engine)
    info = engine.info
    tree = tiny_bundle.tree
    assert (info.version, info.kind, info.n_items) == ("tiny-v1", "seater", 90)
    assert (info.k, info.depth, info.n_nodes) == (4, tree.max_depth, tree.n_nodes)
    assert info.device == "cpu" and info.providers == [CPU]
    assert info.max_history == 12 and info.pad_id == -1
    assert engine.catalog.external_id(0) == str(tiny_bundle.data.item_ids[0])


def test_encoder_states_are_unpadded_and_independent_of_the_batch(engine):
    together = engine.encode(HISTORIES)
    for h, state in zip(HISTORIES, together, strict=True):
        alone = engine.encode([h])[0]
        t = min(len(h), 12)
        assert state.memory_k.shape[2] == t and state.memory_bias.shape == (t,)
        np.testing.assert_allclose(state.memory_k, alone.memory_k, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(state.memory_v, alone.memory_v, rtol=1e-5, atol=1e-5)
        assert (state.memory_bias == 0).all()


def test_histories_longer_than_max_history_keep_the_most_recent(engine):
    long = np.arange(20)
    np.testing.assert_allclose(
        engine.encode([long])[0].memory_k, engine.encode([long[-12:]])[0].memory_k, atol=1e-6
    )


def test_batched_search_equals_one_request_at_a_time(engine):
    states = engine.encode(HISTORIES)
    n = np.array([5, 3, 8, 1])
    beam = np.array([10, 5, 12, 40])
    together = engine.search(states, n, beam, HISTORIES)
    for b in range(len(HISTORIES)):
        alone = engine.search([states[b]], n[b : b + 1], beam[b : b + 1], [HISTORIES[b]])[0]
        np.testing.assert_array_equal(together[b].items, alone.items)
        np.testing.assert_allclose(together[b].scores, alone.scores, rtol=1e-5, atol=1e-5)
        assert len(together[b].items) == n[b]
        assert not set(together[b].items.tolist()) & set(HISTORIES[b].tolist())
        np.testing.assert_array_equal(together[b].codes, engine.tree.codes_of(alone.items))


def decoder_scorer(engine: SeaterEngine, state):
    """The exported decoder, called directly (no IOBinding) on one request's memory."""
    feeds = {
        "memory_k": state.memory_k[:, None],
        "memory_v": state.memory_v[:, None],
        "memory_bias": state.memory_bias[None],
        "children": engine.tree.children.astype(np.int64),
        "node_emb": engine.bundle.embeddings,
    }
    return lambda prefix: engine.decoder.run(None, {"prefix": prefix, **feeds})[0]


@pytest.mark.parametrize("b", range(len(HISTORIES)))
def test_a_beam_as_wide_as_the_catalog_is_exact(engine, b):
    """With beam = n_items nothing is pruned: the answer is the exhaustive oracle's."""
    state = engine.encode([HISTORIES[b]])[0]
    hit = engine.search([state], np.array([7]), np.array([90]), [HISTORIES[b]])[0]
    oracle = exhaustive_search(engine.tree, decoder_scorer(engine, state), 1, 7,
                               exclude=[HISTORIES[b]])
    assert hit.items.tolist() == oracle.items[0].tolist()
    np.testing.assert_allclose(hit.scores, oracle.scores[0], rtol=1e-4, atol=1e-4)
    assert np.all(np.diff(hit.scores) <= 1e-6)


def test_cached_float16_states_give_the_same_top_items(engine):
    states = engine.encode(HISTORIES)
    thawed = [decode_state(encode_state(s, "float16")) for s in states]
    n, beam = np.full(4, 5), np.full(4, 20)
    none = [np.zeros(0, np.int64)] * 4
    fresh = engine.search(states, n, beam, none)
    cached = engine.search(thawed, n, beam, none)
    for a, b in zip(fresh, cached, strict=True):
        assert a.items[:3].tolist() == b.items[:3].tolist()


def test_small_steps_run_on_a_one_thread_session_with_the_same_answers(engine, tiny_bundle):
    bundle = load_seater_bundle(tiny_bundle.path)
    split = SeaterEngine(bundle, options(intra_op_threads=2, small_step_rows=64))
    assert split.small_decoder.get_session_options().intra_op_num_threads == 1
    assert SeaterEngine(bundle, options(intra_op_threads=2,
                                        small_step_rows=0)).small_decoder is None
    assert engine.small_decoder is None  # already one thread: nothing to split
    used = []
    for name in ("small_decoder", "decoder"):  # record which session ran each step
        session = getattr(split, name)
        run = session.run_with_iobinding
        session.run_with_iobinding = lambda b, run=run, name=name: (used.append(name), run(b))
    states = split.encode(HISTORIES)
    n, beam = np.array([5, 3, 8, 1]), np.array([10, 5, 12, 40])  # steps of 4 to 160 rows
    got = split.search(states, n, beam, HISTORIES)
    want = engine.search(engine.encode(HISTORIES), n, beam, HISTORIES)
    assert {"small_decoder", "decoder"} <= set(used)
    for a, b in zip(got, want, strict=True):
        assert a.items.tolist() == b.items.tolist()
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)


def test_a_wrapped_beam_search_sees_every_decoder_step_and_changes_no_answer(engine, tiny_bundle):
    """The engine benchmark times decoder steps by handing the engine a wrapped search."""
    from indexer import beam_search

    steps: list[tuple[int, ...]] = []

    def counting(tree, scorer, **kwargs):
        def timed(prefix: np.ndarray) -> np.ndarray:
            steps.append(prefix.shape)
            return scorer(prefix)

        return beam_search(tree, timed, **kwargs)

    wrapped = SeaterEngine(load_seater_bundle(tiny_bundle.path), options(intra_op_threads=1),
                           counting)
    n, beam = np.array([5, 3, 8, 1]), np.array([10, 5, 12, 40])
    got = wrapped.search(wrapped.encode(HISTORIES), n, beam, HISTORIES)
    want = engine.search(engine.encode(HISTORIES), n, beam, HISTORIES)
    assert [s[2] for s in steps] == list(range(1, tiny_bundle.tree.max_depth + 1))
    assert [a.items.tolist() for a in got] == [b.items.tolist() for b in want]
