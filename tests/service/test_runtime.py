"""service.runtime + service.bundle on a REAL bundle (``tiny_bundle``: the real export code).

The engine's own logic - padding, slicing, re-batching, IOBinding, result shaping - is
checked end to end through onnxruntime against the exported graphs, and its answers
against the exhaustive oracle; bundle verification against tampered copies.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from indexer import exhaustive_search
from service.bundle import BundleError, load_bundle
from service.cache import decode_state, encode_state
from service.engine import smoke_check
from service.runtime import CPU, CUDA, OnnxEngine, RuntimeOptions, choose_providers, load_engine
from service.settings import Settings
from tests.service.bundles import copy_bundle, tamper

HISTORIES = [
    np.array([3, 1, 4, 1, 5]),
    np.array([9]),
    np.array([2, 6, 5, 3, 5, 8, 9, 7, 9, 3, 2, 3, 8, 4]),  # longer than max_history (12)
    np.array([7, 7]),
]


@pytest.fixture(scope="module")
def engine(tiny_bundle) -> OnnxEngine:
    return OnnxEngine(load_bundle(tiny_bundle.path), RuntimeOptions("cpu", intra_op_threads=1))


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


def decoder_scorer(engine: OnnxEngine, state):
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


def test_load_engine_from_settings_and_provider_choice(tiny_bundle):
    engine = load_engine(tiny_bundle.path, Settings(providers="cpu", intra_op_threads=1))
    assert isinstance(engine, OnnxEngine) and engine.info.device == "cpu"
    assert choose_providers("auto", [CUDA, CPU]) == [CUDA, CPU]
    assert choose_providers("auto", [CPU]) == [CPU]
    assert choose_providers("cpu", [CUDA, CPU]) == [CPU]
    with pytest.raises(BundleError, match="SEATER_PROVIDERS=cuda"):
        choose_providers("cuda", [CPU])


def test_encoder_and_decoder_sessions_take_their_own_thread_counts(tiny_bundle):
    settings = Settings(providers="cpu", intra_op_threads=2, encoder_intra_op_threads=1)
    engine = load_engine(tiny_bundle.path, settings)
    assert engine.encoder.get_session_options().intra_op_num_threads == 1
    assert engine.decoder.get_session_options().intra_op_num_threads == 2
    engine = load_engine(tiny_bundle.path, Settings(providers="cpu", intra_op_threads=1,
                                                    encoder_intra_op_threads=2))
    assert engine.encoder.get_session_options().intra_op_num_threads == 2


def test_small_steps_run_on_a_one_thread_session_with_the_same_answers(engine, tiny_bundle):
    bundle = load_bundle(tiny_bundle.path)
    split = OnnxEngine(bundle, RuntimeOptions("cpu", intra_op_threads=2, small_step_rows=64))
    assert split.small_decoder.get_session_options().intra_op_num_threads == 1
    assert OnnxEngine(bundle, RuntimeOptions("cpu", intra_op_threads=2,
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


def test_checksum_mismatch_names_the_file(tiny_bundle, tmp_path):
    bad = tamper(copy_bundle(tiny_bundle.path, tmp_path / "bad"), "decoder.onnx")
    with pytest.raises(BundleError, match="checksum mismatch for decoder.onnx"):
        load_bundle(bad)


def test_missing_file_and_missing_manifest_are_named(tiny_bundle, tmp_path):
    gone = copy_bundle(tiny_bundle.path, tmp_path / "gone")
    (gone / "items.json").unlink()
    with pytest.raises(BundleError, match="items.json is listed in manifest.json but missing"):
        load_bundle(gone)
    (gone / "manifest.json").unlink()
    with pytest.raises(BundleError, match="manifest.json is missing"):
        load_bundle(gone)


def edit_manifest(bundle: Path, edit) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    edit(manifest)
    (bundle / "manifest.json").write_text(json.dumps(manifest))


def test_unlisted_required_file_is_refused(tiny_bundle, tmp_path):
    partial = copy_bundle(tiny_bundle.path, tmp_path / "partial")
    edit_manifest(partial, lambda m: m["files"].pop("embeddings.npy"))
    with pytest.raises(BundleError, match="does not list \\['embeddings.npy'\\]"):
        load_bundle(partial)


def test_path_escape_in_manifest_is_refused(tiny_bundle, tmp_path):
    evil = copy_bundle(tiny_bundle.path, tmp_path / "evil")
    edit_manifest(evil, lambda m: m["files"].update({"../../etc/passwd": "0" * 64}))
    with pytest.raises(BundleError, match="escapes the bundle directory"):
        load_bundle(evil)


def test_a_catalog_from_another_export_is_inconsistent(tiny_bundle, tmp_path):
    from training.export import sha256

    mixed = copy_bundle(tiny_bundle.path, tmp_path / "mixed")
    (mixed / "items.json").write_text(json.dumps({"ids": [str(i) for i in range(27)]}))
    edit_manifest(mixed, lambda m: m["files"].update(
        {"items.json": {"sha256": sha256(mixed / "items.json")}}))
    with pytest.raises(BundleError, match="items.json has 27 ids, tree.npz 90 items"):
        load_bundle(mixed)


def test_a_bundle_of_another_kind_is_refused_by_the_seater_loader(tiny_bundle, tmp_path):
    other = copy_bundle(tiny_bundle.path, tmp_path / "other")
    edit_manifest(other, lambda m: m.update(kind="dense"))
    with pytest.raises(BundleError, match="is a 'dense' bundle, expected 'seater'"):
        load_bundle(other)
    edit_manifest(other, lambda m: m.update(kind="mystery"))
    with pytest.raises(BundleError, match="unknown bundle kind 'mystery'"):
        load_engine(other, Settings(providers="cpu"))
