"""What every ``seater`` sub-command shares: logging, the one error line, common options.

Options several commands take are declared once: as an ``Annotated`` alias when commands
place them differently, or as a group (an ``Options`` dataclass) that a command takes as
one parameter and ``with_options`` spells out for typer. The dataset options
(``--user-col`` ... ``--items``) are the group ``DataArgs``, mapping onto ``DataOptions``
(config section ``data``), so every command that reads a dataset reads it the same way.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import logging
import typing
from collections.abc import Callable
from typing import Annotated, Any, NoReturn, TypeVar

import typer

VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")]


class Options:
    """A group of options declared once, as the fields of a frozen dataclass subclass
    (``name: Annotated[type, typer.Option(...)] = default``; a field may be another
    group). A command takes the group as one parameter (``data: DataArgs = DataArgs()``)
    and ``with_options`` shows typer the fields in its place."""


def _group(annotation: Any) -> type[Options] | None:
    """``annotation`` when it is an options group, else None."""
    is_group = isinstance(annotation, type) and issubclass(annotation, Options)
    return annotation if is_group else None


def _spelled_out(param: inspect.Parameter) -> list[inspect.Parameter]:
    """The parameter, or for a group its fields' parameters (nested groups spelled out)."""
    group = _group(param.annotation)
    if group is None:
        return [param.replace(kind=inspect.Parameter.KEYWORD_ONLY)]
    hints = typing.get_type_hints(group, include_extras=True)
    return [q for f in dataclasses.fields(group)  # type: ignore[arg-type]
            for q in _spelled_out(inspect.Parameter(
                f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default,
                annotation=hints[f.name]))]


def _gathered(group: type[Options], given: dict[str, Any]) -> Options:
    """The group built from (and taken out of) the flat keyword arguments typer passes."""
    hints = typing.get_type_hints(group, include_extras=True)
    values = {}
    for f in dataclasses.fields(group):  # type: ignore[arg-type]
        inner = _group(hints[f.name])
        values[f.name] = _gathered(inner, given) if inner else given.pop(f.name)
    return group(**values)


F = TypeVar("F", bound=Callable[..., Any])


def with_options(command: F) -> F:
    """Decorator (under ``@app.command``): each parameter of the command typed with an
    ``Options`` group becomes the group's options, in its place in ``--help``, and the
    command receives them gathered into one group object again."""
    signature = inspect.signature(command, eval_str=True)
    groups = {name: g for name, p in signature.parameters.items()
              if (g := _group(p.annotation)) is not None}
    params = [q for p in signature.parameters.values() for q in _spelled_out(p)]
    names = [p.name for p in params]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise TypeError(f"{command.__name__}: option name(s) {twice} declared twice")

    @functools.wraps(command)
    def wrapper(**given: Any) -> Any:
        for name, group in groups.items():
            given[name] = _gathered(group, given)
        return command(**given)

    wrapper.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {**{p.name: p.annotation for p in params},
                               "return": signature.return_annotation}
    return wrapper  # type: ignore[return-value]


@dataclasses.dataclass(frozen=True)
class DataArgs(Options):
    """The dataset options (config section ``data``; ``None`` = not given)."""

    user_col: Annotated[str | None, typer.Option(
        "--user-col", help="Log files: the user id column (default: user).")] = None
    item_col: Annotated[str | None, typer.Option(
        "--item-col", help="Log files: the item id column (default: item).")] = None
    time_col: Annotated[str | None, typer.Option(
        "--time-col", help="Log files: the time column, numbers or dates (default: "
        "timestamp).")] = None
    items: Annotated[str | None, typer.Option(
        "--items", help="Item metadata file (.csv/.tsv/.parquet): an id column, then title, "
        "categories ('A > B | C') and any attribute columns, for titles and filters.")] = None
    min_interactions: Annotated[int | None, typer.Option(
        "--min-interactions", help="Log files: drop users with fewer interactions "
        "(default: 2).")] = None

    def flags(self) -> dict[str, Any]:
        """As config flags of a run config."""
        return {f"data.{k}": v for k, v in dataclasses.asdict(self).items()}

    def options(self) -> Any:
        """As ``DataOptions``, for commands that read data without a run config."""
        from training.config import build
        from training.data import DataOptions

        return build(DataOptions, None, dataclasses.asdict(self))


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
