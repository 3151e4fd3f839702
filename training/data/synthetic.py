"""A synthetic dataset with latent item clusters, for tests and a demo without files.

Items belong to latent clusters, and each cluster is an ordered chain. Users hold a few
interest clusters and mostly walk forward along a chain, sometimes jump within the
cluster and sometimes switch to another interest. So the next item is predictable from
the recent ones (SASRec can learn it), item embeddings recover the clusters (the tree
builder has structure to find), and item text names the cluster (semantic IDs have a
category to align with).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.data.dataset import InteractionData, ItemText
from training.data.sequences import Sequences

_WORDS = [
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
    "juliet", "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo",
    "sierra", "tango", "uniform", "victor", "whiskey", "xray", "yankee", "zulu", "amber",
    "birch", "cedar", "dune", "ember", "fjord", "grove", "heath", "iris", "jade", "kelp",
    "lotus", "maple", "nectar", "onyx", "pearl", "quartz", "reef", "sage", "tidal", "umber",
    "violet", "willow", "yarrow", "zephyr",
]


@dataclass(frozen=True)
class SyntheticConfig:
    n_users: int = 2000
    n_items: int = 500
    n_clusters: int = 10
    min_len: int = 5
    mean_len: float = 10.0
    max_len: int = 60
    interests_per_user: int = 2
    p_follow: float = 0.7
    p_switch: float = 0.1
    seed: int = 0


def make_synthetic(cfg: SyntheticConfig = SyntheticConfig()) -> InteractionData:
    if cfg.n_items < cfg.n_clusters or cfg.n_clusters < 1:
        raise ValueError("need at least one item per cluster")
    rng = np.random.default_rng(cfg.seed)
    cluster_of = rng.permutation(np.arange(cfg.n_items) % cfg.n_clusters)
    chains = [np.flatnonzero(cluster_of == c) for c in range(cfg.n_clusters)]
    chains = [rng.permutation(ch) for ch in chains]
    pos_in_chain = np.empty(cfg.n_items, dtype=np.int64)
    for ch in chains:
        pos_in_chain[ch] = np.arange(ch.size)

    extra = rng.geometric(1.0 / max(1.0, cfg.mean_len - cfg.min_len + 1), cfg.n_users) - 1
    lengths = np.clip(
        cfg.min_len + extra,
        cfg.min_len,
        min(cfg.max_len, cfg.n_items),
    )
    rows: list[np.ndarray] = []
    for length in lengths:
        interests = rng.choice(cfg.n_clusters, size=min(cfg.interests_per_user, cfg.n_clusters),
                               replace=False)
        c = interests[0]
        cur = chains[c][rng.integers(chains[c].size)]
        seq = [int(cur)]
        seen = {int(cur)}
        while len(seq) < length:
            r = rng.random()
            if r < cfg.p_switch:
                c = interests[rng.integers(interests.size)]
                nxt = chains[c][rng.integers(chains[c].size)]
            elif r < cfg.p_switch + cfg.p_follow:
                ch = chains[cluster_of[cur]]
                nxt = ch[(pos_in_chain[cur] + rng.integers(1, 3)) % ch.size]
            else:
                ch = chains[cluster_of[cur]]
                nxt = ch[rng.integers(ch.size)]
            if int(nxt) in seen:
                unseen = np.setdiff1d(chains[cluster_of[nxt]], np.fromiter(seen, np.int64))
                pool = unseen if unseen.size else np.setdiff1d(
                    np.arange(cfg.n_items), np.fromiter(seen, np.int64))
                nxt = pool[rng.integers(pool.size)]
            cur = int(nxt)
            seq.append(cur)
            seen.add(cur)
        rows.append(np.array(seq, dtype=np.int64))

    words = np.array(_WORDS)
    titles, cats = [], []
    for i in range(cfg.n_items):
        c = int(cluster_of[i])
        own = words[(c * 3 + np.arange(3)) % words.size]
        noise = words[rng.integers(words.size, size=1)]
        titles.append(" ".join([*rng.permutation(own)[:2], *noise, f"model {i}"]))
        cats.append([[f"group {c % 3}", f"cluster {c}"]])
    return InteractionData(
        name="synthetic",
        sequences=Sequences.from_lists(rows),
        item_ids=np.array([str(i + 1) for i in range(cfg.n_items)]),
        user_ids=np.array([str(u + 1) for u in range(cfg.n_users)]),
        item_text=ItemText(title=titles, categories=cats),
        source=f"synthetic:{cfg}",
        meta={"cluster_of": cluster_of},
    )
