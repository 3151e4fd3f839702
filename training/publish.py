"""Publishing a serving bundle: one atomic, checksummed write for every exporter.

A bundle folder appears whole or not at all (written to a temp dir beside it, then
renamed), its manifest lists a sha256 per file, bundles are immutable (a version is
never overwritten), and ``<root>/current`` points at the latest one, so a service or
``docker compose`` started with no version set serves the last export.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from training.reports import git_commit, now

CURRENT = "current"
VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_version(version: str) -> None:
    """A version is one folder name: letters, digits, ``.``, ``_``, ``-``; not ``current``."""
    if not VERSION.match(version) or version == CURRENT:
        raise ValueError(f"bundle version {version!r} must be one folder name of letters, "
                         "digits, '.', '_' or '-' (not starting with one of those, not "
                         f"'{CURRENT}')")


def default_version(label: str, kind: str = "") -> str:
    """``<label>[-<kind>]-<UTC time>``; ``label`` may be a dataset path (its stem is used)."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(label).stem or label).strip("-._") or "model"
    stamp = f"{dt.datetime.now(dt.UTC):%Y%m%d-%H%M%S}"
    return "-".join(p for p in (stem, kind, stamp) if p)


def publish_bundle(out_root: Path, version: str, files: Sequence[str],
                   write: Callable[[Path], dict[str, Any]], point_current: bool = True) -> Path:
    """Write ``out_root/<version>/``: ``write(tmp)`` puts ``files`` into ``tmp`` and returns
    the manifest's own fields; version, time, commit and checksums are added here.

    Raises FileExistsError for an existing version; nothing is left behind on failure.
    """
    check_version(version)
    out_root = Path(out_root)
    out_root.mkdir(parents=True, exist_ok=True)
    final = out_root / version
    if final.exists():
        raise FileExistsError(f"{final} exists: bundles are immutable, pick a new --version")
    if point_current:
        _check_current(out_root)
    tmp = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=out_root))
    try:
        fields = write(tmp)
        missing = [name for name in files if not (tmp / name).is_file()]
        if missing:
            raise RuntimeError(f"exporter did not write {missing}")
        manifest = {
            "format_version": fields.pop("format_version", 1),
            "model_version": version,
            "dataset": fields.pop("dataset", ""),
            "exported_at": now(),
            "commit": git_commit(),
            "files": {name: {"sha256": sha256(tmp / name), "bytes": (tmp / name).stat().st_size}
                      for name in files},
            **fields,
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if point_current:
        set_current(out_root, version)
    return final


def _check_current(out_root: Path) -> Path:
    """``<root>/current`` must be a link (or absent), checked before a bundle is written."""
    link = Path(out_root) / CURRENT
    if link.exists() and not link.is_symlink():
        raise FileExistsError(f"{link} exists and is not a link: move it away so that "
                              "`current` can point at the latest bundle")
    return link


def set_current(out_root: Path, version: str) -> Path:
    """Point ``out_root/current`` at ``version`` (a relative symlink, swapped atomically,
    so it resolves inside a container that mounts the whole root too)."""
    link = _check_current(out_root)
    tmp = Path(out_root) / f".{CURRENT}.{os.getpid()}"
    tmp.unlink(missing_ok=True)
    os.symlink(version, tmp)
    os.replace(tmp, link)
    return link
