"""Training curves: loss terms and validation metrics per epoch, as a PNG beside the log.

Read from ``metrics.jsonl`` (the trainer's per-epoch rows), so a curve can be redrawn for
any run folder, including one that was interrupted.
"""

from __future__ import annotations

import json
from pathlib import Path


def read_rows(metrics_path: Path) -> list[dict]:
    rows = []
    for line in Path(metrics_path).read_text().splitlines():
        if line.strip():
            rows.append(json.loads(line))
    return rows


def plot_curves(metrics_path: Path, title: str = "") -> Path | None:
    """``<folder>/curves.png`` next to ``metrics.jsonl``: one panel of ``loss_*`` terms,
    one of ``valid_*`` metrics at the @10 cut-off (all cut-offs when there is none).
    None when the log has no rows."""
    metrics_path = Path(metrics_path)
    if not metrics_path.is_file():
        return None
    rows = read_rows(metrics_path)
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in rows]
    keys = sorted({k for r in rows for k in r})
    losses = [k for k in keys if k.startswith("loss_")]
    valid = [k for k in keys if k.startswith("valid_") and "@" in k]
    valid = [k for k in valid if k.endswith("@10")] or valid
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, names, label in ((axes[0], losses, "training loss (mean per batch)"),
                             (axes[1], valid, "validation")):
        for name in names:
            pts = [(e, r[name]) for e, r in zip(epochs, rows, strict=True) if name in r]
            if pts:
                ax.plot(*zip(*pts, strict=True), marker=".", label=name.split("_", 1)[1])
        ax.set_xlabel("epoch")
        ax.set_title(label, fontsize=10)
        if names:
            ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out = metrics_path.with_name("curves.png")
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
