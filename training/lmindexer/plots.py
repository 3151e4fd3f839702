"""Codebook usage per level: one bar chart per ID position (items per code), stored vs
the auto-encoder's own argmax, so balance and the effect of the capacity are visible."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training.lmindexer.stats import perplexity, usage


def plot_usage(codes: np.ndarray, argmax: np.ndarray | None, k: int, path: Path,
               title: str = "") -> Path:
    """Write a PNG with L panels. Shape: codes, argmax int [n, L]."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = codes.shape[1]
    fig, axes = plt.subplots(1, levels, figsize=(3.2 * levels, 2.8), sharey=False, squeeze=False)
    use = usage(codes, k)
    raw = usage(argmax, k) if argmax is not None else None
    xs = np.arange(k)
    for t, ax in enumerate(axes[0]):
        ax.bar(xs, use[t], color="tab:blue", label="stored")
        if raw is not None:
            ax.step(xs, raw[t], where="mid", color="tab:orange", lw=1.2, label="argmax")
        ax.set_title(f"level {t + 1}: ppl {perplexity(use[t]):.1f} / {k}", fontsize=9)
        ax.set_xlabel("code", fontsize=8)
        ax.tick_params(labelsize=7)
        if t == 0:
            ax.set_ylabel("items", fontsize=8)
            ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
