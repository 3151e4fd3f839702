"""ONNX Runtime sessions as the engines open them: providers, and each session's threads."""

from __future__ import annotations

import pytest

from service.model.bundle import BundleError
from service.model.load import load_engine
from service.model.seater import SeaterEngine
from service.model.sessions import CPU, CUDA, RuntimeOptions, choose_providers
from service.settings import Settings


def test_load_engine_from_settings_and_provider_choice(tiny_bundle):
    engine = load_engine(tiny_bundle.path, Settings(providers="cpu", intra_op_threads=1))
    assert isinstance(engine, SeaterEngine) and engine.info.device == "cpu"
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


def test_runtime_options_are_the_settings_of_the_same_names():
    settings = Settings(providers="cpu", intra_op_threads=3, inter_op_threads=2,
                        graph_optimization="basic", allow_spinning=True,
                        encoder_intra_op_threads=4, small_step_rows=17)
    got = RuntimeOptions.from_settings(settings)
    assert (got.providers, got.intra_op_threads, got.inter_op_threads, got.graph_optimization,
            got.allow_spinning, got.encoder_intra_op_threads, got.small_step_rows) == (
        "cpu", 3, 2, "basic", True, 4, 17)
    encoder = got.for_encoder()
    assert (encoder.intra_op_threads, encoder.allow_spinning) == (4, False)
