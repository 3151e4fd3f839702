"""Clustering kernels for the tree builders: plain, exactly balanced (fast) and exact k-means.

A balanced split of m points into k groups needs sizes in {q, q+1}, q = m // k (so
exactly r = m % k groups of q+1). The exact path is Algorithm 1's constrained k-means
(`k-means-constrained`: Lloyd iterations whose assignment step is a min-cost flow). It
is exact but its flow has m*k arcs and a Python loop over them, so it costs ~2 s per
10k points per iteration.

The fast path keeps Lloyd's iterations and replaces the flow by a price (dual) method:
the balanced assignment problem has optimal prices p such that every point goes to
argmin_j (cost_ij - p_j). `balanced_assign` finds them by exact coordinate ascent on the
dual (one cluster at a time, set p_j so that exactly cap_j points prefer j — a single
`np.partition`), warm-started across Lloyd iterations, then repairs the few points left
over by ties or non-convergence with a greedy by regret, so the sizes are always exact.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

_FLEXIBLE_Q = 32
"""Groups with q = m // k below this also re-choose which clusters hold q+1 points at
every step: with q = 2 that choice moves SSE by ~8% (measured), with q = 243 it is
noise and the extra Bellman-Ford rounds are not worth their time."""


def sq_dists(x: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Squared distances minus ||x||^2 (a per-point constant that no assignment needs).

    Shape: x [m, d], centers [k, d] -> [k, m], float32.
    """
    c = centers.astype(np.float32, copy=False)
    out = c @ x.T  # [k, m]
    out *= -2.0
    out += (c * c).sum(axis=1)[:, None]
    return out


def kmeans_pp(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Greedy k-means++ seeding (as sklearn and k-means-constrained do it): each new
    centre is the best of 2 + ln(k) D^2-sampled candidates, which matters most for small
    groups (k = 16 clusters over ~40 points) where Lloyd cannot escape a bad start.
    Duplicate points degrade to uniform picks.

    Shape: x [m, d] -> centers [k, d].
    """
    m = len(x)
    trials = 2 + int(np.log(k))
    x_sq = (x * x).sum(axis=1, dtype=np.float64)
    centers = np.empty((k, x.shape[1]), np.float32)
    centers[0] = x[rng.integers(m)]
    best = np.maximum(x_sq - 2 * (x @ centers[0]) + float(centers[0] @ centers[0]), 0.0)
    for j in range(1, k):
        total = best.sum()
        if total > 0:
            cand = rng.choice(m, size=trials, p=best / total)
        else:
            cand = rng.integers(m, size=trials)
        c = x[cand]  # [trials, d]
        d = np.maximum(x_sq[None] - 2 * (c @ x.T) + (c * c).sum(axis=1)[:, None], 0.0)
        np.minimum(d, best[None], out=d)  # [trials, m]: potential if candidate chosen
        pick = int(np.argmin(d.sum(axis=1)))
        centers[j] = c[pick]
        best = d[pick]
    return centers


def _means(x: np.ndarray, labels: np.ndarray, k: int, old: np.ndarray) -> np.ndarray:
    """Cluster means via a one-hot matmul (BLAS beats np.add.at by ~20x); empty keep old.

    Shape: x [m, d], labels [m] -> [k, d].
    """
    onehot = np.zeros((k, len(x)), np.float32)
    onehot[labels, np.arange(len(x))] = 1.0
    sums = onehot @ x
    counts = onehot.sum(axis=1)
    out = old.copy()
    nz = counts > 0
    out[nz] = sums[nz] / counts[nz, None]
    return out


def kmeans(
    x: np.ndarray, k: int, rng: np.random.Generator, max_iter: int = 30, tol: float = 1e-4
) -> np.ndarray:
    """Plain (unconstrained) Lloyd k-means, for the imbalanced-tree ablation.

    Shape: x [m, d] -> labels [m] in 0..k-1 (some clusters may be empty).
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    labels, _ = _lloyd(x, kmeans_pp(x, k, rng), lambda c: sq_dists(x, c).argmin(axis=0),
                       max_iter, tol)
    return labels


def _lloyd(x: np.ndarray, centers: np.ndarray, assign: Callable[[np.ndarray], np.ndarray],
           max_iter: int, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's iterations around an assignment step, so the plain and the balanced
    k-means stop by the same rule: labels repeat, or the centres move less than
    ``_tolerance``. Empty clusters keep their centre.

    Shape: x [m, d], centers [k, d], ``assign`` maps centers to labels [m]; returns
    labels [m] (all -1 when max_iter is 0), centers [k, d].
    """
    labels = np.full(len(x), -1, np.int64)
    stop = _tolerance(x, tol)
    for _ in range(max_iter):
        new = assign(centers)
        if np.array_equal(new, labels):
            break
        labels = new
        old, centers = centers, _means(x, labels, len(centers), centers)
        if float(((centers - old) ** 2).sum()) <= stop:
            break
    return labels, centers


def balanced_caps(m: int, k: int, prefer: np.ndarray | None = None) -> np.ndarray:
    """Group sizes of a balanced split: r = m % k groups of q+1, the rest q = m // k.

    `prefer` (e.g. unconstrained cluster counts) picks which groups get the extra point.
    Shape: prefer [k] -> [k], int64.
    """
    q, r = divmod(m, k)
    caps = np.full(k, q, np.int64)
    order = np.arange(k) if prefer is None else np.argsort(-prefer, kind="stable")
    caps[order[:r]] += 1
    return caps


def balanced_assign(
    cost: np.ndarray, caps: np.ndarray, prices: np.ndarray | None = None, max_sweeps: int = 8,
    slack: float = 0.002, polish: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Assign points to clusters with exactly `caps[j]` points each, near-minimum cost.

    Dual coordinate ascent: for cluster j with the others' prices fixed, point i prefers
    j iff cost_ij - p_j < min_{l != j}(cost_il - p_l), i.e. iff t_i < p_j; putting p_j
    between the cap_j-th and (cap_j+1)-th smallest t makes exactly cap_j points prefer j.
    "Everyone else" is a running minimum over already-updated rows and a suffix minimum
    over the rest, so a sweep costs ~5 passes over [m] per cluster, not k.

    When the prices give the exact sizes, the assignment is optimal (complementary
    slackness). Otherwise, once at most `slack * m` points are misplaced, `_repair`
    fixes the sizes greedily, and small problems are then made optimal by cycle
    cancelling (`polish`; large ones are within noise of optimal by then, measured).

    Shape: cost [k, m], caps [k] (sum m), prices [k] or None -> labels [m], prices [k].
    """
    k, m = cost.shape
    prices = np.zeros(k, np.float64) if prices is None else prices.astype(np.float64)
    adj = cost - prices.astype(np.float32)[:, None]  # [k, m]
    inf = np.float32(np.inf)
    for _ in range(max_sweeps):
        labels = adj.argmin(axis=0)
        off = int(np.abs(np.bincount(labels, minlength=k) - caps).sum())
        if off == 0:
            return labels, prices
        if off <= 2 * slack * m:
            break
        suffix = np.empty_like(adj)  # suffix[j] = min(adj[j+1:]), +inf for the last
        suffix[-1] = inf
        for j in range(k - 2, -1, -1):
            np.minimum(suffix[j + 1], adj[j + 1], out=suffix[j])
        running = np.full(m, inf, np.float32)  # min over rows 0..j-1, already updated
        for j in range(k):
            others = np.minimum(running, suffix[j])
            t = cost[j] - others
            c = int(caps[j])
            if c >= m:
                p = float(t.max()) + 1.0
            elif c <= 0:
                p = float(t.min()) - 1.0
            else:
                part = np.partition(t, (c - 1, c))
                p = 0.5 * (float(part[c - 1]) + float(part[c]))
            prices[j] = p
            np.subtract(cost[j], np.float32(p), out=adj[j])
            np.minimum(running, adj[j], out=running)
    labels = _repair(adj, caps)
    if polish and m < _FLEXIBLE_Q * k:
        labels = _cancel_cycles(cost, labels)
    return labels, prices


def _repair(adj: np.ndarray, caps: np.ndarray) -> np.ndarray:
    """Exact sizes from near-balanced prices: over-full clusters keep their points with
    the largest regret, the rest go greedily (largest regret first) to open clusters.

    Shape: adj [k, m], caps [k] -> labels [m].
    """
    k, m = adj.shape
    labels = adj.argmin(axis=0)
    top2 = np.partition(adj, 1, axis=0)[:2]
    regret = top2[1] - top2[0]  # [m]: what a point loses if moved off its best cluster
    order = np.lexsort((-regret, labels))  # by cluster, largest regret first
    rank = np.empty(m, np.int64)
    starts = np.searchsorted(labels[order], np.arange(k))
    rank[order] = np.arange(m) - starts[labels[order]]
    keep = rank < caps[labels]
    labels = np.where(keep, labels, -1)
    room = caps - np.bincount(labels[keep], minlength=k)
    pending = np.flatnonzero(~keep)
    while len(pending):
        open_ = room > 0
        sub = np.where(open_[:, None], adj[:, pending], np.inf)  # [k, p]
        best = sub.argmin(axis=0)
        two = np.partition(sub, 1, axis=0)[:2] if open_.sum() > 1 else sub.min(axis=0)[None]
        reg = two[-1] - two[0]
        order = np.lexsort((-reg, best))
        starts = np.searchsorted(best[order], np.arange(k))
        rank = np.empty(len(pending), np.int64)
        rank[order] = np.arange(len(pending)) - starts[best[order]]
        take = rank < room[best]
        labels[pending[take]] = best[take]
        room -= np.bincount(best[take], minlength=k)
        pending = pending[~take]
    return labels


def _cancel_cycles(
    cost: np.ndarray, labels: np.ndarray, flexible: bool = False, max_rounds: int = 64
) -> np.ndarray:
    """Improve a size-feasible assignment by cancelling negative cycles.

    With sizes fixed, the assignment is optimal iff the graph on clusters with edge
    a -> b weighted by the cheapest move of one point from a to b has no negative
    cycle; moving one point along every edge of such a cycle keeps all sizes and lowers
    the cost. Bellman-Ford on k nodes finds one; repeat (bounded). `flexible` adds a
    virtual node with free edges into every q+1 cluster and out of every q cluster, so
    improving paths that hand the extra point to another cluster count too: the sizes
    stay in {q, q+1} but which clusters are bigger is re-chosen, as a min-cost flow
    with bounds would.

    Shape: cost [k, m], labels [m] -> labels [m].
    """
    k, m = cost.shape
    q = m // k
    labels = labels.copy()
    nodes = k + 1 if flexible and m % k else k
    for _ in range(max_rounds):
        mover, moves = _move_costs(cost, labels)
        weight = np.full((nodes, nodes), np.inf)
        weight[:k, :k] = moves
        if nodes > k:
            sizes = np.bincount(labels, minlength=k)
            # a path V -> s -> ... -> t -> V moves one point out of s and into t
            weight[k, :k] = np.where(sizes == q + 1, 0.0, np.inf)  # s may give one away
            weight[:k, k] = np.where(sizes == q, 0.0, np.inf)  # t may take one more
        np.fill_diagonal(weight, np.inf)
        cycle = _negative_cycle(weight)
        if not cycle:
            break
        for a, b in zip(cycle, cycle[1:] + cycle[:1], strict=True):
            if a < k and b < k:
                labels[mover[a, b]] = b
    return labels


def _move_costs(cost: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cheapest single-point move between every pair of clusters, in one padded gather.

    Shape: cost [k, m], labels [m] -> mover [k, k] (point moved from a to b),
    weight [k, k] (its cost change; +inf where a is empty).
    """
    k, m = cost.shape
    delta = cost - cost[labels, np.arange(m)]  # [k, m]: cost change of moving i to row b
    sizes = np.bincount(labels, minlength=k)
    order = np.argsort(labels, kind="stable")
    pos = np.arange(m) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    pad = np.full((k, max(int(sizes.max()), 1)), -1, np.int64)  # [a, slot] -> point
    pad[labels[order], pos] = order
    d = delta[:, np.maximum(pad, 0)]  # [b, a, slot]
    d[:, pad < 0] = np.inf
    best = d.argmin(axis=2)  # [b, a]
    weight = np.take_along_axis(d, best[..., None], axis=2)[..., 0].T  # [a, b]
    mover = pad[np.arange(k)[None, :], best].T  # [a, b]
    return mover, weight


def _negative_cycle(weight: np.ndarray) -> list[int]:
    """A negative cycle of a small dense graph (Bellman-Ford), as a node list, or [].

    Checks the predecessor graph after every pass: any cycle there is negative, and it
    usually shows up after a few passes, long before the n-th.
    """
    n = len(weight)
    dist, pred = np.zeros(n), np.full(n, -1)
    cols = np.arange(n)
    for _ in range(n):
        via = dist[:, None] + weight  # [a, b]
        src = via.argmin(axis=0)
        new = via[src, cols]
        better = new < dist - 1e-9 * (1 + np.abs(dist))
        if not better.any():
            return []
        dist[better], pred[better] = new[better], src[better]
        cycle = _cycle_through(pred, int(np.flatnonzero(better)[0]), n)
        if cycle:
            return cycle
    return []


def _cycle_through(pred: np.ndarray, node: int, n: int) -> list[int]:
    """The cycle of the predecessor graph reached from `node`, in edge order, or []."""
    seen: dict[int, int] = {}
    path: list[int] = []
    while node >= 0 and node not in seen:
        seen[node] = len(path)
        path.append(node)
        node = int(pred[node])
        if len(path) > n:
            return []
    if node < 0:
        return []
    return path[seen[node]:][::-1]


_ROUNDS_PER_STEP = 8
"""Cycle-cancelling rounds per Lloyd step on small groups; improvements accumulate
over the steps, and the last steps (near convergence) need few."""


def _tolerance(x: np.ndarray, tol: float) -> float:
    """sklearn's (and k-means-constrained's) stopping rule: total squared centre shift
    below tol * mean per-feature variance, so both splitters stop alike."""
    return tol * float(np.var(x, axis=0, dtype=np.float64).mean())


def _balanced_lloyd(
    x: np.ndarray, centers: np.ndarray, max_iter: int, tol: float
) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd iterations with an exactly balanced assignment step (warm-started prices;
    which clusters hold q+1 points follows the first step's unconstrained counts).

    Shape: x [m, d], centers [k, d] -> labels [m], centers [k, d].
    """
    k = len(centers)
    flexible = len(x) < _FLEXIBLE_Q * k
    caps: np.ndarray | None = None
    prices: np.ndarray | None = None

    def assign(centers: np.ndarray) -> np.ndarray:
        nonlocal caps, prices
        cost = sq_dists(x, centers)
        if caps is None:
            caps = balanced_caps(len(x), k, np.bincount(cost.argmin(axis=0), minlength=k))
        new, prices = balanced_assign(cost, caps, prices, polish=not flexible)
        if flexible:  # also re-choose which clusters hold q+1 (a few rounds per step)
            new = _cancel_cycles(cost, new, flexible=True, max_rounds=_ROUNDS_PER_STEP)
        return new

    return _lloyd(x, centers, assign, max_iter, tol)


def balanced_kmeans_fast(
    x: np.ndarray, k: int, rng: np.random.Generator, max_iter: int = 30,
    sample_size: int = 20_000, full_iter: int = 3, tol: float = 1e-4,
) -> np.ndarray:
    """Exactly balanced k-means without a min-cost flow.

    Above `sample_size` points the centroids converge on a random subsample first and
    only `full_iter` balanced iterations touch every point (the sizes are exact on the
    full set either way).

    Shape: x [m, d] -> labels [m] with bincount in {m//k, m//k+1}.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    m = len(x)
    seed_pool = x if m <= 20_000 else x[rng.choice(m, 20_000, replace=False)]
    centers = kmeans_pp(seed_pool, k, rng)
    if m > sample_size:
        sample = x[np.sort(rng.choice(m, sample_size, replace=False))]
        _, centers = _balanced_lloyd(sample, centers, max_iter, tol)
        max_iter = full_iter
    labels, _ = _balanced_lloyd(x, centers, max_iter, tol)
    return labels


def balanced_kmeans_exact(
    x: np.ndarray, k: int, seed: int, max_iter: int = 30, n_init: int = 1, tol: float = 1e-4
) -> np.ndarray:
    """Algorithm 1's constrained k-means (min-cost flow per assignment step).

    k-means-constrained rounds costs*1000 to int32, so the points are centred and scaled
    to keep every squared distance below ~4e5 (no overflow, ~1e-6 relative precision).
    Imported here only: the serving image has no k-means-constrained.

    Shape: x [m, d] -> labels [m] with bincount in {m//k, m//k+1}.
    """
    from k_means_constrained import KMeansConstrained

    x = np.asarray(x, dtype=np.float64)
    x = x - x.mean(axis=0)
    radius_sq = float((x * x).sum(axis=1).max())
    if radius_sq > 0:
        x = x * np.sqrt(1e5 / radius_sq)
    q = len(x) // k
    km = KMeansConstrained(n_clusters=k, size_min=q, size_max=q + 1, n_init=n_init,
                           max_iter=max_iter, tol=tol, random_state=seed)
    return np.asarray(km.fit_predict(x), dtype=np.int64)
