"""The ``seater`` command line: data, training, evaluation, export, serving, the demo.

Every training command takes ``--config FILE`` (YAML/TOML mirroring the run dataclass),
a few typed flags for the knobs people change most, and ``--set section.key=value`` for
anything else; precedence is defaults < file < flags < --set.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer

from training.config import ConfigError, build
from training.data.loaders import DataError
from training.lmindexer.cli import index_app

app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False,
                  pretty_exceptions_enable=False)
data_app = typer.Typer(help="Inspect datasets.", no_args_is_help=True)
train_app = typer.Typer(help="Train models.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(train_app, name="train")
app.add_typer(index_app, name="index")

ConfigOpt = Annotated[Path | None, typer.Option(
    "--config", "-c", help="YAML/TOML/JSON file with the run config (sections: model, train).")]
SetOpt = Annotated[list[str] | None, typer.Option(
    "--set", help="Override any config key, e.g. --set train.lr=3e-4 (repeatable).")]
DatasetOpt = Annotated[str | None, typer.Option(
    "--dataset", "-d", help="beauty|sports|yelp|lastfm, 'synthetic[:opts]', a folder with "
    "interactions.txt, or a .csv/.parquet log. Folders are looked up in $SEATER_DATA_DIR, "
    "else ../shared/data, else the embedded data/.")]
ProtocolOpt = Annotated[str | None, typer.Option(
    "--protocol", "-p", help="loo (leave-one-out) or seater (users 8:1:1, 80/20 history).")]
SeedOpt = Annotated[int | None, typer.Option("--seed", help="Seed for splits, init, sampling.")]
EpochsOpt = Annotated[int | None, typer.Option("--epochs", help="Maximum epochs.")]
PatienceOpt = Annotated[int | None, typer.Option(
    "--patience", help="Stop after this many epochs without a better validation metric.")]
DeviceOpt = Annotated[str | None, typer.Option("--device", help="auto, cpu, cuda, cuda:1 ...")]
OutOpt = Annotated[str | None, typer.Option("--out", help="Folder for run outputs (runs/).")]
ResumeOpt = Annotated[bool, typer.Option(
    "--resume/--no-resume", help="Continue from the run folder's last checkpoint if any.")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")]


def _setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _fail(e: Exception) -> None:
    typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


@data_app.command("stats")
def data_stats(
    dataset: Annotated[list[str] | None, typer.Option(
        "--dataset", "-d", help="Dataset(s) to describe (repeatable); default: all known.")] = None,
) -> None:
    """Print users, items, interactions and length statistics as JSON lines."""
    from training.data import load_dataset
    from training.data.registry import KNOWN

    for name in dataset or list(KNOWN):
        try:
            typer.echo(json.dumps(load_dataset(name).stats()))
        except DataError as e:
            _fail(e)


@train_app.command("sasrec")
def train_sasrec(
    config: ConfigOpt = None,
    dataset: DatasetOpt = None,
    protocol: ProtocolOpt = None,
    refit: Annotated[bool | None, typer.Option(
        "--refit/--no-refit", help="loo only: after early stopping, retrain on "
        "train+validation for the best number of epochs, then test.")] = None,
    d_model: Annotated[int | None, typer.Option("--d-model", help="Embedding size.")] = None,
    n_layers: Annotated[int | None, typer.Option("--layers", help="Transformer blocks.")] = None,
    n_heads: Annotated[int | None, typer.Option("--heads", help="Attention heads.")] = None,
    max_len: Annotated[int | None, typer.Option("--max-len", help="History length.")] = None,
    dropout: Annotated[float | None, typer.Option("--dropout", help="Dropout rate.")] = None,
    loss: Annotated[str | None, typer.Option(
        "--loss", help="ss (sampled softmax), ce (full softmax) or bce (original).")] = None,
    n_negatives: Annotated[int | None, typer.Option(
        "--negatives", help="Negatives per position for the ss loss.")] = None,
    epochs: EpochsOpt = None,
    patience: PatienceOpt = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="Batch size.")] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="Adam learning rate.")] = None,
    seed: SeedOpt = None,
    device: DeviceOpt = None,
    out: OutOpt = None,
    name: Annotated[str | None, typer.Option("--name", help="Run name (folder).")] = None,
    report: Annotated[bool | None, typer.Option(
        "--report/--no-report", help="Write the result into reports/quality/.")] = None,
    overrides: SetOpt = None,
    resume: ResumeOpt = True,
    verbose: VerboseOpt = False,
) -> None:
    """Train SASRec, evaluate it, and export its item embeddings for the tree builder."""
    from training.sasrec.pipeline import SASRecRun, run_sasrec

    _setup_logging(verbose)
    flags = {
        "dataset": dataset, "protocol": protocol, "refit": refit, "out_dir": out,
        "name": name, "report": report,
        "model.d_model": d_model, "model.n_layers": n_layers, "model.n_heads": n_heads,
        "model.max_len": max_len, "model.dropout": dropout, "model.loss": loss,
        "model.n_negatives": n_negatives,
        "train.epochs": epochs, "train.patience": patience, "train.batch_size": batch_size,
        "train.lr": lr, "train.seed": seed, "train.device": device,
    }
    try:
        cfg = build(SASRecRun, config, flags, overrides)
        entries = run_sasrec(cfg, resume=resume)
    except (ConfigError, DataError, ValueError) as e:
        _fail(e)
    for entry in entries:
        typer.echo(json.dumps({"key": entry["key"], "test": entry["metrics"]["test"]}))


@train_app.command("seater")
def train_seater(
    config: ConfigOpt = None,
    dataset: DatasetOpt = None,
    protocol: ProtocolOpt = None,
    refit: Annotated[bool | None, typer.Option(
        "--refit/--no-refit", help="loo only: retrain on train+validation for the best "
        "number of epochs before testing.")] = None,
    ids: Annotated[str | None, typer.Option(
        "--ids", help="balanced (Algorithm 1), kmeans (imbalanced), random, or semantic "
        "(codes from `seater index semantic`, given with --codes).")] = None,
    codes: Annotated[str | None, typer.Option(
        "--codes", help="ids=semantic: the .npy of item codes.")] = None,
    k: Annotated[int | None, typer.Option(
        "-k", "--branches", help="Tree branching factor.")] = None,
    beam: Annotated[int | None, typer.Option(
        "--beam", help="Beam size for validation and test (>= 50 for @50 metrics).")] = None,
    sasrec_run: Annotated[str | None, typer.Option(
        "--sasrec-run", help="SASRec run folder for embeddings (default runs/<dataset>/"
        "sasrec-<protocol>; trained first when missing).")] = None,
    init: Annotated[bool | None, typer.Option(
        "--init-from-sasrec/--scratch", help="Initialise node embeddings (leaves = items, "
        "internal = centroids) and the encoder from SASRec.")] = None,
    lambda_align: Annotated[float | None, typer.Option(
        "--lambda-align", help="Weight of the alignment loss (0 = off).")] = None,
    lambda_rank: Annotated[float | None, typer.Option(
        "--lambda-rank", help="Weight of the ranking loss (0 = off).")] = None,
    d_model: Annotated[int | None, typer.Option("--d-model", help="Model width.")] = None,
    max_len: Annotated[int | None, typer.Option("--max-len", help="History length.")] = None,
    epochs: EpochsOpt = None,
    patience: PatienceOpt = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="Batch size.")] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="Adam learning rate.")] = None,
    seed: SeedOpt = None,
    device: DeviceOpt = None,
    out: OutOpt = None,
    name: Annotated[str | None, typer.Option("--name", help="Run name (folder).")] = None,
    report: Annotated[bool | None, typer.Option(
        "--report/--no-report", help="Write the result into reports/quality/.")] = None,
    overrides: SetOpt = None,
    resume: ResumeOpt = True,
    verbose: VerboseOpt = False,
) -> None:
    """Train SEATER on the ID tree with generation + alignment + ranking losses; evaluate
    with the constrained beam search the service uses."""
    from training.seater.pipeline import SeaterRun, run_seater

    _setup_logging(verbose)
    flags = {
        "dataset": dataset, "protocol": protocol, "refit": refit, "out_dir": out,
        "name": name, "report": report, "sasrec_run": sasrec_run, "init_from_sasrec": init,
        "beam_size": beam, "tree.ids": ids, "tree.k": k, "tree.codes": codes,
        "model.d_model": d_model, "model.max_len": max_len,
        "losses.lambda_align": lambda_align, "losses.lambda_rank": lambda_rank,
        "train.epochs": epochs, "train.patience": patience, "train.batch_size": batch_size,
        "train.lr": lr, "train.seed": seed, "train.device": device,
    }
    try:
        cfg = build(SeaterRun, config, flags, overrides)
        entries = run_seater(cfg, resume=resume)
    except (ConfigError, DataError, ValueError, FileNotFoundError) as e:
        _fail(e)
    for entry in entries:
        typer.echo(json.dumps({"key": entry["key"], "test": entry["metrics"]["test"]}))


@app.command("evaluate")
def evaluate_cmd(
    run: Annotated[Path, typer.Option("--run", help="A SEATER run folder (has model.pt).")],
    beam: Annotated[list[int] | None, typer.Option(
        "--beam", help="Beam size(s) to evaluate at (repeatable); default 50.")] = None,
    split: Annotated[str, typer.Option("--split", help="test or valid.")] = "test",
    max_users: Annotated[int, typer.Option(
        "--max-users", help="Evaluate a fixed random subset (0 = everyone).")] = 0,
    threads: Annotated[int, typer.Option("--threads", help="Torch threads (0 = default).")] = 0,
    report: Annotated[bool, typer.Option(
        "--report/--no-report", help="Write each beam's entry into reports/quality/.")] = True,
    verbose: VerboseOpt = False,
) -> None:
    """Evaluate a trained SEATER run with the constrained beam search at one or more beam
    sizes; each gets metrics and the measured decoding time per user."""
    from training.evaluate_run import evaluate_beams

    _setup_logging(verbose)
    if split not in ("test", "valid"):
        _fail(ValueError(f"--split must be test or valid, not {split!r}"))
    try:
        entries = evaluate_beams(run, beam or [50], split, report, max_users=max_users,
                                 threads=threads)
    except (FileNotFoundError, ValueError, DataError) as e:
        _fail(e)
    for e in entries:
        typer.echo(json.dumps({"key": e["key"], split: e["metrics"][split], **e["eval"]}))


@app.command("export")
def export(
    run: Annotated[Path, typer.Option("--run", help="A SEATER run folder (has model.pt).")],
    out: Annotated[Path, typer.Option("--out", help="Bundle root; the bundle goes to "
                                      "OUT/VERSION.")] = Path("artifacts"),
    version: Annotated[str | None, typer.Option(
        "--version", help="Bundle version (default: <dataset>-<UTC timestamp>).")] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Export a trained SEATER run as the serving bundle: encoder.onnx, decoder.onnx (one
    beam step), tree.npz, embeddings.npy, items.json and a manifest with sha256 sums.
    A SASRec run (model.pt, no tree.npz) exports as the dense brute-force baseline bundle
    (encoder.onnx -> user vector, item_emb.npy), served by the same service."""
    import datetime as dt

    from training.export import export_bundle
    from training.sasrec.export import export_sasrec_run, is_sasrec_run
    from training.seater.pipeline import load_run

    _setup_logging(verbose)
    if is_sasrec_run(run):
        try:
            path = export_sasrec_run(run, out, version)
        except (FileNotFoundError, FileExistsError, ValueError) as e:
            _fail(e)
        typer.echo(str(path))
        return
    try:
        model, tree, cfg, _ = load_run(run)
        items = json.loads((run / "items.json").read_text())
        results = run / "result.json"
        metrics = json.loads(results.read_text())[-1]["metrics"] if results.is_file() else {}
        version = version or f"{cfg.dataset}-{dt.datetime.now(dt.UTC):%Y%m%d-%H%M%S}"
        path = export_bundle(model, tree, items, out, version, cfg.dataset, metrics,
                             extra={"run": str(run)})
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        _fail(e)
    typer.echo(str(path))


@app.command("serve")
def serve(
    artifacts: Annotated[Path, typer.Option(
        "--artifacts", help="Bundle folder written by `seater export` (has manifest.json).")],
    host: Annotated[str, typer.Option("--host", help="Bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port.")] = 8000,
) -> None:
    """Run the retrieval service on a bundle, without Docker (same app as the image).

    Cache, batching and limits come from the SEATER_* environment and REDIS_URL (see
    service/settings.py); without REDIS_URL encoder states are cached in process.
    """
    import importlib

    if not (artifacts / "manifest.json").is_file():
        _fail(FileNotFoundError(f"{artifacts / 'manifest.json'} not found: pass a bundle "
                                "folder written by `seater export`"))
    # The service is launched by module name: training never imports service code.
    importlib.import_module("service.__main__").main(
        ["--artifacts", str(artifacts), "--host", host, "--port", str(port)])


@app.command("demo")
def demo(
    dataset: Annotated[str, typer.Option(
        "--dataset", "-d", help="Dataset for the quick run (default: the embedded Beauty).")
    ] = "beauty",
    out: Annotated[Path, typer.Option("--out", help="Folder for the demo's runs and bundle.")
                   ] = Path("runs/demo"),
    port: Annotated[int, typer.Option("--port", help="Port for the demo service.")] = 8765,
) -> None:
    """The main job end to end on a quick preset: train SASRec -> build the tree -> train
    SEATER -> export the bundle -> start the service -> POST /retrieve -> print -> stop."""
    from training.demo import run_demo

    _setup_logging()
    try:
        run_demo(dataset, out, port)
    except (DataError, ValueError, FileNotFoundError, RuntimeError) as e:
        _fail(e)


@app.command("report")
def report() -> None:
    """Regenerate reports/quality/README.md from the JSON results."""
    from training.reports import render_quality_markdown

    typer.echo(str(render_quality_markdown()))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
