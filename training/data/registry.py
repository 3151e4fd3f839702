"""Where datasets live: a name resolves to a folder, a path to a file, or a generator.

Search order for a name such as ``beauty``: ``$SEATER_DATA_DIR/<name>`` when the
variable is set (and only there), otherwise ``<repo>/../shared/data/<name>`` and then
the embedded ``<repo>/data/<name>``.
"""

from __future__ import annotations

import os
from dataclasses import fields, replace
from pathlib import Path

from training.data.dataset import InteractionData
from training.data.loaders import (
    LOG_SUFFIXES,
    DataError,
    load_interaction_log,
    load_s3rec,
    read_item_metadata,
)
from training.data.options import DataOptions
from training.data.synthetic import SyntheticConfig, make_synthetic

REPO_ROOT = Path(__file__).resolve().parents[2]
KNOWN = ("beauty", "sports", "yelp", "lastfm")


def data_dirs() -> list[Path]:
    env = os.environ.get("SEATER_DATA_DIR")
    if env:
        return [Path(env).expanduser()]
    return [REPO_ROOT.parent / "shared" / "data", REPO_ROOT / "data"]


def resolve_dataset(name: str) -> Path:
    """The folder holding dataset ``name``; the error lists every place looked at."""
    tried = []
    for root in data_dirs():
        folder = root / name
        tried.append(str(folder))
        if (folder / "interactions.txt").is_file():
            return folder
    hint = (
        "Set SEATER_DATA_DIR to the folder that holds '<name>/interactions.txt'"
        if "SEATER_DATA_DIR" not in os.environ
        else "SEATER_DATA_DIR is set; unset it to use the defaults or fix the path"
    )
    raise DataError(
        f"dataset '{name}' not found (looked for interactions.txt in: {', '.join(tried)}). "
        f"{hint}; known names: {', '.join(KNOWN)}, or 'synthetic', or a path to a folder, "
        "a .csv or a .parquet file."
    )


def parse_synthetic(spec: str) -> SyntheticConfig:
    """``synthetic`` or ``synthetic:n_users=500,n_items=200,seed=3``."""
    _, _, args = spec.partition(":")
    kwargs = {}
    types = {f.name: f.type for f in fields(SyntheticConfig)}
    for part in filter(None, args.split(",")):
        key, _, value = part.partition("=")
        if key not in types:
            raise DataError(f"unknown synthetic option '{key}'; options: {', '.join(types)}")
        kwargs[key] = float(value) if types[key] in (float, "float") else int(value)
    return SyntheticConfig(**kwargs)


def load_dataset(spec: str, options: DataOptions | None = None) -> InteractionData:
    """A dataset by name, folder, interaction-log file or ``synthetic[:options]``."""
    opts = options or DataOptions()
    if spec == "synthetic" or spec.startswith("synthetic:"):
        return make_synthetic(parse_synthetic(spec))
    path = Path(spec).expanduser()
    if path.is_dir():
        data = load_s3rec(path)
    elif path.suffix.lower() in LOG_SUFFIXES:
        return load_interaction_log(path, opts.user_col, opts.item_col, opts.time_col,
                                    min_user_len=opts.min_interactions, items=opts.items)
    elif path.is_file():
        raise DataError(f"{spec}: unsupported file type {path.suffix!r}; a log must be "
                        f"{', '.join(sorted(LOG_SUFFIXES))} (or a folder with interactions.txt)")
    elif os.sep in spec or path.suffix:
        raise DataError(f"{spec} not found: pass a dataset name, a folder with "
                        "interactions.txt, or a .csv/.tsv/.parquet log")
    else:
        data = load_s3rec(resolve_dataset(spec), name=spec)
    if opts.items:
        data = replace(data, item_text=read_item_metadata(Path(opts.items), data.item_ids,
                                                          opts.item_col))
    return data


def config_spec(spec: str) -> str:
    """The dataset as a run config records it: an existing path made absolute, so that
    ``seater evaluate`` or ``export`` started from another folder reads the same data."""
    path = Path(spec).expanduser()
    return str(path.resolve()) if path.exists() else spec
