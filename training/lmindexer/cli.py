"""``seater index ...``: item identifiers learned from item text (LMIndexer-style).

    seater index semantic -d beauty            # text -> codes.npy, indexer.pt, report, plot
    seater index ami -d beauty                 # AMI vs SASRec-tree / random / text-tree IDs
    seater train seater -d beauty --ids semantic --codes runs/beauty/semantic/codes.npy
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer

from training.cli_options import DataArgs, VerboseOpt, fail, setup_logging, with_options
from training.config import ConfigError, build
from training.data import config_spec
from training.data.loaders import DataError
from training.reports import command_line

index_app = typer.Typer(help="Learn item identifiers (semantic IDs from item text).",
                        no_args_is_help=True)

log = logging.getLogger(__name__)


DatasetOpt = Annotated[str | None, typer.Option(
    "--dataset", "-d", help="beauty|sports|yelp (needs items.tsv with titles/categories), "
    "'synthetic[:opts]', a folder with interactions.txt + items.tsv, or a .csv/.tsv/.parquet "
    "log with --items.")]
ThreadsOpt = Annotated[int | None, typer.Option(
    "--threads", help="torch and BLAS threads (1 on a shared machine; 0 = library default).")]


@index_app.command("semantic")
@with_options
def semantic(
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", help="YAML/TOML/JSON run config (sections: text, model, train, "
        "assign).")] = None,
    dataset: DatasetOpt = None,
    data: DataArgs = DataArgs(),
    out: Annotated[str | None, typer.Option(
        "--out", help="Runs folder; writes OUT/<dataset>/<name>/ (default runs).")] = None,
    name: Annotated[str | None, typer.Option(
        "--name", help="Run folder name (default semantic).")] = None,
    k: Annotated[int | None, typer.Option(
        "-k", "--k", help="Codes per level (= tree fan-out).")] = None,
    levels: Annotated[int | None, typer.Option(
        "--levels", help="ID length L; 0 = smallest L with k**L >= n_items / max_collision.")
    ] = None,
    epochs: Annotated[int | None, typer.Option(
        "--epochs", help="Full-training epochs per level (after its warm-up).")] = None,
    fields: Annotated[str | None, typer.Option(
        "--fields", help="Item text: title+categories or title.")] = None,
    max_collision: Annotated[int | None, typer.Option(
        "--max-collision", help="Items allowed to share a full code (1 = collision-free; "
        "more leaves a disambiguation level to the tree).")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed for init and batches.")] = None,
    threads: ThreadsOpt = None,
    overrides: Annotated[list[str] | None, typer.Option(
        "--set", help="Override any config key, e.g. --set train.lr=1e-3 (repeatable).")] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Train the semantic indexer on item text; write codes.npy, indexer.pt, text_emb.npy,
    report.json and usage.png to OUT/<dataset>/<name>/."""
    from training.lmindexer.config import SemanticRun
    from training.lmindexer.pipeline import run_semantic

    setup_logging(verbose)
    flags = {
        "dataset": config_spec(dataset) if dataset else None, "out_dir": out, "name": name,
        **data.flags(),
        "text.fields": fields,
        "model.k": k, "model.levels": levels, "train.epochs": epochs, "train.seed": seed,
        "train.threads": threads, "assign.max_collision": max_collision,
    }
    try:
        cfg = build(SemanticRun, config, flags, overrides)
        report = run_semantic(cfg, command=command_line())
    except (ConfigError, DataError, ValueError, FileNotFoundError, RuntimeError) as e:
        fail(e)
    summary = {"codes": str(Path(cfg.out_dir) / report["dataset"] / cfg.name / "codes.npy"),
               "levels": report["levels"], "k": report["k"],
               "collisions": report["collisions"]["stored"],
               "ami": {n: r["headline"] for n, r in report.get("ami", {}).get("sources",
                                                                              {}).items()}}
    typer.echo(json.dumps(summary))


@index_app.command("ami")
def ami(
    dataset: Annotated[str, typer.Option(
        "--dataset", "-d", help="Dataset whose categories are the reference.")] = "beauty",
    run: Annotated[Path | None, typer.Option(
        "--run", help="Semantic run folder (default runs/<dataset>/semantic).")] = None,
    sasrec_emb: Annotated[Path | None, typer.Option(
        "--sasrec-emb", help="SASRec item embeddings for the balanced tree (default "
        "runs/<dataset>/sasrec-loo/fit/item_emb.npy; skipped with a note when missing).")
    ] = None,
    text_tree: Annotated[bool, typer.Option(
        "--text-tree/--no-text-tree", help="Also a balanced tree over the MiniLM vectors "
        "(the paper's clustering baseline).")] = True,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random and k-means trees.")
                    ] = 0,
    out: Annotated[Path | None, typer.Option(
        "--out", help="Report JSON (default reports/quality/semantic_ids_<dataset>.json).")
    ] = None,
    threads: ThreadsOpt = 1,
    verbose: VerboseOpt = False,
) -> None:
    """AMI of level-1 codes vs the top category and level-2 prefixes vs the sub-category
    for semantic, SASRec-balanced, random (and text-balanced) IDs (LMIndexer Table 1)."""
    import numpy as np
    import torch

    from training.data import load_dataset
    from training.lmindexer.compare import compare
    from training.lmindexer.pipeline import load_indexer, threads_limited
    from training.reports import REPORTS_DIR

    setup_logging(verbose)
    if threads:
        torch.set_num_threads(threads)
    try:
        data = load_dataset(dataset)
        if data.item_text is None or not any(data.item_text.categories):
            raise DataError(f"{dataset} has no item categories (items.tsv) to compare with")
        run = run or Path("runs") / data.name / "semantic"
        codes_path = run / "codes.npy"
        if not codes_path.is_file():
            raise FileNotFoundError(f"{codes_path} not found: run `seater index semantic "
                                    f"-d {dataset}` first or pass --run")
        k = load_indexer(run).config.model.k
        report_path = run / "report.json"
        run_report = json.loads(report_path.read_text()) if report_path.is_file() else None
        text_emb = np.load(run / "text_emb.npy") if text_tree else None
        sasrec = sasrec_emb or Path("runs") / data.name / "sasrec-loo" / "fit" / "item_emb.npy"
        with threads_limited(threads or 0):
            result = compare(data.name, data.item_text, np.load(codes_path), run_report, sasrec,
                             text_emb, k, seed, command_line())
    except (DataError, ValueError, FileNotFoundError) as e:
        fail(e)
    path = out or REPORTS_DIR / "quality" / f"semantic_ids_{data.name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    typer.echo(json.dumps({"report": str(path), "ami": result["ami_headline"],
                           "missing": result["missing_sources"]}))
