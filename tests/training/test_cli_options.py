"""with_options: a group of options declared once, spelled out for typer in its place."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import pytest
import typer
from typer.testing import CliRunner

from training.cli_options import DataArgs, Options, with_options


@dataclass(frozen=True)
class Outer(Options):
    first: Annotated[int, typer.Option("--first")] = 1
    data: DataArgs = DataArgs()
    last: Annotated[bool, typer.Option("--last/--no-last")] = True


def test_a_group_is_spelled_out_in_place_and_gathered_again():
    seen = {}
    app = typer.Typer()

    @app.command()
    @with_options
    def cmd(before: Annotated[str, typer.Option("--before")] = "b",
            outer: Outer = Outer(),
            after: Annotated[int, typer.Option("--after")] = 0) -> None:
        seen.update(before=before, outer=outer, after=after)

    res = CliRunner().invoke(app, ["--first", "5", "--items", "x.csv", "--no-last",
                                   "--after", "2"])
    assert res.exit_code == 0, res.output
    assert seen == {"before": "b", "after": 2,
                    "outer": Outer(first=5, data=DataArgs(items="x.csv"), last=False)}
    shown = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"}).output
    flags = ["--before", "--first", "--user-col", "--min-interactions", "--last", "--after"]
    assert [shown.index(f) for f in flags] == sorted(shown.index(f) for f in flags)


def test_an_option_name_declared_twice_is_refused():
    with pytest.raises(TypeError, match=r"\['items'\] declared twice"):
        @with_options
        def cmd(items: str = "", data: DataArgs = DataArgs()) -> None:
            pass
