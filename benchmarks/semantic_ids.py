"""Semantic IDs on a real catalogue, labelled by the text they were learned from, against
the other ID sources and LMIndexer's Table 1 (issue 15).

    python -m benchmarks.semantic_ids --dataset beauty [--fields title,title+categories]
        [--seeds 0,1,2] [--threads 1] [--quick] [--cold-start] [--compare-only]
    python -m benchmarks.semantic_ids --refresh-pairs   # after a new SEATER run

1. For every text setting (``title``; ``title+categories``) and seed, the indexer run
   ``runs/<dataset>/semantic-<title|title-categories>-s<seed>`` (benchmarks.semantic_runs):
   used when it holds a finished run whose recorded config is the one asked for, else
   trained here through ``seater index semantic``'s pipeline (MiniLM vectors copied from
   a sibling seed's folder when there is one). ``--compare-only`` trains nothing and
   lists what is missing, so the report can be rebuilt whenever runs finish elsewhere
   (the commands in benchmarks/quality.py's ``semantic-ids`` group train them).
2. AMI of depth-1 prefixes vs the top category and depth-2 prefixes vs the sub-category
   (LMIndexer Table 1) for each run, as mean ± std over seeds per text setting, beside
   a balanced tree over the MiniLM vectors of each text setting (the paper's clustering
   baseline), a balanced tree over SASRec embeddings (the best finished SASRec run of the
   dataset, named in the report) and a random tree; collision rate and codebook usage
   per level of every run. Every row names its text fields (``n/a``: no text read).
   Categories come from items.tsv; a catalogue without category text (Sports) is
   labelled from S3Rec's item2attributes.json instead (training.data.attribute_paths),
   and where both exist (Beauty) the report gives the AMI between the two sources.
3. SEATER loo metrics with semantic vs balanced IDs, when both runs are already in
   reports/quality/<dataset>.json (``python -m benchmarks.quality --group semantic-seater``
   and the ``seater-<dataset>-tuned-s*`` twins): each seed's pair, and per text setting the
   mean ± std over seeds against LMIndexer's published R@5 / N@5;
4. ``--cold-start``, on the first seed's ``title+categories`` run (else the first
   setting's): the indexer is retrained on (1 - --holdout) of the items; the rest are
   coded and placed as new items (no retraining) and judged by the trained items they
   land among, against a control set of trained items judged the same way; and on
   Beauty a demo: made-up listings -> MiniLM -> code -> their new siblings' titles.
   Without it, the previous report's cold-start results are kept with their provenance.
5. figures: reports/figures/semantic_ids_<dataset>_usage_<fields>.png (codebook usage
   per level, first seed) and ..._ami.png; reports/semantic_ids.md, the readable table
   of every dataset's report.

``--quick`` trains 2 epochs per level into ``...-quick`` folders (a smoke run; the report
says so). ``--set key=value`` changes the indexer config as in ``seater index semantic``
(runs recorded with another config are then reported as mismatched, never overwritten).
Threads: torch and BLAS are pinned to --threads.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import command, pinned_threads, write_report
from benchmarks.semantic_runs import (
    SLUG,
    RunState,
    expected_config,
    find_run,
    parse_fields,
    specs,
    train_run,
    training_command,
)
from benchmarks.semantic_table import (
    SemanticRunCodes,
    TreeCodes,
    ami_by_source,
    headline,
    render_markdown,
    semantic_rows,
    tree_rows,
)
from indexer import from_codes
from training.data import InteractionData, load_dataset
from training.data.attribute_paths import FILE as ATTRIBUTES_FILE
from training.data.attribute_paths import category_paths, read_item_attributes
from training.data.dataset import ItemText
from training.data.loaders import DataError
from training.data.registry import resolve_dataset
from training.lmindexer.ami import (
    ami,
    category_labels,
    distinctive_words,
    first_varying_level,
    neighbour_agreement,
    prefix_clusters,
    source_agreement,
)
from training.lmindexer.cold_start import cold_start
from training.lmindexer.compare import PUBLISHED, seater_comparison, setting_of, tree_codes
from training.lmindexer.config import SemanticRun, TextFields
from training.lmindexer.pipeline import load_indexer
from training.lmindexer.plots import plot_usage
from training.lmindexer.text import Vocabulary, item_texts, minilm_encoder
from training.lmindexer.train import Corpus, prefix_argmax, train_indexer
from training.reports import REPORTS_DIR, git_commit, machine_info, now

log = logging.getLogger(__name__)

DEMO = [
    "OPI Nail Lacquer, Big Apple Red, 0.5 fl oz. Beauty > Makeup > Nails > Nail Polish",
    "Argan oil repair shampoo for dry, damaged hair. Beauty > Hair Care > Shampoos",
    "Vitamin C brightening face serum with hyaluronic acid. Beauty > Skin Care > Face",
    "Ceramic flat iron hair straightener, 1 inch. Beauty > Hair Care > Styling Tools",
]
COLD_START_KEYS = ("cold_start_holdout", "cold_start_demo")
SASREC_WHY = ("the best validation ndcg@10 among the dataset's finished loo SASRec runs of "
              "width 64 with fit/item_emb.npy, as seater train seater picks it")


def holdout_eval(cfg: SemanticRun, x: np.ndarray, item_text: ItemText, frac: float,
                 seed: int) -> dict:
    """Retrain without a random ``frac`` of the items, cold-start them, judge placements."""
    n = len(x)
    rng = np.random.default_rng(seed + 1)
    order = rng.permutation(n)
    n_held = int(round(frac * n))
    held, control = np.zeros(n, bool), np.zeros(n, bool)
    held[order[:n_held]] = True
    control[order[n_held: 2 * n_held]] = True  # trained items, judged the same way
    train_idx, held_idx = np.flatnonzero(~held), np.flatnonzero(held)
    texts = item_texts(item_text, cfg.text.fields)
    vocab = Vocabulary.build([texts[i] for i in train_idx], cfg.text.vocab_size,
                             cfg.text.min_df, cfg.text.max_df)
    bags = vocab.bags(texts)
    t0 = time.perf_counter()
    out = train_indexer(Corpus(x[train_idx], bags[train_idx], len(vocab)), cfg.model,
                        cfg.train, cfg.assign)
    tree, _ = from_codes(out.codes, k=cfg.model.k)
    res = cold_start(tree, out.model, x[held_idx], np.zeros((tree.n_nodes, 1), np.float32))
    codes = np.zeros((n, tree.max_depth), np.int64)
    codes[train_idx] = res.tree.codes[: len(train_idx)]
    codes[held_idx] = res.codes
    top = first_varying_level(item_text)
    labels = {"top": category_labels(item_text, top), "sub": category_labels(item_text, top + 1)}
    result: dict = {"held_out": n_held, "trained": len(train_idx),
                    "train_seconds": round(time.perf_counter() - t0, 1),
                    "placed_at_preferred_prefix": {
                        f"depth{d}": round(float((res.codes[:, :d] == res.preferred[:, :d])
                                                 .all(1).mean()), 4)
                        for d in range(1, out.model.levels + 1)}}
    for depth, cat in ((1, "top"), (2, "sub")):
        for name, query in (("cold_start", held), ("trained_control", control)):
            agree, judged = neighbour_agreement(codes, labels[cat], query, depth)
            score, _ = ami(prefix_clusters(codes[query], depth),
                           [labels[cat][i] for i in np.flatnonzero(query)])
            result[f"depth{depth}_vs_{cat}"] = result.get(f"depth{depth}_vs_{cat}", {})
            result[f"depth{depth}_vs_{cat}"][name] = {
                "neighbour_agreement": round(agree, 4), "judged": judged, "ami": round(score, 4)}
    return result


def demo(run: Path, item_text: ItemText, texts: list[str]) -> list[dict]:
    """Made-up listings -> MiniLM -> code -> leaf; their new siblings' titles."""
    loaded = load_indexer(run)
    tree, _ = from_codes(np.load(run / "codes.npy"), k=loaded.config.model.k)
    encode = minilm_encoder(loaded.config.text.model_path)
    res = cold_start(tree, loaded.model, encode(texts),
                     np.zeros((tree.n_nodes, 1), np.float32))
    rows = []
    for j, text in enumerate(texts):
        leaf = int(res.tree.item_leaf[res.items[j]])
        parent = int(res.tree.parent[leaf])
        grand = int(res.tree.parent[parent])
        near = [int(res.tree.leaf_item[c]) for c in res.tree.children[parent] if c >= 0]
        cousins = np.flatnonzero((tree.codes[:, :2] == res.codes[j, :2]).all(1))
        rows.append({"text": text, "code": res.codes[j].tolist(),
                     "preferred": res.preferred[j].tolist(),
                     "siblings": [item_text.title[i] for i in near if i < tree.n_items][:5],
                     "depth2_node_items": int(len(cousins)),
                     "depth2_top_categories": _top_categories(item_text, cousins),
                     "new_internal_nodes": int(sum(v >= tree.n_nodes for v in (parent, grand)))})
    return rows


def _top_categories(item_text: ItemText, items: np.ndarray, n: int = 3) -> dict[str, int]:
    names = [" > ".join(item_text.categories[i][0][1:3]) for i in items
             if item_text.categories[i]]
    values, counts = np.unique(names, return_counts=True) if names else ([], [])
    order = np.argsort(-np.asarray(counts))[:n]
    return {str(values[i]): int(counts[i]) for i in order}


def plot_ami(heads: dict[str, dict[str, Any]], path: Path, title: str,
             published: float | None = None) -> None:
    """Bars of the Table-1 pair per source; seeded rows carry their std as error bars,
    and LMIndexer's published figure is a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(heads)
    cols = ["level1_vs_top", "level2_vs_sub"]
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(names), 3.2))
    width = 0.38
    for j, col in enumerate(cols):
        vals = [_num(heads[n].get(col)) for n in names]
        errs = [_num(heads[n].get(f"{col}_std"), 0.0) for n in names]
        bars = ax.bar(np.arange(len(names)) + (j - 0.5) * width, vals, width, yerr=errs,
                      capsize=2, label=col)
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    if published is not None:
        ax.axhline(published, color="grey", ls="--", lw=1,
                   label=f"LMIndexer Table 1 ({published:.3f})")
    ax.set_xticks(np.arange(len(names)), names, fontsize=7, rotation=20, ha="right")
    ax.set_ylabel("AMI")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _num(value: Any, missing: float = float("nan")) -> float:
    return float(value) if value is not None else missing


def refresh_pairs(out: Path, command: str) -> None:
    """Swap in the current SEATER pairs (from the reports folder ``out`` is in, i.e.
    ``<out's grandparent>/quality/<dataset>.json``) without retraining: the rest of the
    report keeps its own commit and command, and the refresh records its own."""
    if not out.is_file():
        raise SystemExit(f"{out} not found: run `python -m benchmarks.semantic_ids` without "
                         "--refresh-pairs first")
    result = json.loads(out.read_text())
    result["seater_loo"] = seater_comparison(result["dataset"], out.parent.parent)
    label_pairs(result["seater_loo"], known_fields(
        {folder: row["fields"] for row in result.get("rows", [])
         for folder in row.get("runs", {}).values()}, result.get("cold_start_provenance")))
    result["seater_loo_refreshed"] = {"command": command, "commit": git_commit(),
                                      "created": now()}
    write_report(result, out)
    print(json.dumps(result["seater_loo"], indent=2))


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.semantic_ids",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="beauty")
    parser.add_argument("--fields", default="title,title+categories",
                        help="text settings, comma-separated: title, title+categories")
    parser.add_argument("--seeds", default="0,1,2", help="indexer seeds, comma-separated")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true",
                        help="2 epochs per level, in ...-quick run folders")
    parser.add_argument("--compare-only", action="store_true",
                        help="train nothing: compare the finished runs, list the missing")
    parser.add_argument("--cold-start", action="store_true",
                        help="also the held-out cold-start check (retrains once) and demo")
    parser.add_argument("--holdout", type=float, default=0.1,
                        help="fraction of items held out by --cold-start")
    parser.add_argument("--sasrec-run", default="",
                        help="SASRec run folder for the SASRec tree (default: the best one)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="indexer config override, as in seater index semantic")
    parser.add_argument("--runs", default="runs")
    parser.add_argument("--refresh-pairs", action="store_true",
                        help="only re-read the SEATER semantic/balanced pairs from "
                             "reports/quality/<dataset>.json into the existing report "
                             "(after a new `seater train seater` run; trains nothing)")
    parser.add_argument("--out", default="")
    parser.add_argument("--figures", default=str(REPORTS_DIR / "figures"))
    parser.add_argument("--markdown", default="",
                        help="readable table of every semantic_ids_*.json beside --out "
                             "(default reports/semantic_ids.md for the default --out)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cmd = command("benchmarks.semantic_ids", argv)
    default_out = REPORTS_DIR / "quality" / f"semantic_ids_{args.dataset}.json"
    out = Path(args.out) if args.out else default_out
    if args.refresh_pairs:
        refresh_pairs(out, cmd)
        print(f"wrote {render(args, out, default_out)}")
        return 0
    try:
        fields = parse_fields(args.fields)
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError as e:
        raise SystemExit(f"python -m benchmarks.semantic_ids: {e}") from e
    with pinned_threads(args.threads):
        result = evaluate(args, fields, seeds, cmd, out)
    print(f"wrote {render(args, out, default_out)}")
    return 1 if result["missing_runs"] and not args.compare_only else 0


def render(args: argparse.Namespace, out: Path, default_out: Path) -> Path:
    """The readable table of every report beside ``out`` (--markdown, else
    reports/semantic_ids.md for the default report, else semantic_ids.md beside it)."""
    md = Path(args.markdown) if args.markdown else (
        REPORTS_DIR / "semantic_ids.md" if out == default_out else out.parent / "semantic_ids.md")
    reports = sorted(out.parent.glob("semantic_ids_*.json")) + [out]
    return render_markdown(reports, md)


def text_column(dataset: str) -> str:
    """The name of items.tsv's text column (Sports has ``keywords``, not titles), so the
    report says what ``title`` means on this catalogue."""
    try:
        header = (resolve_dataset(dataset) / "items.tsv").read_text().split("\n", 1)[0]
    except (OSError, ValueError):
        return "title"
    cols = header.split("\t")
    return cols[2] if len(cols) > 2 else "title"


def identical_fields(item_text: ItemText, fields: list[TextFields]) -> dict[str, str]:
    """Settings whose texts equal an earlier setting's on this catalogue (no categories:
    ``title+categories`` is the title), which would only train the same thing twice."""
    seen: dict[tuple[str, ...], str] = {}
    same = {}
    for f in fields:
        key = tuple(item_texts(item_text, f))
        if key in seen:
            same[f] = seen[key]
        else:
            seen[key] = f
    return same


def locate_runs(args: argparse.Namespace, data: InteractionData, fields: list[TextFields],
                seeds: list[int], command: str) -> list[RunState]:
    """Every (fields, seed) run's state, trained first where missing unless --compare-only."""
    dataset_dir = Path(args.runs) / data.name
    states: list[RunState] = []
    for spec in specs(fields, seeds, args.quick):
        cfg = expected_config(spec, args.dataset, args.runs, args.threads, args.quick, args.set)
        state = find_run(spec, dataset_dir, cfg, args.quick)
        if not args.compare_only and state.status in ("missing", "unfinished"):
            siblings = [s.folder for s in states if s.spec.fields == spec.fields]
            state = train_run(state, cfg, data, siblings, command)
        states.append(state)
    return states


def missing_entry(state: RunState, dataset: str, args: argparse.Namespace) -> dict[str, Any]:
    return {"fields": state.spec.fields, "seed": state.spec.seed, "folder": str(state.folder),
            "status": state.status, "reason": state.reason,
            "command": training_command(state.spec, dataset, args.quick, args.set, args.runs)}


def build_trees(finished: list[SemanticRunCodes], data: InteractionData, k: int, seed: int,
                sasrec: Path | None, runs_dir: str) -> tuple[list[TreeCodes], dict[str, str]]:
    """The comparison trees: balanced over each setting's MiniLM vectors, balanced over
    SASRec embeddings, random; a note for each that could not be built."""
    trees, notes = [], {}
    for fields in dict.fromkeys(r.fields for r in finished):
        folder = Path(next(r.folder for r in finished if r.fields == fields))
        emb = np.load(folder / "text_emb.npy")
        log.info("balanced tree over %s", folder / "text_emb.npy")
        trees.append(TreeCodes("balanced_text", fields,
                               tree_codes(emb, data.n_items, k, "balanced", seed),
                               str(folder / "text_emb.npy")))
    if sasrec is None:
        notes["balanced_sasrec"] = (f"no finished SASRec run with fit/item_emb.npy under "
                                    f"{Path(runs_dir) / data.name}/ (train one: seater train "
                                    f"sasrec -d {data.name} -p loo)")
    else:
        emb = np.load(sasrec / "fit" / "item_emb.npy")
        if len(emb) == data.n_items:
            trees.append(TreeCodes("balanced_sasrec", "n/a",
                                   tree_codes(emb, data.n_items, k, "balanced", seed),
                                   str(sasrec / "fit" / "item_emb.npy")))
        else:
            notes["balanced_sasrec"] = f"{sasrec} has {len(emb)} rows for {data.n_items} items"
    trees.append(TreeCodes("random", "n/a", tree_codes(None, data.n_items, k, "random", seed),
                           "item count only"))
    return trees, notes


def comparison(args: argparse.Namespace, data: InteractionData, states: list[RunState],
               seeds: list[int]) -> tuple[dict[str, Any], list[SemanticRunCodes]]:
    """The labelled rows (runs over seeds, then the trees) and what is missing, for the
    report; and the finished runs' codes, for the figures."""
    finished = [SemanticRunCodes(s.spec.fields, s.spec.seed, str(s.folder),
                                 np.load(s.folder / "codes.npy"), s.report or {})
                for s in states if s.status == "finished"]
    missing = [missing_entry(s, args.dataset, args) for s in states if s.status != "finished"]
    k = int(finished[0].report["k"]) if finished else expected_config(
        states[0].spec, args.dataset, args.runs, args.threads, args.quick, args.set).model.k
    labels, source = category_source(args.dataset, data)
    has_categories = labels is not None
    sasrec, why = sasrec_run(args, data) if has_categories else (None, "")
    trees, notes = (build_trees(finished, data, k, seeds[0], sasrec, args.runs)
                    if has_categories else ([], {}))
    table, unavailable = ami_by_source(finished, trees, labels)
    lacking: dict[str, list[int]] = {}
    for m in missing:
        lacking.setdefault(m["fields"], []).append(m["seed"])
    rows = semantic_rows(finished, table, lacking) + tree_rows(trees, table)
    return {
        "k": k, "rows": rows, "ami_headline": headline(rows),
        "ami_categories": ({**source, **{key: table[key] for key in (
            "category_levels", "n_labelled", "n_categories", "examples")}}
                           if table else None),
        "ami_unavailable": unavailable, "missing_runs": missing, "missing_sources": notes,
        "sasrec_run": {"folder": str(sasrec), "why": why} if sasrec else None,
    }, finished


ID_CHECK_ON = ("beauty",)
"""Catalogues with both category text and item2attributes.json, on which the id reading
is checked whenever another catalogue's labels come from ids alone."""


def category_source(dataset: str, data: InteractionData) -> tuple[ItemText | None, dict[str, Any]]:
    """The category labels AMI is measured against, and where they come from: items.tsv's
    category text, else the category ids of item2attributes.json beside the interactions.
    ``attribute_ids_vs_text`` says how well the id reading reproduces category text, on
    this catalogue where it has both, else on those of ID_CHECK_ON that can be loaded."""
    text = data.item_text
    from_ids = id_labels(dataset, data)
    if text is not None and any(text.categories):
        info: dict[str, Any] = {"source": "items.tsv categories"}
        if from_ids is not None:
            info["attribute_ids_vs_text"] = {data.name: source_agreement(text, from_ids)}
        return text, info
    if from_ids is None:
        return None, {}
    checks = {}
    for name in ID_CHECK_ON:
        try:
            other = load_dataset(name)
        except DataError:
            continue
        other_ids = id_labels(name, other)
        if other.item_text is not None and any(other.item_text.categories) and other_ids:
            checks[name] = source_agreement(other.item_text, other_ids)
    top = category_labels(from_ids, first_varying_level(from_ids))
    return from_ids, {"source": f"{ATTRIBUTES_FILE} category ids (names not shipped; read "
                                "by training.data.attribute_paths)",
                      "attribute_ids_vs_text": checks,
                      "top_distinctive_words": distinctive_words(top, from_ids.title)}


def id_labels(dataset: str, data: InteractionData) -> ItemText | None:
    """Category paths from the dataset folder's item2attributes.json, if it has one."""
    try:
        path = resolve_dataset(dataset) / ATTRIBUTES_FILE
    except DataError:
        return None
    if not path.is_file():
        return None
    paths = category_paths(read_item_attributes(path), data.item_ids)
    if not any(paths):
        return None
    title = data.item_text.title if data.item_text else [""] * data.n_items
    return ItemText(title=title, categories=paths)


def sasrec_run(args: argparse.Namespace, data: InteractionData) -> tuple[Path | None, str]:
    """The SASRec run whose embeddings the SASRec tree is built over, and why that one."""
    if args.sasrec_run:
        return Path(args.sasrec_run), "named by --sasrec-run"
    from training.seater.pipeline import SeaterRun, best_sasrec_run

    return best_sasrec_run(SeaterRun(dataset=args.dataset, out_dir=args.runs), data), SASREC_WHY


def evaluate(args: argparse.Namespace, fields: list[TextFields], seeds: list[int],
             command: str, out: Path) -> dict[str, Any]:
    """Everything in the module docstring but the pair refresh; writes ``out``."""
    t0 = time.perf_counter()
    data = load_dataset(args.dataset)
    if data.item_text is None:
        raise SystemExit(f"{data.name} has no item text (items.tsv): no semantic IDs")
    identical = identical_fields(data.item_text, fields)
    states = locate_runs(args, data, [f for f in fields if f not in identical], seeds, command)
    seconds = {"runs": round(time.perf_counter() - t0, 1)}
    t0 = time.perf_counter()
    compared, finished = comparison(args, data, states, seeds)
    result: dict[str, Any] = {
        "dataset": data.name, "text_column": text_column(args.dataset),
        "fields": list(fields), "seeds": seeds, "quick": args.quick,
        "overrides": list(args.set), "identical_fields": identical,
        **compared,
        "seater_loo": seater_comparison(data.name, out.parent.parent),
        "published": PUBLISHED,
        "command": command, "commit": git_commit(), "machine": machine_info(), "created": now(),
    }
    seconds["compare"] = round(time.perf_counter() - t0, 1)
    result.update(cold_start_results(args, data, states, out, seconds))
    label_pairs(result["seater_loo"], known_fields(
        {str(s.folder): s.spec.fields for s in states if s.status == "finished"},
        result.get("cold_start_provenance")))
    result["figures"] = figures(args, data, finished, result, Path(args.figures))
    result["seconds"] = seconds
    write_report(result, out)
    print(json.dumps({"report": str(out), "ami": result["ami_headline"],
                      "missing_runs": [m["folder"] for m in result["missing_runs"]],
                      "missing_sources": result["missing_sources"], "seconds": seconds},
                     indent=2))
    return result


def known_fields(runs: dict[str, str], provenance: dict[str, Any] | None) -> dict[str, str]:
    """Run folder -> text fields for every run this report has read a config of: its own
    runs, and the cold-start run (which may be one from before the seeded layout)."""
    known = dict(runs)
    if provenance and provenance.get("fields"):
        known.setdefault(str(provenance["run"]), provenance["fields"])
    return known


def label_pairs(seater_loo: dict[str, Any], known: dict[str, str]) -> None:
    """Name the text fields of SEATER's semantic codes where the codes' own folder is not
    on this machine but this report knows the run (e.g. from the previous report)."""
    for pair in seater_loo.get("pairs", []):
        folder = str(Path(pair.get("codes", "")).parent)
        if str(pair.get("text_fields", "")).startswith("unknown") and folder in known:
            pair["text_fields"] = known[folder]
            pair["text_fields_from"] = "the run's recorded config, as read by this report"
    for group in seater_loo.get("seeds", []):  # a setting's summary says what its pairs say
        fields = {pair["text_fields"] for pair in seater_loo.get("pairs", [])
                  if setting_of(pair["semantic"]) == group["setting"]}
        if len(fields) == 1:
            group["text_fields"] = fields.pop()


def cold_start_run(states: list[RunState]) -> RunState | None:
    """The run the cold-start checks use: the first finished title+categories run (the
    demo listings name their categories), else the first finished one."""
    done = [s for s in states if s.status == "finished"]
    return next((s for s in done if s.spec.fields == "title+categories"), done[0] if done else None)


def cold_start_results(args: argparse.Namespace, data: InteractionData, states: list[RunState],
                       out: Path, seconds: dict[str, float]) -> dict[str, Any]:
    """The cold-start blocks: computed with --cold-start, else kept from the previous
    report at ``out`` (with the command, commit and run they came from)."""
    run = cold_start_run(states)
    if not args.cold_start or run is None or data.item_text is None:
        return carried_cold_start(json.loads(out.read_text()) if out.is_file() else None)
    result: dict[str, Any] = {}
    resolved = load_indexer(run.folder).config
    if args.holdout > 0 and any(data.item_text.categories):
        t0 = time.perf_counter()
        result["cold_start_holdout"] = holdout_eval(resolved, np.load(run.folder / "text_emb.npy"),
                                                    data.item_text, args.holdout,
                                                    resolved.train.seed)
        seconds["holdout"] = round(time.perf_counter() - t0, 1)
    if data.name == "beauty":  # the demo listings are beauty products
        t0 = time.perf_counter()
        result["cold_start_demo"] = demo(run.folder, data.item_text, DEMO)
        seconds["demo"] = round(time.perf_counter() - t0, 1)
    result["cold_start_provenance"] = {"run": str(run.folder), "fields": run.spec.fields,
                                       "seed": run.spec.seed, "commit": git_commit(),
                                       "created": now()}
    return result


def carried_cold_start(previous: dict[str, Any] | None) -> dict[str, Any]:
    """The previous report's cold-start results and where they came from (reports from
    before this layout name their run in ``semantic_run.config``)."""
    if not previous or not any(key in previous for key in COLD_START_KEYS):
        return {}
    kept = {key: previous[key] for key in COLD_START_KEYS if key in previous}
    prov = previous.get("cold_start_provenance")
    if prov is None:
        cfg = previous.get("semantic_run", {}).get("config", {})
        prov = {"run": str(Path(cfg.get("out_dir", "runs")) / previous.get("dataset", "")
                           / cfg.get("name", "semantic")),
                "fields": cfg.get("text", {}).get("fields"), "seed": previous.get("seed"),
                "command": previous.get("command"), "commit": previous.get("commit"),
                "created": previous.get("created")}
    return {**kept, "cold_start_provenance": {**prov, "carried_from_previous_report": True}}


def figures(args: argparse.Namespace, data: InteractionData, finished: list[SemanticRunCodes],
            result: dict[str, Any], folder: Path) -> dict[str, str]:
    """Codebook usage of each setting's first seed, and the AMI bars."""
    out: dict[str, str] = {}
    for fields in dict.fromkeys(r.fields for r in finished):
        run = next(r for r in finished if r.fields == fields)
        loaded = load_indexer(Path(run.folder))
        argmax = prefix_argmax(loaded.model, np.load(Path(run.folder) / "text_emb.npy"),
                               run.codes)
        slug = SLUG[fields]
        path = plot_usage(run.codes, argmax, loaded.config.model.k,
                          folder / f"semantic_ids_{data.name}_usage_{slug}.png",
                          f"{data.name} [{fields}], seed {run.seed}: codebook usage per level")
        out[f"usage_{slug}"] = _shown(path)
    if result["ami_headline"]:
        path = folder / f"semantic_ids_{data.name}_ami.png"
        plot_ami(result["ami_headline"], path,
                 f"{data.name}: AMI of ID prefixes vs categories (text fields in brackets)",
                 PUBLISHED["lmindexer_table1_ami"].get(data.name))
        out["ami"] = _shown(path)
    return out


def _shown(path: Path) -> str:
    """A figure's path relative to the repository when it is inside it."""
    try:
        return str(path.resolve().relative_to(REPORTS_DIR.parent.resolve()))
    except ValueError:
        return str(path)


if __name__ == "__main__":
    sys.exit(main())
