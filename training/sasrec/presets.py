"""Named SASRec recipes: settings that only make sense together, selected by ``--preset``.

``tuned`` is the strongest recipe measured here: RecTools' SASRec details (the eSASRec
study's backbone: Xavier-normal init without input scaling, dropout on the whole
catalogue's embeddings, left padding visible to attention, Adam beta2 0.98) with one
shared set of 4096 sampled negatives per batch. Its per-dataset figures are in
``reports/quality/``.
"""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "tuned": {
        "model": {"init": "xavier", "item_dropout": 0.2, "mask_padded_keys": False,
                  "loss": "ss", "n_negatives": 4096, "negatives": "batch"},
        "train": {"adam_beta2": 0.98, "patience": 12},
    },
}
