"""Real bundles for the service tests, made by the real export code (never hand-built).

``tiny_bundle`` (tests/conftest.py) trains a tiny SEATER and exports it once per session;
the helpers here copy it into per-test folders (a reload root must hold its bundles),
export a second version from perturbed weights, tamper with files, train a tiny model
briefly, and compute the offline answer (``SeaterTask.search``) that the service must reproduce.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import torch

ROOT_ITEMS = "items.json"


def copy_bundle(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def external_ids(bundle: Path) -> list[str]:
    return json.loads((bundle / ROOT_ITEMS).read_text())["ids"]


def perturbed(model: torch.nn.Module, seed: int, scale: float = 0.3) -> torch.nn.Module:
    """A copy of ``model`` with noise on every weight: a visibly different model version."""
    other = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(scale * p.std().clamp(min=1e-3) * torch.randn(p.shape, generator=gen))
    return other.eval()


def export_version(tiny, root: Path, version: str, seed: int) -> tuple[Path, torch.nn.Module]:
    """Export a perturbed copy of the tiny model as ``root/version`` with ``export_bundle``."""
    from training.seater.export import export_bundle

    model = perturbed(tiny.model, seed)
    items = json.loads((tiny.path / ROOT_ITEMS).read_text())
    path = export_bundle(model, tiny.tree, items, root, version, tiny.data.name)
    return path, model


def tamper(bundle: Path, name: str = "decoder.onnx") -> Path:
    """Append a byte to one file: its sha256 no longer matches the manifest."""
    with (bundle / name).open("ab") as fh:
        fh.write(b"\0")
    return bundle


def offline_top(model, tree, histories: list[list[int]], n: int, beam: int):
    """The offline evaluation's answer: ``SeaterTask.search`` excluding the history."""
    from training.data import Sequences
    from training.seater.task import LossConfig, SeaterTask

    task = SeaterTask(model, tree, Sequences.from_lists([[0, 1]]), torch.device("cpu"),
                      LossConfig(), beam_size=beam)
    hist = Sequences.from_lists(histories)
    return task.search(hist, n, hist)


def user_histories(tiny, count: int, seed: int = 0) -> list[list[int]]:
    """Realistic histories: prefixes of the synthetic users' sequences (2..20 items)."""
    rng = np.random.default_rng(seed)
    out = []
    for u in rng.choice(len(tiny.data.sequences), size=count, replace=False):
        seq = list(tiny.data.sequences[int(u)])
        end = int(rng.integers(2, max(3, min(len(seq), 20))))
        out.append([int(i) for i in seq[:end]])
    return out


BRANDS = ("Acme", "Zed", "Nova")


def with_metadata(tiny) -> dict:
    """The tiny bundle's items.json as ``write_items`` writes it for data with an items file:
    the synthetic "group > cluster" paths, "Sale" on every 5th item, and a brand."""
    items = json.loads((tiny.path / ROOT_ITEMS).read_text())
    cats = tiny.data.item_text.categories
    items["categories"] = [[" > ".join(p) for p in cats[i]] + (["Sale"] if i % 5 == 0 else [])
                           for i in range(len(items["ids"]))]
    items["attributes"] = {"brand": [BRANDS[i % 3] for i in range(len(items["ids"]))]}
    return items


def export_with_items(tiny, root: Path, version: str, items: dict) -> Path:
    """The tiny model exported again with another items.json (``export_bundle``)."""
    from training.seater.export import export_bundle

    return export_bundle(tiny.model, tiny.tree, items, root, version, tiny.data.name)
