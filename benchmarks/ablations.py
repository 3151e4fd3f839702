"""SEATER ablations on one dataset: a table and two plots from reports/quality/<ds>.json.

Nothing here is measured anew: every number comes from an entry that `seater train
seater` (via benchmarks/quality.py) or `seater evaluate --beam ...` wrote, so the figure
and the table can be regenerated at any time and always agree with the JSONs. Rows are
labelled from each entry's recorded config, not from its variant name.

    python -m benchmarks.ablations --dataset beauty
      -> reports/ablations_<ds>.md, reports/figures/seater_ablations_<ds>.png,
         reports/figures/seater_beam_<ds>.png
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from training.lmindexer.compare import variant_fields

ROOT = Path(__file__).resolve().parents[1]
REPORTS = ROOT / "reports"

# Published references (DESIGN.md / issues): TIGER's Table on Beauty and Sports, loo.
TIGER = {"beauty": {"recall@10": 0.0648, "ndcg@10": 0.0384},
         "sports": {"recall@10": 0.0400, "ndcg@10": 0.0225}}
# DESIGN.md's published anchors without refit (loo, full ranking, these S3Rec files): the
# eSASRec study's tuned SASRec (the dense bar the issue names) and eSASRec itself
PUBLISHED = {"beauty": {"SASRec+SS": {"recall@10": 0.0921, "ndcg@10": 0.0531},
                        "eSASRec": {"recall@10": 0.0928, "ndcg@10": 0.0523}},
             "sports": {"SASRec+SS": {"recall@10": 0.0569, "ndcg@10": 0.0314},
                        "eSASRec": {"recall@10": 0.0560, "ndcg@10": 0.0323}}}
FULL_EPOCHS = 200  # TrainConfig's default: a run that stops only by early stopping


@dataclass(frozen=True)
class View:
    """What a protocol's report shows: its table columns and the metrics every comparison
    is stated in (the first also picks the strongest SASRec)."""

    protocol: str
    columns: tuple[str, ...]
    compared: tuple[str, ...]


# loo holds out one item per user (HR = recall), the SEATER paper's protocol several, so
# there HR and recall differ and the paper reports both at 20 and 50
VIEWS = {
    "loo": View("loo", ("recall@5", "ndcg@5", "recall@10", "ndcg@10", "recall@20", "ndcg@20"),
                ("recall@10", "ndcg@10")),
    "seater": View("seater", ("hr@20", "recall@20", "ndcg@20", "hr@50", "recall@50", "ndcg@50"),
                   ("hr@20", "recall@20", "ndcg@20", "hr@50", "recall@50", "ndcg@50")),
}
LOO = VIEWS["loo"]


def _text_fields(entry: dict[str, Any]) -> str:
    """`` (title)``-style text fields of a semantic-ID row. Its variant name is the one
    record of them (the trainer reads them from the codes' indexer config)."""
    fields = variant_fields(entry.get("variant", ""))
    return f" ({fields})" if fields else ""


def label(entry: dict[str, Any]) -> str:
    """A short human label from the entry's config, e.g. ``SEATER balanced no-rank *``.

    Defaults are left out (SASRec d=64 with its own init, SEATER k=16 with all three
    losses), so a label names only what the row changed.
    """
    cfg = entry.get("config", {})
    refit = " (refit)" if entry["protocol"].get("refit_on_validation") else ""
    if entry["model"] == "sasrec":
        model = cfg.get("model", {})
        width = f" d={model['d_model']}" if model.get("d_model", 64) != 64 else ""
        style = " RecTools-style" if model.get("init") == "xavier" else ""
        shared = (f" {model['n_negatives']} shared negatives"
                  if model.get("negatives") == "batch" else "")
        seed = cfg.get("train", {}).get("seed", 0)
        return "SASRec" + width + style + shared + (f" seed {seed}" if seed else "") + refit
    tree, losses = cfg.get("tree", {}), cfg.get("losses", {})
    parts = ["SEATER", tree.get("ids", "balanced") + _text_fields(entry)]
    if tree.get("k", 16) != 16:
        parts.append(f"k={tree['k']}")
    align, rank = losses.get("lambda_align", 1), losses.get("lambda_rank", 1)
    if align == 0 and rank == 0:
        parts.append("gen-only")
    elif align == 0:
        parts.append("no-align")
    elif rank == 0:
        parts.append("no-rank")
    if not cfg.get("init_from_sasrec", True):
        parts.append("scratch")
    if rank > 0 and losses.get("rank_cosine_scale", 0) > 0:
        parts.append(f"cosine rank score x{losses['rank_cosine_scale']:g}")
    if losses.get("lambda_distill", 0) > 0:
        temperature = losses.get("distill_temperature", 1)
        parts.append(f"distilled x{losses['lambda_distill']:g}"
                     + (f" T={temperature:g}" if temperature != 1 else "")
                     + (f" +top {losses['distill_top']} paths" if losses.get("distill_top")
                        else ""))
    if "preset" in cfg:  # rows written since presets exist; earlier rows ran without one
        parts.append(f"preset {cfg['preset']}")
    if entry.get("sasrec_run"):
        parts.append(f"on {Path(entry['sasrec_run']).name}")
    seed = cfg.get("train", {}).get("seed", 0)
    if seed:
        parts.append(f"seed {seed}")
    if refit:
        parts.append(refit.strip())
    if budgeted(entry):
        parts.append("*")
    elif "@beam" in entry["key"]:
        parts.append(f"beam {entry['beam_size']}")
    return " ".join(parts)


def budgeted(entry: dict[str, Any]) -> bool:
    """Trained under a capped epoch count (a quick ablation), not to early stopping."""
    epochs = entry.get("config", {}).get("train", {}).get("epochs", FULL_EPOCHS)
    return "@beam" not in entry["key"] and epochs < FULL_EPOCHS


def load(dataset: str, protocol: str = "loo") -> list[dict[str, Any]]:
    """The dataset's tested entries of ``protocol``; a beam re-evaluation
    (``<key>@beam<b>``) carries the config of the run it evaluated."""
    path = REPORTS / "quality" / f"{dataset}.json"
    if not path.is_file():
        raise SystemExit(f"{path} not found: run `python -m benchmarks.quality` first")
    runs = json.loads(path.read_text())["runs"]
    configs = {r["key"]: r["config"] for r in runs if "config" in r}
    return [{"config": configs.get(r["key"].split("@beam")[0], {}), **r} for r in runs
            if r["protocol"]["protocol"] == protocol and "test" in r["metrics"]]


def table(runs: list[dict[str, Any]], dataset: str, view: View = LOO) -> str:
    flag = f" --protocol {view.protocol}" if view is not LOO else ""
    cols = view.columns
    lines = [f"# SEATER ablations on {dataset} (`{view.protocol}`, test split, full ranking)",
             "", "Generated by `python -m benchmarks.ablations --dataset "
             f"{dataset}{flag}` from `reports/quality/{dataset}.json`; each row's command, commit",
             "and machine are in that JSON. Rows marked * ran under a reduced training budget",
             "(`config.train.epochs` in the JSON below the default 200), so they compare",
             "with each other and with the main run's curve at the same epoch, not with its",
             "final numbers.", "",
             "| run | " + " | ".join(cols) + " | epochs (best) | train s | beam | ms/user |",
             "|---" * (len(cols) + 5) + "|"]
    for r in runs:
        m = r["metrics"]["test"]
        ev = r.get("eval", {})
        beam = r.get("beam_size") or r.get("config", {}).get("beam_size", "")
        lines.append(
            f"| {label(r)} | " + " | ".join(f"{m.get(c, float('nan')):.4f}" for c in cols)
            + (" |  |  | " if "@beam" in r["key"] else
               f" | {r.get('epochs_run', '')} ({r.get('best_epoch', '')}) | "
               f"{r.get('train_seconds', 0):.0f} | ")
            + f"{beam} | "
            f"{ev.get('ms_per_user', '')} |")
    ref = TIGER.get(dataset) if view is LOO else None
    if ref:
        lines += ["", f"TIGER (published, {dataset}): recall@10 {ref['recall@10']}, "
                  f"ndcg@10 {ref['ndcg@10']}."]
    return "\n".join(lines) + "\n"


def _rel(a: float, b: float) -> str:
    return f"{100 * (a / b - 1):+.1f}%"


def _gaps(a: dict[str, float], b: dict[str, float],
          metrics: tuple[str, ...] = LOO.compared) -> tuple[str, ...]:
    """Relative ``metrics`` of ``a`` against ``b``."""
    return tuple(_rel(a[m], b[m]) for m in metrics)


def _side_by_side(a: dict[str, float], b: dict[str, float], metrics: tuple[str, ...]) -> str:
    """``metric a vs b (gap)`` for each of ``metrics``."""
    return ", ".join(f"{m} {a[m]:.4f} vs {b[m]:.4f} ({gap})"
                     for m, gap in zip(metrics, _gaps(a, b, metrics), strict=True))


def with_budget(entry: dict[str, Any]) -> str:
    """``label`` with a budgeted run's epoch cap named: runs of one configuration under
    different budgets are different groups and never each other's pair."""
    name = label(entry)
    if name.endswith("*"):
        name = f"{name[:-2]} ({entry['config']['train']['epochs']} epochs) *"
    return name


def unseeded(name: str) -> str:
    """A label without its seed: the configuration its seeds share."""
    return re.sub(r" seed \d+", "", name)


def seed_groups(runs: list[dict[str, Any]]) -> dict[str, list[dict[str, float]]]:
    """Trained rows' test metrics by configuration (``with_budget`` label without the seed),
    one entry per seed; a budgeted group (*) has one budget."""
    groups: dict[str, list[dict[str, float]]] = {}
    for r in runs:
        if "@beam" not in r["key"]:
            groups.setdefault(unseeded(with_budget(r)), []).append(r["metrics"]["test"])
    return groups


def _mean_sd(ms: list[dict[str, float]], metric: str) -> tuple[float, float]:
    values = [m[metric] for m in ms]
    sd = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return float(np.mean(values)), sd


def _refit(name: str) -> bool:
    """Whether a group's label (budgeted or not: ``... (refit) (55 epochs) *``) is a refit
    configuration's."""
    return re.sub(r"( \(\d+ epochs\))? \*$", "", name).endswith("(refit)")


def strongest(runs: list[dict[str, Any]], model: str, refit: bool,
              view: View = LOO) -> tuple[str, list[dict[str, float]]] | None:
    """The ``model`` ("SASRec" or "SEATER") configuration, early-stopped or refit, with the
    highest mean of the view's first metric over its seeds, and those seeds' metrics. By the
    mean, so a configuration run with several seeds is not judged by its luckiest; for
    SASRec this is the bar SEATER is held to."""
    groups = {name: ms for name, ms in seed_groups(runs).items()
              if name.startswith(model) and _refit(name) == refit}
    if not groups:
        return None
    name = max(groups, key=lambda k: _mean_sd(groups[k], view.compared[0])[0])
    return name, groups[name]


def seed_means(runs: list[dict[str, Any]], view: View = LOO) -> list[str]:
    """Configurations run with several seeds: mean ± std (sample) of the view's metrics.
    SEATER's against the SASRec bar of the same protocol (fit or refit), and where the bar
    has seeds too, whether the difference of the means clears the noise of both (a Welch
    95% interval with the smaller group's degrees of freedom, which errs wide)."""
    bars = {refit: strongest(runs, "SASRec", refit, view) for refit in (False, True)}
    lines = []
    for name, ms in sorted(seed_groups(runs).items()):
        if len(ms) < 2 or not name.startswith(("SEATER", "SASRec")):
            continue
        stats = {c: _mean_sd(ms, c) for c in view.compared}
        text = ", ".join(f"{c} {mu:.4f} ± {sd:.4f}" for c, (mu, sd) in stats.items())
        line = f"- {name}, {len(ms)} seeds: {text}"
        bar = bars[_refit(name)]
        if bar and name.startswith("SEATER"):
            theirs, their_ms = bar
            parts = []
            for c, (mu, sd) in stats.items():
                bar_mu, bar_sd = _mean_sd(their_ms, c)
                part = f"{c} {mu / bar_mu - 1:+.1%}"
                if len(their_ms) > 1:
                    half = (T95.get(min(len(ms), len(their_ms)) - 1, 2.0)
                            * float(np.sqrt(sd**2 / len(ms) + bar_sd**2 / len(their_ms))))
                    diff = mu - bar_mu
                    part += (" (above)" if diff - half > 0 else " (below)" if diff + half < 0
                             else " (within the noise)")
                parts.append(part)
            seeds = f" ({_seeds(len(their_ms))})" if len(their_ms) > 1 else ""
            line += f"; vs {theirs}{seeds}: {', '.join(parts)}"
        lines.append(line + ".")
    return lines


# two-sided 95% Student t quantiles by degrees of freedom (paired seeds - 1)
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306}
# arms that switch a loss off: the full model's label without them names their pair
ARMS = ("no-align", "no-rank", "gen-only")
# an arm that adds to its pair: the teacher's top-m paths distilled besides the target's
ADDED = re.compile(r" \+top \d+ paths")


def arm_of(name: str) -> tuple[str, str, bool]:
    """A seeded row's label (seed removed) -> (its pair's label, the arm, whether the arm
    adds something). The full model is its own pair, with arm ``full``."""
    added = ADDED.search(name)
    if added:
        return name.replace(added.group(0), ""), added.group(0).strip(), True
    arm = next((a for a in ARMS if f" {a} " in name), "full")
    return (name.replace(f" {arm}", "") if arm != "full" else name), arm, False


def paired_arms(runs: list[dict[str, Any]], view: View = LOO) -> list[str]:
    """Seeded arms against their pair of the same preset, budget and seed (a switched-off
    loss against the full model, the top-m paths against distillation without them): the
    mean ± std of the per-seed gains of having the component, and whether the 95%
    t-interval of that mean excludes 0 (it "helps" when having it gains beyond the noise)."""
    cells: dict[tuple[str, str, int], dict[str, float]] = {}
    adds: dict[str, bool] = {}
    for r in runs:
        name = with_budget(r)
        if not (name.startswith("SEATER") and name.endswith("*")):
            continue
        seed = r.get("config", {}).get("train", {}).get("seed", 0)
        config, arm, added = arm_of(unseeded(name))
        cells[(config, arm, seed)] = r["metrics"]["test"]
        adds[arm] = added
    lines = []
    for config, arm in sorted({(c, a) for c, a, _ in cells if a != "full"}):
        seeds = sorted(s for c, a, s in cells if (c, a) == (config, arm)
                       and (config, "full", s) in cells)
        if len(seeds) < 2:
            continue
        parts = []
        for metric in view.compared:
            with_arm = np.array([cells[(config, arm, s)][metric] for s in seeds])
            without = np.array([cells[(config, "full", s)][metric] for s in seeds])
            diffs = with_arm - without if adds[arm] else without - with_arm
            mean, sd = float(diffs.mean()), float(diffs.std(ddof=1))
            half = T95.get(len(seeds) - 1, 2.0) * sd / np.sqrt(len(seeds))
            verdict = ("helps" if mean - half > 0 else "hurts" if mean + half < 0
                       else "within the noise")
            parts.append(f"{metric} {mean:+.4f} ± {sd:.4f} ({verdict})")
        what = f"{arm} minus without" if adds[arm] else f"full model minus {arm}"
        lines.append(f"- {config[:-2]}: {what}, paired over seeds "
                     f"{', '.join(map(str, seeds))}: " + "; ".join(parts) + ".")
    return lines


def teacher_lines(runs: list[dict[str, Any]], view: View = LOO) -> list[str]:
    """SEATER rows against the SASRec run they were built on, from that run's own test
    figures carried in the row (``sasrec_results``; rows written before it existed have
    none). Teachers are retrained each session and differ from the committed SASRec row of
    their key, so this is the gap the training itself leaves. Fit against fit, refit
    against refit."""
    lines = []
    for r in runs:
        if "@beam" in r["key"] or not label(r).startswith("SEATER"):
            continue
        refit = r["key"].endswith("-refit")
        theirs = next((t for t in r.get("sasrec_results") or []
                       if str(t.get("key", "")).endswith("-refit") == refit
                       and all(m in t.get("test", {}) for m in view.compared)), None)
        if theirs is None:
            continue
        a, b = r["metrics"]["test"], theirs["test"]
        lines.append(f"- {with_budget(r)} vs the SASRec it was built on (its run's "
                     f"{theirs['key']}, commit {str(theirs['commit'])[:9]}, best epoch "
                     f"{theirs['best_epoch']}): {_side_by_side(a, b, view.compared)}.")
    return lines


def _seeds(n: int) -> str:
    return "1 seed" if n == 1 else f"{n} seeds, mean"


def published_lines(runs: list[dict[str, Any]], dataset: str, view: View = LOO) -> list[str]:
    """Without refit, against the published anchors: the SASRec bar against SASRec+SS, and
    the strongest SEATER configuration (by its seeds' mean) against the best published
    figure of each metric, the issue's stretch goal."""
    published = PUBLISHED.get(dataset) if view is LOO else None
    if not published:
        return []
    metrics = tuple(m for m in view.compared if all(m in p for p in published.values()))
    lines = []
    bar = strongest(runs, "SASRec", refit=False, view=view)
    if bar:
        name, ms = bar
        mean = {m: _mean_sd(ms, m)[0] for m in metrics}
        lines.append(f"- {name} ({_seeds(len(ms))}) vs SASRec+SS "
                     f"(eSASRec study, published): "
                     f"{_side_by_side(mean, published['SASRec+SS'], metrics)}.")
    seater = strongest(runs, "SEATER", refit=False, view=view)
    if seater:
        name, ms = seater
        mean = {m: _mean_sd(ms, m)[0] for m in metrics}
        best = {m: max(p[m] for p in published.values()) for m in metrics}
        whose = ", ".join(f"{m} {max(published, key=lambda k: published[k][m])}"
                          for m in metrics)
        lines.append(f"- Strongest SEATER configuration, {name} ({_seeds(len(ms))}), "
                     "vs the best published "
                     f"figure of each metric ({whose}): {_side_by_side(mean, best, metrics)}.")
    return lines


def oracle_lines(dataset: str, view: View = LOO) -> list[str]:
    """What ``benchmarks.tree_oracle`` found for this dataset and protocol, if it ran: the
    share of the SASRec's exhaustive metrics that an ideal decoder keeps through the tree
    at beam 50 (SEATER's), and trained SEATER runs beside it, with where each one's test
    targets left the beam."""
    path = REPORTS / "quality" / f"tree_oracle_{dataset}.json"
    if not path.is_file():
        return []
    report = json.loads(path.read_text())
    if report.get("protocol") != view.protocol:
        return []
    lines = []
    for name, row in report["results"].items():
        if not (name == "oracle_beam50" or name.startswith("seater_")):  # SEATER's beam
            continue
        kept = ", ".join(f"{m} {row['metrics'][m]:.4f} ({row['share_of_exhaustive'][m]:.1%})"
                         for m in view.compared)
        went = "; ".join(f"{k.replace('_', ' ')} {v:.1%}"
                         for k, v in row.get("where_targets_went", {}).items())
        lines.append(f"- Tree oracle ({path.name}), {name.replace('_', ' ')}: {kept} of "
                     f"{Path(report['sasrec_run']).name}'s exhaustive ranking"
                     + (f"; test targets: {went}" if went else "") + ".")
    return lines


def findings(runs: list[dict[str, Any]], dataset: str, view: View = LOO) -> str:
    """The gaps the issue asks the report to state, computed from the rows above."""
    cmp = view.compared
    rows = {label(r): r for r in runs}
    by = {k: r["metrics"]["test"] for k, r in rows.items()}
    lines: list[str] = []
    for mine, refit in (("SEATER balanced", False), ("SEATER balanced (refit)", True)):
        if mine not in by:
            continue
        # the SASRec whose embeddings built the tree, and the strongest SASRec row if
        # another one is (both early-stopped, or both refit)
        sasrecs = [k for k in by if k.startswith("SASRec") and k.endswith("(refit)") == refit
                   and k == unseeded(k)]
        plain = "SASRec (refit)" if refit else "SASRec"
        best = max(sasrecs, key=lambda k: by[k][cmp[0]], default=None)
        for theirs in dict.fromkeys(k for k in (plain, best) if k in by):
            a, b = by[mine], by[theirs]
            lines.append(f"- {mine} vs {theirs}: {_side_by_side(a, b, cmp)}.")
    lines += seed_means(runs, view)
    lines += published_lines(runs, dataset, view)
    lines += paired_arms(runs, view)
    lines += teacher_lines(runs, view)
    lines += oracle_lines(dataset, view)
    ref = TIGER.get(dataset) if view is LOO else None
    main = by.get("SEATER balanced (refit)") or by.get("SEATER balanced")
    if ref and main:
        lines.append("- SEATER vs TIGER (published): recall@10 {}, ndcg@10 {}."
                     .format(*_gaps(main, ref)))
    base = by.get("SEATER balanced *")
    epochs = rows["SEATER balanced *"]["config"]["train"]["epochs"] if base else None
    budget = sorted(k for k in by if k.endswith("*") and k != "SEATER balanced *"
                    and rows[k]["config"]["train"]["epochs"] == epochs)
    if base and budget:
        lines.append(f"- Same {epochs}-epoch budget, each variant against the full three-loss "
                     f"configuration ({' / '.join(cmp)}): "
                     + "; ".join(f"{k[:-2]} {' / '.join(_gaps(by[k], base, cmp))}"
                                 for k in budget) + ".")
    beams = sorted((int(k.rsplit(" ", 1)[1]), by[k]) for k in by if " beam " in k)
    if beams and view is LOO:
        top = beams[-1][1]["recall@10"]
        lines.append("- Beam size (recall@10 as a share of the widest beam): "
                     + ", ".join(f"{b} {m['recall@10'] / top:.1%}" for b, m in beams) + ".")
    if base and budget:
        lines += [
            "",
            "What these runs tried to close the gap to SASRec: encoder and leaf embeddings",
            "initialised from the trained SASRec, training examples from every prefix of each",
            "sequence, refit on train + validation for the best epoch count, beam up to 100, a",
            "cosine variant of the ranking score (the paper's σ(pᵀWq) saturates: the ranking",
            "loss sits at its margin sum within a few epochs), and the loss switches above. A",
            "negative delta for the three-loss row against gen-only means the alignment and",
            "ranking losses cost quality at this budget; the gap to SASRec is then the decoder's",
            "own: it must rank through a k-way softmax per level, where SASRec scores every item",
            "against one user vector.",
        ]
    if not lines:
        return ""
    return "\n".join(["", "## Findings (computed from the rows above)", "", *lines]) + "\n"


def plots(runs: list[dict[str, Any]], dataset: str, fig_dir: Path,
          view: View = LOO) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig_dir.mkdir(parents=True, exist_ok=True)
    out = []
    train_runs = [r for r in runs if "@beam" not in r["key"]]
    seater = [r for r in train_runs if r["model"] == "seater"]
    if seater:
        # horizontal bars: the labels name what each row changed and are long
        fig, ax = plt.subplots(figsize=(8, 1.2 + 0.45 * len(seater)))
        ys = range(len(seater))
        h = 0.4
        recall, ndcg = (next(m for m in view.compared if m.startswith(kind))
                        for kind in ("recall", "ndcg"))
        ax.barh([y - h / 2 for y in ys], [r["metrics"]["test"][recall] for r in seater],
                h, label=recall)
        ax.barh([y + h / 2 for y in ys], [r["metrics"]["test"][ndcg] for r in seater],
                h, label=ndcg)
        bar = strongest(runs, "SASRec", refit=False, view=view)  # early-stopped, seeds' mean
        if bar is not None:
            for metric, color in ((recall, "C0"), (ndcg, "C1")):
                ax.axvline(_mean_sd(bar[1], metric)[0], ls="--", c=color, lw=1,
                           label=f"best SASRec {metric}")
        if dataset in TIGER and view is LOO:
            ax.axvline(TIGER[dataset]["recall@10"], ls=":", c="C0", lw=1,
                       label="TIGER recall@10")
        ax.set_yticks(list(ys), [label(r) for r in seater], fontsize=8)
        ax.invert_yaxis()  # rows top to bottom in the report's order
        ax.set_title(f"SEATER variants on {dataset} ({view.protocol}, test)")
        ax.margins(y=0.01)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        path = fig_dir / f"seater_ablations_{stem(dataset, view)}.png"
        fig.savefig(path, dpi=120, bbox_inches="tight")
        plt.close(fig)
        out.append(path)
    beams = sorted((r for r in runs if "@beam" in r["key"]), key=lambda r: r["beam_size"])
    if beams:
        fig, ax = plt.subplots(figsize=(6, 4))
        b = [r["beam_size"] for r in beams]
        ax.plot(b, [r["metrics"]["test"]["recall@10"] for r in beams], "o-", label="recall@10")
        ax.plot(b, [r["metrics"]["test"]["ndcg@10"] for r in beams], "s-", label="ndcg@10")
        ax.plot(b, [r["metrics"]["test"]["recall@20"] for r in beams], "d-",
                label="recall@20 (beam < 20 returns fewer)")
        ax.set_xlabel("beam size")
        ax.set_xscale("log")
        ax.legend(loc="center left", fontsize=8)
        ax2 = ax.twinx()
        ax2.plot(b, [r["eval"]["ms_per_user"] for r in beams], "^--", c="C3",
                 label="ms per user (offline search)")
        ax2.set_ylabel("ms per user")
        ax2.legend(loc="lower right", fontsize=8)
        ax.set_title(f"Beam size vs quality and decoding time ({dataset})")
        fig.tight_layout()
        path = fig_dir / f"seater_beam_{dataset}.png"
        fig.savefig(path, dpi=120, bbox_inches="tight")
        plt.close(fig)
        out.append(path)
    return out


def stem(dataset: str, view: View) -> str:
    """Output name: ``<dataset>`` for loo (the reports' protocol), else with the protocol."""
    return dataset if view is LOO else f"{dataset}_{view.protocol}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ablations", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="beauty")
    parser.add_argument("--protocol", default="loo", choices=sorted(VIEWS),
                        help="whose rows to compare (Yelp's SEATER runs use `seater`)")
    args = parser.parse_args(argv)
    view = VIEWS[args.protocol]
    runs = load(args.dataset, view.protocol)
    if not runs:
        raise SystemExit(f"reports/quality/{args.dataset}.json has no tested "
                         f"`{view.protocol}` rows: pick another --protocol")
    md = REPORTS / f"ablations_{stem(args.dataset, view)}.md"
    md.write_text(table(runs, args.dataset, view) + findings(runs, args.dataset, view))
    for p in [md, *plots(runs, args.dataset, REPORTS / "figures", view)]:
        print(p.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
