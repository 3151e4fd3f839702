"""The engine benchmark's decoder profile, on the tiny real bundle."""

from __future__ import annotations

import numpy as np

from benchmarks.engine import decoder_op_profile
from service.model.bundle import load_seater_bundle


def test_decoder_profile_covers_every_step_of_a_real_search_and_sums_to_its_kernels(
        tiny_bundle):
    bundle = load_seater_bundle(tiny_bundle.path)
    rng = np.random.default_rng(0)
    histories = [rng.integers(0, bundle.tree.n_items, size=int(t)) for t in (1, 3, 7, 12)]
    out = decoder_op_profile(bundle, histories, batch=3, beam=5, n=2, reps=2)
    # one decoder call per level; rows = batch x width (1 at the root, at most the beam)
    assert len(out["steps"]) == bundle.tree.max_depth
    assert out["steps"][0] == 3 and all(r <= 3 * 5 for r in out["steps"])
    ops = out["by_op_type"]
    assert ops and out["kernel_ms_per_search"] > 0
    assert [o["share"] for o in ops] == sorted((o["share"] for o in ops), reverse=True)
    assert 0 < sum(o["share"] for o in ops) <= 1.001
    assert {"MatMul", "Gemm"} & {o["name"] for o in ops}  # the decoder's projections
