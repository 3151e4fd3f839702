"""What every ``seater`` sub-command shares: logging, the one error line, common options.

The dataset options (``--user-col`` ... ``--items``) map onto ``DataOptions`` (config
section ``data``), so every command that reads a dataset reads it the same way.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

DatasetOpt = Annotated[str | None, typer.Option(
    "--dataset", "-d", help="beauty|sports|yelp|lastfm, 'synthetic[:opts]', a folder with "
    "interactions.txt, or a .csv/.tsv/.parquet log. Names are looked up in $SEATER_DATA_DIR, "
    "else ../shared/data, else the embedded data/.")]
UserColOpt = Annotated[str | None, typer.Option(
    "--user-col", help="Log files: the user id column (default: user).")]
ItemColOpt = Annotated[str | None, typer.Option(
    "--item-col", help="Log files: the item id column (default: item).")]
TimeColOpt = Annotated[str | None, typer.Option(
    "--time-col", help="Log files: the time column, numbers or dates (default: timestamp).")]
ItemsOpt = Annotated[str | None, typer.Option(
    "--items", help="Item metadata file (.csv/.tsv/.parquet): an id column, then title, "
    "categories ('A > B | C') and any attribute columns, for titles and filters.")]
MinInteractionsOpt = Annotated[int | None, typer.Option(
    "--min-interactions", help="Log files: drop users with fewer interactions (default: 2).")]
ConfigOpt = Annotated[Path | None, typer.Option(
    "--config", "-c", help="YAML/TOML/JSON file with the run config (sections as printed by "
    "--show-config).")]
SetOpt = Annotated[list[str] | None, typer.Option(
    "--set", help="Override any config key, e.g. --set train.lr=3e-4 (repeatable); "
    "--show-config lists every key with its value.")]
ShowConfigOpt = Annotated[bool, typer.Option(
    "--show-config", help="Print the resolved config (every key --set accepts) and exit.")]
ThreadsOpt = Annotated[int | None, typer.Option(
    "--threads", help="Torch threads (1 beside another job; 0 = one per core).")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")]


def data_flags(user_col: str | None, item_col: str | None, time_col: str | None,
               items: str | None, min_interactions: int | None) -> dict[str, Any]:
    """The dataset options as config flags (``None`` = not given)."""
    return {"data.user_col": user_col, "data.item_col": item_col, "data.time_col": time_col,
            "data.items": items, "data.min_interactions": min_interactions}


def data_options(user_col: str | None, item_col: str | None, time_col: str | None,
                 items: str | None, min_interactions: int | None) -> Any:
    """The dataset options for commands that read data without a run config."""
    from training.config import build
    from training.data import DataOptions

    flags = data_flags(user_col, item_col, time_col, items, min_interactions)
    return build(DataOptions, None, {k.removeprefix("data."): v for k, v in flags.items()})


def setup_logging(verbose: bool = False, quiet: tuple[str, ...] = ()) -> None:
    """Progress and decisions on stderr; ``quiet`` loggers only say warnings."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not verbose:
        for name in quiet:
            logging.getLogger(name).setLevel(logging.WARNING)


def fail(e: Exception | str) -> NoReturn:
    """One ``error:`` line on stderr and exit status 2: a user's mistake, not a crash."""
    typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)
