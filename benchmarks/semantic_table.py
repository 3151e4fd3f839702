"""The comparison rows of ``benchmarks.semantic_ids``: every ID source labelled with the
text its items were read from, seeds of one setting summarised as mean ± std.

Nothing here trains or encodes: it takes codes (from run folders and tree builders),
the runs' own ``report.json`` and the catalogue's categories, so it is the part the
report can be rebuilt from at any time, and the part the tests exercise directly.

Text labels: ``title`` and ``title+categories`` are what the frozen sentence encoder
read; ``n/a`` marks sources that read no text (the SASRec tree, the random tree).
LMIndexer's Table 1 read title, description and features and never the category, so
only a ``title`` row compares like for like; a ``title+categories`` row has the category
words in its input, which helps any AMI against categories.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from training.data.dataset import ItemText
from training.lmindexer.ami import ami_table

HEADLINE = ("level1_vs_top", "level2_vs_sub")
LABELS = {"semantic": "semantic IDs (ours)",
          "balanced_text": "balanced tree over MiniLM vectors",
          "balanced_sasrec": "balanced tree over SASRec embeddings",
          "random": "random tree"}
PUBLISHED_TEXT = "title+description+features"


@dataclass(frozen=True)
class SemanticRunCodes:
    """One finished indexer run as the table reads it."""

    fields: str
    seed: int
    folder: str
    codes: np.ndarray
    report: dict[str, Any]


@dataclass(frozen=True)
class TreeCodes:
    """A tree built here for comparison.

    Attributes:
        source: balanced_text, balanced_sasrec or random.
        fields: the text its embeddings came from; "n/a" when none.
        codes: int [n_items, depth].
        built_from: what it was built over (a file, or "item count only").
    """

    source: str
    fields: str
    codes: np.ndarray
    built_from: str


def seed_stats(per_seed: dict[int, float], digits: int = 4) -> dict[str, Any]:
    """Mean, sample std (None for one seed) and the values themselves, seeds as keys."""
    values = [float(v) for v in per_seed.values()]
    finite = [v for v in values if math.isfinite(v)]
    std = round(float(np.std(finite, ddof=1)), digits) if len(finite) >= 2 else None
    return {"mean": round(float(np.mean(finite)), digits) if finite else None, "std": std,
            "n": len(finite), "per_seed": {str(s): round(float(v), digits)
                                           for s, v in sorted(per_seed.items())}}


def run_summary(report: dict[str, Any]) -> dict[str, Any]:
    """Collision rate and codebook usage per level of one run, from its report.json
    (stored = capacity-aware codes; argmax_only = the auto-encoder's own choice)."""
    coll = report.get("collisions", {})
    return {
        "levels": report.get("levels"), "k": report.get("k"),
        "collision_rate": coll.get("stored", {}).get("collision_rate"),
        "collision_rate_argmax_only": coll.get("argmax_only", {}).get("collision_rate"),
        "max_group_argmax_only": coll.get("argmax_only", {}).get("max_group"),
        "usage": [{key: row.get(key) for key in ("level", "used_codes", "perplexity",
                                                  "diff_ratio")}
                  for row in report.get("per_level", [])],
        "usage_argmax_only": [{key: row.get(key) for key in ("level", "used_codes",
                                                              "perplexity")}
                              for row in report.get("per_level_argmax_only", [])],
        "seconds": report.get("seconds"),
    }


def source_key(kind: str, fields: str, seed: int | None = None) -> str:
    """The name a source has in the AMI table (unique per row and seed)."""
    return f"{kind}|{fields}" + (f"|s{seed}" if seed is not None else "")


def ami_by_source(runs: list[SemanticRunCodes], trees: list[TreeCodes],
                  item_text: ItemText | None) -> tuple[dict[str, Any] | None, str]:
    """AMI of every run and tree against the categories (one ami_table), or None and
    the reason when the catalogue has no category labels to compare with."""
    if item_text is None or not any(item_text.categories):
        return None, ("the items have no category labels (items.tsv categories empty, no "
                      "item2attributes.json), so no AMI against categories can be computed")
    sources = {source_key("semantic", r.fields, r.seed): r.codes for r in runs}
    sources.update({source_key(t.source, t.fields): t.codes for t in trees})
    return ami_table(sources, item_text), ""


def semantic_rows(runs: list[SemanticRunCodes], ami: dict[str, Any] | None,
                  missing: dict[str, list[int]]) -> list[dict[str, Any]]:
    """One row per text setting: AMI, collisions and usage over its seeds."""
    rows = []
    for fields in dict.fromkeys([r.fields for r in runs] + list(missing)):
        mine = sorted((r for r in runs if r.fields == fields), key=lambda r: r.seed)
        summaries = {r.seed: run_summary(r.report) for r in mine}
        row: dict[str, Any] = {
            "source": "semantic", "label": LABELS["semantic"], "fields": fields,
            "seeds": [r.seed for r in mine], "missing_seeds": missing.get(fields, []),
            "runs": {str(r.seed): r.folder for r in mine},
        }
        if ami is not None and mine:
            table = ami["sources"]
            cells = table[source_key("semantic", fields, mine[0].seed)]["all"]
            row["ami"] = {name: seed_stats({r.seed: table[source_key("semantic", fields,
                                                                     r.seed)]["all"][col]
                                            for r in mine})
                          for name, col in (("level1_vs_top", "depth1_vs_top"),
                                            ("level2_vs_sub", "depth2_vs_sub"))}
            row["ami_all"] = {col: seed_stats({r.seed: table[source_key(
                "semantic", fields, r.seed)]["all"][col] for r in mine}) for col in cells}
        if mine:
            row.update(_collision_and_usage(summaries))
        row["per_seed"] = {str(s): v for s, v in summaries.items()}
        rows.append(row)
    return rows


def _collision_and_usage(summaries: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Seed statistics of the collision rates and of each level's usage."""
    out: dict[str, Any] = {
        key: seed_stats({s: v[key] for s, v in summaries.items() if v[key] is not None})
        for key in ("collision_rate", "collision_rate_argmax_only")}
    levels = min(len(v["usage"]) for v in summaries.values())
    out["usage"] = [{"level": t + 1, **{key: seed_stats({s: v["usage"][t][key]
                                                          for s, v in summaries.items()}, 3)
                                         for key in ("used_codes", "perplexity", "diff_ratio")}}
                    for t in range(levels)]
    return out


def tree_rows(trees: list[TreeCodes], ami: dict[str, Any] | None) -> list[dict[str, Any]]:
    """One row per comparison tree (one build each: the builders' seed is fixed)."""
    rows = []
    for t in trees:
        row: dict[str, Any] = {"source": t.source, "label": LABELS[t.source],
                               "fields": t.fields, "built_from": t.built_from}
        if ami is not None:
            cells = ami["sources"][source_key(t.source, t.fields)]["all"]
            row["ami"] = {"level1_vs_top": cells["depth1_vs_top"],
                          "level2_vs_sub": cells.get("depth2_vs_sub", float("nan"))}
            row["ami_all"] = cells
        rows.append(row)
    return rows


def headline(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Row label [fields] -> the Table-1 pair (means for seeded rows) and their stds."""
    out = {}
    for row in rows:
        if "ami" not in row:
            continue
        name = f"{row['source']} [{row['fields']}]"
        cells: dict[str, Any] = {}
        for col in HEADLINE:
            value = row["ami"][col]
            cells[col] = value["mean"] if isinstance(value, dict) else value
            if isinstance(value, dict):
                cells[f"{col}_std"] = value["std"]
        out[name] = cells
    return out


def fmt(value: Any) -> str:
    """A table cell: a float, mean ± std, or '–' when absent."""
    if isinstance(value, dict):
        if value.get("mean") is None:
            return "–"
        std = value.get("std")
        return f"{value['mean']:.4f}" + (f" ± {std:.4f}" if std is not None else "")
    if isinstance(value, (int, float)) and math.isfinite(value):
        return f"{value:.4f}"
    return "–"


def _usage_cell(row: dict[str, Any], k: int | None) -> str:
    usage = row.get("usage") or []
    if not usage:
        return "–"
    used = "/".join(f"{u['used_codes']['mean']:g}" for u in usage)
    ppl = "/".join(f"{u['perplexity']['mean']:.1f}" for u in usage)
    return f"{used} of {k} (perplexity {ppl})"


def _collision_cell(row: dict[str, Any]) -> str:
    if "collision_rate" not in row:
        return "–"
    return (f"{fmt(row['collision_rate'])} / {fmt(row['collision_rate_argmax_only'])}")


def markdown_section(report: dict[str, Any]) -> list[str]:
    """One dataset's section of reports/semantic_ids.md."""
    ds = report["dataset"]
    lines = [f"## {ds}", ""]
    if "rows" not in report:
        return lines + ["This report predates the labelled rows: regenerate it with "
                        f"`python -m benchmarks.semantic_ids --dataset {ds}`.", ""]
    published = report.get("published", {}).get("lmindexer_table1_ami", {}).get(ds)
    k, column = report.get("k"), report.get("text_column", "title")
    lines += [
        f"Generated by `{report['command']}` at commit {str(report['commit'])[:9]}; item text "
        f"column: `{report.get('text_column', 'title')}`. Seeds: "
        f"{', '.join(str(s) for s in report.get('seeds', []))}.", "",
        "| IDs | text fields | seeds | AMI level 1 vs top | AMI level 2 vs sub "
        "| collision rate (stored / argmax only) | codes used per level |",
        "|---|---|---|---|---|---|---|",
    ]
    if published is not None:
        lines.append(f"| LMIndexer, published (Table 1) | {PUBLISHED_TEXT} (T5-base) | – | "
                     f"{published:.4f} (category level not stated) | – | – | – |")
    for row in report["rows"]:
        seeds = _seeds_cell(row)
        ami = row.get("ami", {})
        lines.append(f"| {row['label']} | {_fields_cell(row['fields'], column)} | {seeds} | "
                     f"{fmt(ami.get('level1_vs_top'))} | {fmt(ami.get('level2_vs_sub'))} | "
                     f"{_collision_cell(row)} | {_usage_cell(row, k)} |")
    lines += ["", *_per_seed(report["rows"]), *_notes(report), ""]
    return lines


def _fields_cell(fields: str, column: str) -> str:
    """The row's text fields, saying which items.tsv column ``title`` read when the
    catalogue has no titles (Sports: generated keywords)."""
    if column == "title" or fields == "n/a":
        return fields
    return fields.replace("title", f"title (= `{column}` column)")


def _seeds_cell(row: dict[str, Any]) -> str:
    """The seeds a row averages, and the ones it lacks (runs not finished yet)."""
    if row["source"] != "semantic":
        return "one build"
    done = ",".join(str(s) for s in row.get("seeds", [])) or "none"
    lacking = row.get("missing_seeds") or []
    return done + (f" (missing {','.join(str(s) for s in lacking)})" if lacking else "")


def _per_seed(rows: list[dict[str, Any]]) -> list[str]:
    """Per-seed lines of the semantic rows: the values behind each mean ± std."""
    lines = ["Per seed (semantic IDs):", "",
             "| text fields | seed | run folder | AMI level 1 vs top | AMI level 2 vs sub "
             "| collision rate (stored / argmax only) | perplexity per level |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        if row["source"] != "semantic":
            continue
        ami = row.get("ami", {})
        for seed, folder in row.get("runs", {}).items():
            summary = row["per_seed"][seed]
            cells = [ami.get(col, {}).get("per_seed", {}).get(seed) for col in HEADLINE]
            ppl = "/".join(f"{u['perplexity']:.1f}" for u in summary["usage"]) or "–"
            lines.append(f"| {row['fields']} | {seed} | {folder} | {fmt(cells[0])} | "
                         f"{fmt(cells[1])} | {fmt(summary['collision_rate'])} / "
                         f"{fmt(summary['collision_rate_argmax_only'])} | {ppl} |")
    return [*lines, ""] if len(lines) > 4 else []


def _notes(report: dict[str, Any]) -> list[str]:
    """What a reader needs to read the table: which row is like for like, what is
    missing, and why."""
    notes = ["- Like for like with LMIndexer's Table 1: the `title` rows (neither encoder "
             "input names the category). The `title+categories` rows have the category words "
             "in the encoder's input, so their AMI against categories is helped by the text; "
             "they are shown beside, labelled, not as the comparison."]
    if report.get("text_column", "title") != "title":
        notes.append(f"- This catalogue has no product titles: `title` reads items.tsv's "
                     f"`{report['text_column']}` column (see the data README), which is "
                     "not LMIndexer's text either: IDGenRec generated it from the item "
                     "metadata, so category words may be in it.")
    if report.get("quick"):
        notes.append("- Smoke run (--quick): a shortened schedule; not a result.")
    if report.get("overrides"):
        notes.append(f"- Indexer config overrides: {', '.join(report['overrides'])}.")
    if report.get("ami_unavailable"):
        notes.append(f"- AMI not computed: {report['ami_unavailable']}.")
    notes += _category_note(report.get("ami_categories") or {})
    for fields, same in report.get("identical_fields", {}).items():
        notes.append(f"- `{fields}` reads exactly the same text as `{same}` on this catalogue "
                     "(no categories), so it is not trained separately.")
    if report.get("sasrec_run"):
        notes.append(f"- SASRec tree: {report['sasrec_run']['folder']} "
                     f"({report['sasrec_run']['why']}).")
    for name, why in report.get("missing_sources", {}).items():
        notes.append(f"- {name}: {why}.")
    notes += _cold_start_note(report) + _seater_notes(report)
    for miss in report.get("missing_runs", []):
        notes.append(f"- missing run {miss['folder']} ({miss['status']}): train it with "
                     f"`{miss['command']}`.")
    return notes


def _category_note(cats: dict[str, Any]) -> list[str]:
    """Where the category labels came from and, with two sources, how well they agree."""
    if not cats.get("source"):
        return []
    levels = cats.get("n_categories", {})
    line = (f"- Categories: {cats['source']}; {levels.get('top', '?')} top and "
            f"{levels.get('sub', '?')} sub categories")
    for name, check in (cats.get("attribute_ids_vs_text") or {}).items():
        line += (f". item2attributes.json ids, read as training.data.attribute_paths reads "
                 f"them, agree with {name}'s category text at AMI {check['top']['ami']:.4f} "
                 f"(top, {check['top']['n_items']} items) / {check['sub']['ami']:.4f} (sub, "
                 f"{check['sub']['n_items']} items)")
    words = cats.get("top_distinctive_words") or {}
    if words:
        shown = "; ".join(f"{label.split(' > ')[-1]} ({v['items']}): {', '.join(v['words'])}"
                          for label, v in words.items())
        line += (f". The unnamed top categories read by their items' most over-represented "
                 f"text words: {shown}")
    return [line + "."]


def _cold_start_note(report: dict[str, Any]) -> list[str]:
    """The held-out cold-start check in one line, with the run it was made on."""
    hold, prov = report.get("cold_start_holdout"), report.get("cold_start_provenance") or {}
    if not hold or "depth1_vs_top" not in hold:
        return []
    d1 = hold["depth1_vs_top"]
    return [f"- Cold start ({hold['held_out']} items held out, coded without retraining), on "
            f"{prov.get('run')} [{prov.get('fields')}, seed {prov.get('seed')}, commit "
            f"{str(prov.get('commit'))[:9]}]: depth-1 node led by the item's own top "
            f"category for {d1['cold_start']['neighbour_agreement']:.1%} of new items vs "
            f"{d1['trained_control']['neighbour_agreement']:.1%} of trained ones."]


def _seater_notes(report: dict[str, Any]) -> list[str]:
    """SEATER trained on semantic vs balanced IDs, labelled by the codes' text fields:
    each setting over its seeds, then every seed's pair."""
    def cell(v: dict[str, Any], side: str) -> str:
        std = v.get(f"{side}_std")
        return f"{v[side]:.4f}" + (f" ± {std:.4f}" if std is not None else "")

    lines = []
    published = report.get("published", {}).get("lmindexer_table2_loo", {}).get(
        report.get("dataset", ""), {})
    for group in report.get("seater_loo", {}).get("seeds", []):
        cells = "; ".join(f"{c} {cell(v, 'semantic')} vs {cell(v, 'balanced')} "
                          f"(ratio {v['ratio']:.3f})" for c, v in group["test"].items()
                          if v.get("ratio") is not None and c.endswith("@5"))
        bar = ", ".join(f"{c} {v:.4f}" for c, v in published.items())
        verdict = ("within 10% of balanced at @5: "
                   f"{'yes' if group['within_10pct_of_balanced'] else 'no'}")
        if "above_lmindexer" in group:
            verdict += f"; above LMIndexer ({bar}): {'yes' if group['above_lmindexer'] else 'no'}"
        lines.append(f"- SEATER loo on semantic IDs [{group.get('text_fields', 'unknown')}] vs "
                     f"balanced IDs, seeds {group['seeds']} (mean ± std, test): {cells}; "
                     f"{verdict} ({group['setting']}).")
    for pair in report.get("seater_loo", {}).get("pairs", []):
        ratios = ", ".join(f"{c} {v['ratio']:.3f}" for c, v in pair["test"].items()
                           if v.get("ratio") is not None)
        lines.append(f"- SEATER loo on semantic IDs [{pair.get('text_fields', 'unknown')}] "
                     f"vs balanced IDs, test ratios: {ratios} ({pair['semantic']}).")
    return lines


def render_markdown(reports: list[Path], out: Path) -> Path:
    """reports/semantic_ids.md from the report JSONs (each once, in the order given)."""
    lines = ["# Semantic IDs against categories (LMIndexer Table 1), labelled by text", "",
             "Generated by `python -m benchmarks.semantic_ids` from "
             "`reports/quality/semantic_ids_<dataset>.json`; each JSON holds the per-seed "
             "values, every run folder and the command, commit and machine. AMI compares "
             "ID prefixes with the catalogue's categories (depth-1 prefix vs the top "
             "category, depth-2 prefix vs the sub-category); seeded rows are mean ± sample "
             "std over the indexer's seeds.", ""]
    for path in dict.fromkeys(Path(p).resolve() for p in reports):
        if path.is_file():
            lines += markdown_section(json.loads(path.read_text()))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines).rstrip("\n") + "\n")
    return out
