"""Constrained beam search over an `IdTree`, vectorised over requests x beam rows.

One step: the scorer gives log-probs over the k child slots of every active row; the
search adds them to the row scores, masks invalid slots and pruned subtrees with -inf,
and keeps the best `beam` candidates per request. Everything is a fixed-width gather,
`where`, `argpartition` or `lexsort` over [B, W*k]; there is no per-row Python.

Rules that make results exact and reproducible:
- ties are broken by node id (smaller first), so a request's result does not depend on
  where its candidates sit in the padded arrays. A request with a smaller beam than the
  batch keeps only its top `beam_b` rows at every step, which is exactly what running
  it alone does: mixed micro-batches return the same items as solo runs.
- a child is pruned when its subtree has no allowed leaf left for that request
  (its `allowed` mask minus its `exclude` list), so every surviving row can still end
  on an allowed item and the search returns exactly min(n, #allowed) items: a filter
  never leaves a request short while allowed items remain. Masks are one global
  [n_items] row, or a few distinct rows [M, n_items] that requests point at
  (`allowed_of`), since many requests of a batch share a filter. Nothing is dense in
  [B, n_nodes]: each mask becomes prefix sums over depth-first leaf order (allowed
  leaves under v = two gathers), and the exclusions become the sorted (request, node) keys of the
  excluded items' ancestors whose allowed leaves are all excluded; each step matches
  the ones one level below the beam to beam rows with one searchsorted.
- variable-depth trees: a row that reached a leaf is finished; it keeps its score and
  keeps competing with the rows that continue, and is not sent to the scorer again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from indexer.tree import IdTree

Scorer = Callable[[np.ndarray], np.ndarray]
"""scorer(prefix int64 [B, W, t]) -> float32 [B, W, k] log-probs over the children slots
of prefix[..., -1] (prefix[..., 0] is the root). Slots with children == -1 are ignored.
A GPU scorer may return its device tensor: anything with `.detach().cpu().numpy()` is
copied to the host ([B, W, k] floats per step); the search itself stays in numpy."""

Exclude = Sequence[Sequence[int] | np.ndarray | None] | np.ndarray | None


@dataclass(frozen=True)
class SearchResult:
    """Top items per request, best first.

    Attributes:
        items: item indices, -1 padded. Shape: [B, n_max], int64.
        scores: sum of log-probs along each path, -inf padded. Shape: [B, n_max], float32.
        n_steps: decoding steps (scorer calls) used.
    """

    items: np.ndarray
    scores: np.ndarray
    n_steps: int


class _Pruner:
    """Which children still have an allowed leaf, per request.

    Global mask: allowed leaves under node v = cum[leaf_hi[v]] - cum[leaf_lo[v]] (prefix
    sums over depth-first leaf order), gathered per candidate. Per-request exclusions:
    once per call, the (request, node) keys of the excluded items' ancestors are counted
    (np.unique); a node is dead for a request when the count reaches its allowed leaves.
    Per step only dead nodes one level below the beam matter; they are matched to beam
    rows by their parent with one searchsorted over the B*W sorted row keys.
    """

    def __init__(self, tree: IdTree, batch: int, exclude: Exclude, allowed: np.ndarray | None,
                 allowed_of: np.ndarray | None = None):
        self.tree = tree
        self.cum = None
        self.of = np.zeros(batch, np.int64)
        masks = None
        if allowed is not None:
            masks = np.asarray(allowed)
            if masks.dtype != bool or masks.shape[-1:] != (tree.n_items,) or masks.ndim > 2:
                raise ValueError(f"allowed must be bool [n_items={tree.n_items}] or [M, "
                                 f"n_items], got {masks.dtype} {masks.shape}")
            if masks.ndim == 1:
                masks = masks[None]
            elif allowed_of is None:
                raise ValueError("allowed [M, n_items] needs allowed_of: the mask row of "
                                 "each request")
            if allowed_of is not None:
                self.of = _per_request(allowed_of, batch, "allowed_of")
                if len(self.of) and (self.of.min() < 0 or self.of.max() >= len(masks)):
                    raise ValueError(f"allowed_of must index the {len(masks)} mask rows")
            cum = np.cumsum(masks[:, tree.leaf_order], axis=1, dtype=np.int64)
            self.cum = np.concatenate([np.zeros((len(masks), 1), np.int64), cum], axis=1)
        req, items = _flatten_exclude(exclude, batch, tree.n_items)
        pairs = np.unique(req * tree.n_items + items)  # duplicates would count twice
        req, items = pairs // tree.n_items, pairs % tree.n_items
        if masks is not None:
            keep = masks[self.of[req], items]
            req, items = req[keep], items[keep]  # already counted by the mask
        n_nodes = tree.n_nodes
        anc = np.concatenate([tree.node_paths[items], np.full((len(items), 1), tree.root)], 1)
        keys = (req[:, None] * n_nodes + anc)[anc >= 0]
        uniq, count = np.unique(keys, return_counts=True)
        dead = uniq[count >= self.allowed_leaves(uniq % n_nodes, uniq // n_nodes)]
        self.dead_req, self.dead_node = dead // n_nodes, dead % n_nodes
        self.dead_depth = tree.depth[self.dead_node]
        self.active = allowed is not None or len(dead) > 0

    def allowed_leaves(self, nodes: np.ndarray, req: np.ndarray) -> np.ndarray:
        """Leaves under `nodes` that request `req`'s mask allows (`req` broadcasts
        against `nodes`). Shape: [...] -> [...]."""
        lo, hi = self.tree.leaf_lo[nodes], self.tree.leaf_hi[nodes]
        if self.cum is None:
            return hi - lo
        m = self.of[req]
        return self.cum[m, hi] - self.cum[m, lo]

    def root_alive(self, batch: int) -> np.ndarray:
        """Shape: -> bool [B]."""
        alive = self.allowed_leaves(np.full(batch, self.tree.root), np.arange(batch)) > 0
        alive[self.dead_req[self.dead_node == self.tree.root]] = False
        return alive

    def prune(self, ok: np.ndarray, kids: np.ndarray, rows: np.ndarray, depth: int) -> None:
        """Clear `ok` where a child has no allowed leaf left (in place).

        Shape: ok, kids [B, w, k]; rows [B, w] node ids of the expanded rows (-1: none).
        """
        if self.cum is not None:
            req = np.arange(kids.shape[0])[:, None, None]
            ok &= self.allowed_leaves(np.maximum(kids, 0), req) > 0
        at = np.flatnonzero(self.dead_depth == depth + 1)
        if not len(at):
            return
        n_nodes = self.tree.n_nodes
        batch, width = rows.shape
        row_keys = np.where(rows >= 0, np.arange(batch)[:, None] * n_nodes + rows, -1).ravel()
        order = np.argsort(row_keys)
        sorted_keys = row_keys[order]
        dead_node = self.dead_node[at]
        want = self.dead_req[at] * n_nodes + self.tree.parent[dead_node]
        idx = np.minimum(np.searchsorted(sorted_keys, want), len(sorted_keys) - 1)
        hit = sorted_keys[idx] == want
        b, w = np.divmod(order[idx[hit]], width)
        ok[b, w, self.tree.slot[dead_node[hit]]] = False


def _flatten_exclude(exclude: Exclude, batch: int, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """(request, item) pairs from a padded [B, E] array (-1 = none) or B sequences."""
    if exclude is None:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if isinstance(exclude, np.ndarray) and exclude.ndim == 2:
        if exclude.shape[0] != batch:
            raise ValueError(f"exclude has {exclude.shape[0]} rows for {batch} requests")
        req, col = np.nonzero(exclude >= 0)
        items = exclude[req, col].astype(np.int64)
    else:
        if len(exclude) != batch:
            raise ValueError(f"exclude has {len(exclude)} entries for {batch} requests")
        parts = [np.asarray(e if e is not None else [], np.int64).ravel() for e in exclude]
        req = np.repeat(np.arange(batch), [len(p) for p in parts])
        items = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    bad = (items < 0) | (items >= n_items)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"exclude of request {int(req[i])} holds item {int(items[i])}, "
                         f"outside [0, {n_items})")
    return req.astype(np.int64), items


def _host(out: object) -> np.ndarray:
    """Scorer output as a numpy array; torch-like device tensors are copied to the host
    by duck typing (indexer never imports torch)."""
    if not isinstance(out, np.ndarray) and hasattr(out, "detach") and hasattr(out, "cpu"):
        out = out.detach().cpu().numpy()  # type: ignore[attr-defined]
    return np.asarray(out)


def _per_request(value: int | Sequence[int] | np.ndarray, batch: int, name: str) -> np.ndarray:
    out = np.asarray(value, dtype=np.int64)
    if out.ndim > 1 or (out.ndim == 1 and out.shape[0] != batch):
        raise ValueError(f"{name} must be an int or [batch_size={batch}] ints, got {out.shape}")
    return np.broadcast_to(out, (batch,)).copy()


def _top(score: np.ndarray, node: np.ndarray, width: int) -> np.ndarray:
    """Per row, indices of the `width` best (score desc, node asc), sorted that way.

    The row's width-th best score comes from a value-only `np.partition` (about half
    the cost of `argpartition`, which also degrades on the many -inf slots a beam step
    holds); the entries at or above it are the answer whenever there are exactly
    `width` of them. Rows with a tie at that bound (or fewer finite candidates than
    `width`, bound -inf) fall back to a full lexsort, so the tie-break by node id stays
    exact. Shape: score, node [B, C] -> [B, width].
    """
    rows, c = np.arange(score.shape[0])[:, None], score.shape[1]
    if width < c:
        bound = np.partition(score, c - width, axis=1)[:, c - width]
        keep = score >= bound[:, None]
        exact = np.count_nonzero(keep, axis=1) == width
        if exact.all():
            part = np.nonzero(keep)[1].reshape(-1, width)
        else:
            part = np.empty((score.shape[0], width), np.int64)
            at = np.flatnonzero(exact)
            part[at] = np.nonzero(keep[at])[1].reshape(-1, width)
            at = np.flatnonzero(~exact)
            part[at] = np.lexsort((node[at], -score[at]), axis=-1)[:, :width]
    else:
        part = np.broadcast_to(np.arange(c), score.shape)
    order = np.lexsort((node[rows, part], -score[rows, part]), axis=-1)
    return part[rows, order]


def beam_search(
    tree: IdTree,
    scorer: Scorer,
    batch_size: int,
    beam_size: int | Sequence[int] | np.ndarray,
    n: int | Sequence[int] | np.ndarray,
    exclude: Exclude = None,
    allowed: np.ndarray | None = None,
    allowed_of: np.ndarray | Sequence[int] | None = None,
) -> SearchResult:
    """Top-n items per request by constrained beam search over the tree.

    Args:
        tree: the ID tree.
        scorer: see `Scorer`; rows are grouped per request ([B, W]) so it can map rows
            to requests by reshape; W is 1 at the first step and at most max(beam).
        batch_size: B.
        beam_size: beam width, one for all or per request. Shape: int or [B].
        n: items wanted, n <= beam per request. Shape: int or [B].
        exclude: item indices never to return, per request: B sequences, or a padded
            int array [B, E] with -1 for "none".
        allowed: items a request may get (in stock, a category filter): one mask for all,
            Shape: [n_items] bool, or distinct masks, Shape: [M, n_items] bool, with
        allowed_of: the mask row of each request. Shape: [B] ints in [0, M).

    Returns:
        `SearchResult` with exactly min(n_b, #allowed items of b) items for request b.
    """
    beams = _per_request(beam_size, batch_size, "beam_size")
    ns = _per_request(n, batch_size, "n")
    if batch_size == 0:
        empty = np.zeros((0, 0))
        return SearchResult(empty.astype(np.int64), empty.astype(np.float32), 0)
    if (beams < 1).any() or (ns < 0).any() or (ns > beams).any():
        raise ValueError(f"need beam_size >= 1 and 0 <= n <= beam_size; got beams "
                         f"{beams.tolist()[:8]}, n {ns.tolist()[:8]}")
    width_max = int(beams.max())
    mixed = bool((beams != width_max).any())
    pruner = _Pruner(tree, batch_size, exclude, allowed, allowed_of)
    children, leaf_item, k = tree.children, tree.leaf_item, tree.k
    rows_b = np.arange(batch_size)[:, None]  # [B, 1]: row -> request, for fancy indexing

    node = np.full((batch_size, 1), tree.root, np.int64)  # [B, W]
    prefix = node[..., None]  # [B, W, t]
    score = np.zeros((batch_size, 1), np.float64)  # [B, W], -inf = empty row
    if pruner.active:
        score[~pruner.root_alive(batch_size)] = -np.inf
    done = np.zeros((batch_size, 1), bool)
    steps = 0
    for depth in range(tree.max_depth):
        valid = score > -np.inf
        active = valid & ~done
        n_active = active.sum(axis=1)
        width = int(n_active.max())
        if width == 0:
            break
        if (n_active == active.shape[1]).all():
            a_node, a_prefix, a_score, a_ok = node, prefix, score, active
        else:  # active rows first (rank order kept), padded to the widest request
            perm = np.argsort(~active, axis=1, kind="stable")[:, :width]
            a_node, a_prefix = node[rows_b, perm], prefix[rows_b, perm]
            a_score, a_ok = score[rows_b, perm], active[rows_b, perm]
            # padding rows get a real prefix (the scorer may embed every token)
            has = a_ok[:, 0]
            filler = np.where(has[:, None], a_prefix[:, 0], a_prefix[np.argmax(has), 0])
            a_prefix = np.where(a_ok[..., None], a_prefix, filler[:, None, :])
            a_node = np.where(a_ok, a_node, a_prefix[..., -1])

        logp = _host(scorer(a_prefix))
        steps += 1
        if logp.shape != (batch_size, width, k):
            raise ValueError(f"scorer returned shape {logp.shape}, expected "
                             f"{(batch_size, width, k)} for prefix {a_prefix.shape}")
        kids = children[a_node]  # [B, w, k]
        ok = kids >= 0
        if a_ok is not active:
            ok &= a_ok[..., None]
        if pruner.active:
            pruner.prune(ok, kids, np.where(a_ok, a_node, -1), depth)
        if np.isnan(logp).any() and np.isnan(logp[ok]).any():
            raise ValueError("scorer returned NaN for a valid child slot")
        # Drop trailing slots no row can use: parents of leaves in a balanced tree have
        # ~n/k^(L-1) children (3 of 16 on Beauty), so the last step's candidates are
        # mostly padding, which costs the top-k a full pass each.
        used = np.flatnonzero(ok.any(axis=(0, 1)))
        kw = int(used[-1]) + 1 if len(used) else 1
        if kw < k:
            logp, kids, ok = logp[..., :kw], kids[..., :kw], ok[..., :kw]
        cand = logp.astype(np.float64)
        cand += a_score[..., None]
        np.copyto(cand, -np.inf, where=~ok)
        cand = cand.reshape(batch_size, width * kw)
        cand_node = kids.reshape(batch_size, width * kw).astype(np.int64)
        n_ok = ok.reshape(batch_size, width * kw).sum(axis=1)
        src_prefix = a_prefix
        finished = valid & done
        if finished.any():  # finished rows compete as they are
            cand = np.concatenate([cand, np.where(finished, score, -np.inf)], axis=1)
            cand_node = np.concatenate([cand_node, node], axis=1)
            src_prefix = np.concatenate([a_prefix, prefix], axis=1)
            n_ok = n_ok + finished.sum(axis=1)
        src_row = np.concatenate([np.repeat(np.arange(width), kw),
                                  width + np.arange(cand.shape[1] - width * kw)])

        if n_ok.max() == 0:
            score = np.full((batch_size, 1), -np.inf)
            break
        width_new = min(width_max, int(n_ok.max()))
        sel = _top(cand, cand_node, width_new)  # [B, W']
        score = cand[rows_b, sel]
        if mixed:
            score[np.arange(width_new)[None, :] >= beams[:, None]] = -np.inf
        valid = score > -np.inf
        node = np.where(valid, cand_node[rows_b, sel], tree.root)
        prefix = np.concatenate([src_prefix[rows_b, src_row[sel]], node[..., None]], axis=2)
        done = valid & (leaf_item[node] >= 0)
    return _finish(tree, node, score, ns, steps)


def _finish(
    tree: IdTree, node: np.ndarray, score: np.ndarray, ns: np.ndarray, steps: int
) -> SearchResult:
    """Rows are already sorted best-first; cut each request to its n."""
    n_max = int(ns.max()) if len(ns) else 0
    batch, width = score.shape
    items = np.full((batch, n_max), -1, np.int64)
    scores = np.full((batch, n_max), -np.inf, np.float32)
    w = min(width, n_max)
    keep = (score[:, :w] > -np.inf) & (np.arange(w)[None, :] < ns[:, None])
    items[:, :w] = np.where(keep, tree.leaf_item[node[:, :w]], -1)
    scores[:, :w] = np.where(keep, score[:, :w], -np.inf)
    return SearchResult(items=items, scores=scores, n_steps=steps)


def exhaustive_search(
    tree: IdTree, scorer: Scorer, batch_size: int, n: int | Sequence[int] | np.ndarray,
    exclude: Exclude = None, allowed: np.ndarray | None = None,
    allowed_of: np.ndarray | Sequence[int] | None = None,
) -> SearchResult:
    """Exact oracle for tests: score every leaf's full path, sort, cut to n.

    Sums the same float64 terms in the same order as `beam_search`, so with a beam
    >= n_items both agree exactly. Cost O(n_items * depth) scorer rows: tiny trees only.
    """
    ns = _per_request(n, batch_size, "n")
    paths = tree.node_paths  # [N, L]
    length = (paths >= 0).sum(axis=1)
    n_items = tree.n_items
    total = np.zeros((batch_size, n_items), np.float64)
    full = np.concatenate([np.full((n_items, 1), tree.root), paths], axis=1)  # [N, L+1]
    for t in range(tree.max_depth):
        live = length > t
        pre = full[:, : t + 1].copy()
        pre[~live] = pre[np.argmax(live)]
        logp = _host(scorer(np.broadcast_to(pre, (batch_size, *pre.shape)).copy()))
        slot = tree.slot[np.maximum(paths[:, t], 0)]
        rows = np.flatnonzero(live)
        total[:, rows] += logp[:, rows, slot[rows]].astype(np.float64)
    mask = np.ones((batch_size, n_items), bool)
    if allowed is not None:
        masks = np.asarray(allowed, bool)
        mask &= masks[None, :] if masks.ndim == 1 else masks[_per_request(
            allowed_of, batch_size, "allowed_of")]
    req, items = _flatten_exclude(exclude, batch_size, n_items)
    mask[req, items] = False
    total = np.where(mask, total, -np.inf)
    leaf = np.broadcast_to(tree.item_leaf.astype(np.int64), total.shape)
    order = np.lexsort((leaf, -total), axis=-1)
    n_max = int(ns.max()) if len(ns) else 0
    w = min(n_max, n_items)
    top = order[:, :w]
    top_scores = np.take_along_axis(total, top, axis=1)
    keep = (top_scores > -np.inf) & (np.arange(w)[None, :] < ns[:, None])
    items = np.full((batch_size, n_max), -1, np.int64)
    scores = np.full((batch_size, n_max), -np.inf, np.float32)
    items[:, :w] = np.where(keep, top, -1)
    scores[:, :w] = np.where(keep, top_scores, -np.inf)
    return SearchResult(items=items, scores=scores, n_steps=tree.max_depth)
