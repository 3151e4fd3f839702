"""The ``seater`` command line: data, training, evaluation, export, serving, the demo.

Every training command takes ``--config FILE`` (YAML/TOML mirroring the run dataclass),
``--preset NAME``, a few typed flags for the knobs people change most, and ``--set
section.key=value`` for anything else; precedence is defaults < preset < file < flags <
--set, and ``--show-config`` prints the result without training.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any

import typer

from training.cli_options import (
    DataArgs,
    Options,
    VerboseOpt,
    fail,
    setup_logging,
    with_options,
)
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

# A user's mistake (bad flag value, data file, run folder) surfaces as one of these.
USER_ERRORS = (ConfigError, DataError, ValueError, FileNotFoundError, FileExistsError)
QUIET = ("torch.onnx", "onnxscript", "torch.export", "torch._dynamo")

DatasetOpt = Annotated[str | None, typer.Option(
    "--dataset", "-d", help="beauty|sports|yelp|lastfm, 'synthetic[:opts]', a folder with "
    "interactions.txt, or a .csv/.tsv/.parquet log. Names are looked up in $SEATER_DATA_DIR, "
    "else ../shared/data, else the embedded data/.")]
ReportsOpt = Annotated[str | None, typer.Option(
    "--reports-dir", help="Also write the result into DIR/quality/<dataset>.json (the "
    "benchmark commands pass the project's reports/); results always go to the run folder.")]
# Both training commands take these two, each at its own place among its model options.
DModelOpt = Annotated[int | None, typer.Option(
    "--d-model", help="Embedding size, the model width (default: 64).")]
MaxLenOpt = Annotated[int | None, typer.Option(
    "--max-len", help="History length (default: 50).")]


@dataclass(frozen=True)
class RunArgs(Options):
    """The options that open both training commands: what to train on, by which recipe."""

    config: Annotated[Path | None, typer.Option(
        "--config", "-c", help="YAML/TOML/JSON file with the run config (sections as printed "
        "by --show-config).")] = None
    preset: Annotated[str | None, typer.Option(
        "--preset", help="A named recipe applied under the flags (see --show-config) "
        "(default: default).")] = None
    dataset: DatasetOpt = None
    data: DataArgs = DataArgs()
    protocol: Annotated[str | None, typer.Option(
        "--protocol", "-p", help="loo (leave-one-out) or seater (users 8:1:1, 80/20 history) "
        "(default: loo).")] = None
    refit: Annotated[bool | None, typer.Option(
        "--refit/--no-refit", help="loo only: after early stopping, retrain on "
        "train+validation for the best number of epochs, then test (default: no).")] = None
    refit_epochs: Annotated[int | None, typer.Option(
        "--refit-epochs", help="With --refit: skip the early-stopped fit and refit for N "
        "epochs, the best epoch of an earlier fit of the same settings (its report row); "
        "the run reports the refit only (default: 0, fit first).")] = None

    def flags(self) -> dict[str, Any]:
        """As config flags (``None`` = not given); ``--config`` is read by ``build``."""
        return {"dataset": _dataset_spec(self.dataset), **self.data.flags(),
                "protocol": self.protocol, "refit": self.refit,
                "refit_epochs": self.refit_epochs, "preset": self.preset}


@dataclass(frozen=True)
class TrainArgs(Options):
    """The options that close both training commands: budget, outputs, what to do."""

    epochs: Annotated[int | None, typer.Option(
        "--epochs", help="Maximum epochs (default: 200).")] = None
    patience: Annotated[int | None, typer.Option(
        "--patience", help="Stop after this many epochs without a better validation metric "
        "(default: 10).")] = None
    batch_size: Annotated[int | None, typer.Option(
        "--batch-size", help="Batch size (default: 128).")] = None
    lr: Annotated[float | None, typer.Option(
        "--lr", help="Adam learning rate (default: 0.001).")] = None
    seed: Annotated[int | None, typer.Option(
        "--seed", help="Seed for init, sampling and batch order (default: 0); the seater "
        "protocol's user split keeps its own, --set split_seed=N.")] = None
    device: Annotated[str | None, typer.Option(
        "--device", help="auto, cpu, cuda, cuda:1 ... (default: auto).")] = None
    threads: Annotated[int | None, typer.Option(
        "--threads", help="Torch threads (1 beside another job; 0 = one per core).")] = None
    out: Annotated[str | None, typer.Option(
        "--out", help="Folder for run outputs; a run lands in OUT/<dataset>/<name> "
        "(default: runs).")] = None
    name: Annotated[str | None, typer.Option(
        "--name", help="Run name (folder) (default: sasrec-<protocol> or "
        "seater-<protocol>-<ids>-k<k>).")] = None
    reports_dir: ReportsOpt = None
    overrides: Annotated[list[str] | None, typer.Option(
        "--set", help="Override any config key, e.g. --set train.lr=3e-4 (repeatable); "
        "--show-config lists every key with its value.")] = None
    show_config: Annotated[bool, typer.Option(
        "--show-config", help="Print the resolved config (every key --set accepts) and "
        "exit.")] = False
    resume: Annotated[bool, typer.Option(
        "--resume/--no-resume", help="Continue from the run folder's last checkpoint if any "
        "(the same run only: other model, tree or data settings are refused).")] = True
    verbose: VerboseOpt = False

    def flags(self) -> dict[str, Any]:
        """As config flags (``None`` = not given); ``--set`` is applied after them."""
        return {"train.epochs": self.epochs, "train.patience": self.patience,
                "train.batch_size": self.batch_size, "train.lr": self.lr,
                "train.seed": self.seed, "train.device": self.device,
                "train.threads": self.threads, "out_dir": self.out, "name": self.name,
                "reports_dir": self.reports_dir}


def _train(cls: type, presets: dict[str, Any], runner: Any, run: RunArgs, train: TrainArgs,
           model_flags: dict[str, Any]) -> None:
    """Build the config, print it (``--show-config``) or run it and print the result.

    ``model_flags``: the command's own options as config flags (``None`` = not given).
    """
    from dataclasses import asdict

    setup_logging(train.verbose)
    flags = {**run.flags(), **train.flags(), **model_flags}
    try:
        cfg = build(cls, run.config, flags, train.overrides, presets=presets)
        if train.show_config:
            typer.echo(json.dumps(asdict(cfg), indent=2))
            return
        entries = runner(cfg, resume=train.resume)
    except USER_ERRORS as e:
        fail(e)
    _print_result(entries)


def _print_result(entries: list[dict[str, Any]]) -> None:
    """The test metrics a person compares, one line per fit / refit, and the run folder."""
    for e in entries:
        m = e["metrics"]["test"]
        cols = ("recall@10", "ndcg@10") if e["protocol"]["protocol"] == "loo" else (
            "recall@50", "hr@50", "ndcg@50")
        if not e["protocol"].get("refit_on_validation"):
            what = f"fit, best epoch {e['best_epoch']} of {e['epochs_run']}"
        elif e.get("refit_epochs"):
            what = f"refit, {e['refit_epochs']} epochs as given"
        else:
            what = "refit"
        values = "  ".join(f"{c} {m[c]:.4f}" for c in cols if c in m)
        typer.echo(f"{e['key']} ({what}): test {values}")
    if entries:
        typer.echo(f"run folder: {entries[0]['run_dir']}")


@data_app.command("stats")
@with_options
def data_stats(
    dataset: Annotated[list[str] | None, typer.Option(
        "--dataset", "-d", help="Dataset(s) to describe (repeatable); default: all known.")] = None,
    data: DataArgs = DataArgs(),
) -> None:
    """Print users, items, interactions, length statistics and, for log files, what the
    loader dropped (missing values, duplicates, the core filter), as JSON lines."""
    from training.data import load_dataset
    from training.data.registry import KNOWN

    setup_logging()
    try:
        opts = data.options()
        for name in dataset or list(KNOWN):
            typer.echo(json.dumps(load_dataset(name, opts).stats()))
    except USER_ERRORS as e:
        fail(e)


@train_app.command("sasrec")
@with_options
def train_sasrec(
    run: RunArgs = RunArgs(),
    d_model: DModelOpt = None,
    n_layers: Annotated[int | None, typer.Option(
        "--layers", help="Transformer blocks (default: 1).")] = None,
    n_heads: Annotated[int | None, typer.Option(
        "--heads", help="Attention heads (default: 1).")] = None,
    max_len: MaxLenOpt = None,
    dropout: Annotated[float | None, typer.Option(
        "--dropout", help="Dropout rate (default: 0.2).")] = None,
    loss: Annotated[str | None, typer.Option(
        "--loss", help="ss (sampled softmax), ce (full softmax) or bce (original) "
        "(default: ss).")] = None,
    n_negatives: Annotated[int | None, typer.Option(
        "--negatives", help="Sampled negatives for the ss loss (default: 256).")] = None,
    train: TrainArgs = TrainArgs(),
) -> None:
    """Train SASRec, evaluate it, and keep its item embeddings for the tree builder."""
    from training.sasrec.pipeline import SASRecRun, run_sasrec
    from training.sasrec.presets import PRESETS

    _train(SASRecRun, PRESETS, run_sasrec, run, train, {
        "model.d_model": d_model, "model.max_len": max_len, "model.n_layers": n_layers,
        "model.n_heads": n_heads, "model.dropout": dropout, "model.loss": loss,
        "model.n_negatives": n_negatives,
    })


@train_app.command("seater")
@with_options
def train_seater(
    run: RunArgs = RunArgs(),
    ids: Annotated[str | None, typer.Option(
        "--ids", help="balanced (Algorithm 1), kmeans (imbalanced), random, or semantic "
        "(codes from `seater index semantic`, given with --codes) (default: balanced).")] = None,
    codes: Annotated[str | None, typer.Option(
        "--codes", help="ids=semantic: the .npy of item codes.")] = None,
    k: Annotated[int | None, typer.Option(
        "-k", "--branches", help="Tree branching factor (default: 16).")] = None,
    beam: Annotated[int | None, typer.Option(
        "--beam", help="Beam size for validation and test (>= 50 for @50 metrics) "
        "(default: 50).")] = None,
    sasrec_run: Annotated[str | None, typer.Option(
        "--sasrec-run", help="SASRec run folder for the tree's embeddings and the init "
        "(default: the best by validation among OUT/<dataset>/ SASRec runs of the same width; "
        "one is trained with this run's budget when there is none).")] = None,
    init: Annotated[bool | None, typer.Option(
        "--init-from-sasrec/--scratch", help="Initialise node embeddings (leaves = items, "
        "internal = centroids) and the encoder from SASRec (default: init-from-sasrec).")
    ] = None,
    lambda_align: Annotated[float | None, typer.Option(
        "--lambda-align", help="Weight of the alignment loss (0 = off).")] = None,
    lambda_rank: Annotated[float | None, typer.Option(
        "--lambda-rank", help="Weight of the ranking loss (0 = off).")] = None,
    d_model: DModelOpt = None,
    max_len: MaxLenOpt = None,
    train: TrainArgs = TrainArgs(),
) -> None:
    """Train SEATER on the ID tree with generation + alignment + ranking losses; evaluate
    with the constrained beam search the service uses."""
    from training.seater.pipeline import SeaterRun, run_seater
    from training.seater.presets import PRESETS

    _train(SeaterRun, PRESETS, run_seater, run, train, {
        "model.d_model": d_model, "model.max_len": max_len, "sasrec_run": sasrec_run,
        "init_from_sasrec": init, "beam_size": beam, "tree.ids": ids, "tree.k": k,
        "tree.codes": codes, "losses.lambda_align": lambda_align,
        "losses.lambda_rank": lambda_rank,
    })


def _dataset_spec(dataset: str | None) -> str | None:
    """A dataset path as the run records it (absolute), so later commands find it."""
    from training.data import config_spec

    return config_spec(dataset) if dataset else None


@app.command("evaluate")
def evaluate_cmd(
    run: Annotated[Path, typer.Option("--run", help="A SEATER run folder (has model.pt).")],
    beam: Annotated[list[int] | None, typer.Option(
        "--beam", help="Beam size(s) to evaluate at (repeatable); default 50.")] = None,
    split: Annotated[str, typer.Option("--split", help="test or valid.")] = "test",
    max_users: Annotated[int, typer.Option(
        "--max-users", help="Evaluate a fixed random subset (0 = everyone).")] = 0,
    threads: Annotated[int, typer.Option("--threads", help="Torch threads (0 = default).")] = 0,
    reports_dir: ReportsOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Evaluate a trained SEATER run with the constrained beam search at one or more beam
    sizes; each gets metrics and the measured decoding time per user (beams.json in the
    run folder)."""
    from training.evaluate_run import evaluate_beams

    setup_logging(verbose)
    if split not in ("test", "valid"):
        fail(f"--split must be test or valid, not {split!r}")
    try:
        entries = evaluate_beams(run, beam or [50], split, reports_dir or "",
                                 max_users=max_users, threads=threads)
    except USER_ERRORS as e:
        fail(e)
    for e in entries:
        m = e["metrics"][split]
        values = "  ".join(f"{c} {m[c]:.4f}" for c in ("recall@10", "ndcg@10", "recall@50")
                           if c in m)
        typer.echo(f"beam {e['beam_size']}: {split} {values}  ({e['eval']['ms_per_user']:.2f} "
                   "ms per user)")


@app.command("export")
def export(
    run: Annotated[Path, typer.Option(
        "--run", help="A run folder of `seater train seater` or `seater train sasrec`.")],
    out: Annotated[Path, typer.Option("--out", help="Bundle root; the bundle goes to "
                                      "OUT/VERSION and OUT/current points at it.")
                   ] = Path("artifacts"),
    version: Annotated[str | None, typer.Option(
        "--version", help="Bundle version (default: <dataset>[-sasrec]-<UTC time>).")] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Export a trained run as a serving bundle and print its path. A SEATER run becomes
    encoder.onnx, decoder.onnx (one beam step), tree.npz, embeddings.npy, items.json and a
    manifest with sha256 sums; a SASRec run the dense brute-force baseline bundle
    (encoder.onnx -> user vector, item_emb.npy), served by the same service."""
    from training.export import export_run

    setup_logging(verbose, quiet=QUIET)
    try:
        path = export_run(run, out, version)
    except USER_ERRORS as e:
        fail(e)
    typer.echo(str(path))


@app.command("serve")
def serve(
    artifacts: Annotated[Path, typer.Option(
        "--artifacts", help="Bundle folder written by `seater export`; the default follows "
        "the latest export. Until a bundle is there the service runs but is not ready.")
    ] = Path("artifacts/current"),
    host: Annotated[str, typer.Option("--host", help="Bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port.")] = 8000,
    workers: Annotated[int | None, typer.Option(
        "--workers", help="Worker processes behind the port (default: SEATER_WORKERS, else "
        "one per core available).")] = None,
) -> None:
    """Run the retrieval service on a bundle, without Docker (same app as the image).

    Cache, batching and limits come from the SEATER_* environment and REDIS_URL (see
    service/settings.py); without REDIS_URL encoder states are cached in process.
    """
    import importlib

    argv = ["--artifacts", str(artifacts), "--host", host, "--port", str(port)]
    if workers is not None:
        argv += ["--workers", str(workers)]
    # The service is launched by module name: training never imports service code.
    importlib.import_module("service.__main__").main(argv)


@app.command("recommend")
@with_options
def recommend(
    out: Annotated[Path, typer.Option(
        "--out", help="recs.parquet (columns user, rank, item, score, and title when the "
        "bundle has titles) or recs.jsonl (one object per user).")],
    bundle: Annotated[Path, typer.Option(
        "--bundle", help="Bundle folder written by `seater export`; the default follows "
        "the latest export.")] = Path("artifacts/current"),
    users: Annotated[str | None, typer.Option(
        "--users", help="A log of the users to recommend for, in the --dataset file "
        "formats and column options; each user's history is their interactions in time "
        "order (users with one event are kept unless --min-interactions says otherwise).")
    ] = None,
    dataset: DatasetOpt = None,
    data: DataArgs = DataArgs(),
    n: Annotated[int, typer.Option("--n", "-n", help="Items per user.")] = 10,
    beam: Annotated[int, typer.Option("--beam", help="Beam size (>= --n).")] = 50,
    filters: Annotated[str | None, typer.Option(
        "--filters", help='Include filters as JSON, as POST /retrieve takes them, e.g. '
        '\'{"categories": ["Beauty > Makeup"], "attributes": {"brand": ["Acme"]}}\'.')
    ] = None,
    batch_size: Annotated[int, typer.Option(
        "--batch-size", help="Users per micro-batch (one encoder call, one beam search).")
    ] = 64,
    threads: Annotated[int, typer.Option(
        "--threads", help="ONNX Runtime threads per graph call (0 = one per core; 1 also "
        "runs one batch at a time).")] = 0,
    exclude_seen: Annotated[bool, typer.Option(
        "--exclude-seen/--keep-seen", help="Leave each user's history out of their "
        "recommendations.")] = True,
    verbose: VerboseOpt = False,
) -> None:
    """Top-n for every user of a log or dataset with the service's own engine and
    micro-batching, to Parquet or JSONL; prints the output path and a one-line summary."""
    import importlib

    from training.data import load_dataset

    setup_logging(verbose)
    if (users is None) == (dataset is None):
        fail("give exactly one of --users FILE (a log of the users to recommend for) or "
             "--dataset D (every user of a dataset, each with their full sequence)")
    # The service is reached by module name: training never imports service code.
    offline = importlib.import_module("service.offline")
    try:
        job = offline.Recommender.open(offline.OfflineConfig(
            bundle=bundle, out=out, n=n, beam=beam, filters=filters, batch_size=batch_size,
            threads=threads, exclude_seen=exclude_seen))
        if not dataset and data.min_interactions is None:
            data = replace(data, min_interactions=1)  # a --users log keeps one-event users
        loaded = load_dataset(dataset or users or "", data.options())
        ids = loaded.item_ids.astype(str)
        summary = job.run(loaded.user_ids.astype(str).tolist(),
                          [ids[seq].tolist() for seq in loaded.sequences])
    except USER_ERRORS as e:
        fail(e)
    typer.echo(str(out))
    typer.echo(summary.line())


@app.command("demo")
@with_options
def demo(
    dataset: Annotated[str, typer.Option(
        "--dataset", "-d", help="Dataset for the quick run (default: the embedded Beauty).")
    ] = "beauty",
    data: DataArgs = DataArgs(),
    out: Annotated[Path, typer.Option("--out", help="Folder for the demo's runs.")
                   ] = Path("runs/demo"),
    artifacts: Annotated[Path, typer.Option(
        "--artifacts", help="Bundle root: the demo's bundle goes to ARTIFACTS/<version> and "
        "ARTIFACTS/current points at it (what `docker compose up` serves).")
    ] = Path("artifacts"),
    port: Annotated[int, typer.Option("--port", help="Port for the demo service.")] = 8765,
) -> None:
    """The main job end to end on a quick preset: train SASRec -> build the tree -> train
    SEATER -> export the bundle -> start the service -> POST /retrieve -> print -> stop."""
    from training.demo import run_demo

    setup_logging(quiet=QUIET)
    try:
        run_demo(_dataset_spec(dataset) or dataset, out, port, artifacts, data.options())
    except (*USER_ERRORS, RuntimeError) as e:
        fail(e)


@app.command("report")
def report(
    reports_dir: Annotated[Path | None, typer.Option(
        "--reports-dir", help="The folder runs wrote with --reports-dir (default: the "
        "project's reports/).")] = None,
) -> None:
    """Regenerate <reports-dir>/quality/README.md from the JSON results: one table per
    dataset and protocol, and links to the training curves of runs kept on this machine."""
    from training.reports import REPORTS_DIR, render_quality_markdown

    typer.echo(str(render_quality_markdown(reports_dir or REPORTS_DIR)))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
