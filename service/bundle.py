"""Reading an artifact bundle: manifest, checksums, catalog, ID tree and embeddings.

The bundle (``artifacts/<version>/``, see docs/architecture.md) is the only contract
between training and serving. Two kinds exist, named by the manifest's ``kind``:
``"seater"`` (the default when absent: encoder + one-step decoder + ID tree) and
``"dense"`` (the brute-force baseline: a SASRec user encoder + item embeddings, scored
against every item; written by ``training/sasrec/export.py``).

Nothing in a bundle is trusted until ``manifest.json`` lists every required file and
each file's sha256 matches; mismatches name the file. Shapes are
cross-checked (items.json vs tree vs embedding table) so that a bundle assembled from two
exports fails here, at load time, rather than as wrong answers later.

Manifest fields read here::

    {"format_version": 1, "model_version": "...", "dataset": "beauty", "kind": "seater",
     "files": {"encoder.onnx": {"sha256": "<hex>", "bytes": 123}, ...},   # or name -> "<hex>"
     "config": {"pad_id": <int>, "max_history": <int>, ...},             # "max_len" also read
     "tree": {"k": 16, "depth": 4, "n_items": 12101, "n_nodes": 12908},
     "metrics": {...}, "exported_at": "2024-01-01T00:00:00Z"}
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from service.catalog import Catalog, CatalogError

BUNDLE_FORMAT_VERSIONS = (1,)
SEATER, DENSE = "seater", "dense"
REQUIRED_FILES = {
    SEATER: ("encoder.onnx", "decoder.onnx", "tree.npz", "items.json", "embeddings.npy"),
    DENSE: ("encoder.onnx", "item_emb.npy", "items.json"),
}
MAX_HISTORY_KEYS = ("max_history", "max_len", "max_seq_len")
MANIFEST = "manifest.json"


class BundleError(ValueError):
    """The bundle cannot be served; the message names the file or field at fault."""


@dataclass(frozen=True)
class Manifest:
    format_version: int
    model_version: str
    files: dict[str, str]  # file name -> sha256 hex
    config: dict[str, Any]
    tree: dict[str, Any]
    dataset: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    exported_at: str | None = None
    kind: str = SEATER

    @classmethod
    def read(cls, path: Path) -> Manifest:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise BundleError(f"{path} is missing: not a bundle directory") from None
        except (OSError, ValueError) as exc:
            raise BundleError(f"{path} is not readable JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise BundleError(f"{path}: expected a JSON object")
        missing = [
            k for k in ("format_version", "model_version", "files", "config") if k not in data
        ]
        if missing:
            raise BundleError(f"{path}: missing field(s) {missing}")
        if data["format_version"] not in BUNDLE_FORMAT_VERSIONS:
            raise BundleError(
                f"{path}: bundle format {data['format_version']!r}, this service reads "
                f"{list(BUNDLE_FORMAT_VERSIONS)}"
            )
        kind = data.get("kind") or SEATER
        if kind not in REQUIRED_FILES:
            known = list(REQUIRED_FILES)
            raise BundleError(f"{path}: unknown bundle kind {kind!r}; known: {known}")
        return cls(
            format_version=int(data["format_version"]),
            model_version=str(data["model_version"]),
            files=_file_hashes(data["files"], path),
            config=dict(data["config"]),
            tree=dict(data.get("tree") or {}),
            dataset=data.get("dataset"),
            metrics=dict(data.get("metrics") or {}),
            exported_at=data.get("exported_at"),
            kind=kind,
        )

    def int_config(self, *keys: str, default: int | None = None) -> int:
        """First of ``keys`` present in the model config, as int."""
        for key in keys:
            if self.config.get(key) is not None:
                return int(self.config[key])
        if default is None:
            raise BundleError(f"manifest.json config has none of {list(keys)}")
        return default


def _file_hashes(files: Any, where: Path) -> dict[str, str]:
    """``{name: sha}`` from ``{name: sha}``, ``{name: {"sha256": sha}}`` or a list of objects."""
    if isinstance(files, list):
        files = {f.get("path") or f.get("name"): f for f in files if isinstance(f, dict)}
    if not isinstance(files, dict):
        raise BundleError(f"{where}: 'files' must map file names to sha256")
    out = {}
    for name, entry in files.items():
        sha = entry.get("sha256") if isinstance(entry, dict) else entry
        if not isinstance(name, str) or not isinstance(sha, str) or len(sha) != 64:
            raise BundleError(f"{where}: bad 'files' entry for {name!r} (need a sha256 hex)")
        pure = PurePosixPath(name)
        if pure.is_absolute() or ".." in pure.parts:
            raise BundleError(f"{where}: file name {name!r} escapes the bundle directory")
        out[name] = sha.lower()
    return out


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def verify_files(root: Path, manifest: Manifest) -> None:
    """Every required file listed, present and matching its sha256; else BundleError."""
    unlisted = [name for name in REQUIRED_FILES[manifest.kind] if name not in manifest.files]
    if unlisted:
        raise BundleError(f"manifest.json does not list {unlisted}")
    for name, expected in manifest.files.items():
        path = root / name
        if not path.is_file():
            raise BundleError(f"{name} is listed in manifest.json but missing from {root}")
        actual = sha256_file(path)
        if actual != expected:
            raise BundleError(
                f"checksum mismatch for {name}: manifest says {expected[:12]}..., "
                f"file has {actual[:12]}... (partial copy or mixed exports?)"
            )


def default_tree_loader(path: Path) -> Any:
    """``indexer.tree.IdTree.load``, imported here so the rest of the service needs no tree."""
    try:
        from indexer.tree import IdTree
    except ImportError as exc:  # pragma: no cover - indexer ships with the service
        raise BundleError(f"cannot read tree.npz: indexer is not importable ({exc})") from exc
    return IdTree.load(path)


@dataclass(frozen=True)
class Bundle:
    """A verified bundle, loaded into memory (the ONNX graphs stay files for the runtime)."""

    path: Path
    manifest: Manifest
    catalog: Catalog
    tree: Any  # indexer.IdTree: children, item_leaf, root, k, n_items, n_nodes, codes_of
    embeddings: np.ndarray  # float32 [n_nodes, d], row = node id
    pad_id: int
    max_history: int

    @property
    def encoder_path(self) -> Path:
        return self.path / "encoder.onnx"

    @property
    def decoder_path(self) -> Path:
        return self.path / "decoder.onnx"

    @property
    def version(self) -> str:
        return self.manifest.model_version


def has_bundle(path: str | Path) -> bool:
    """Whether a bundle is at ``path`` (a pointer such as ``artifacts/current`` is followed).

    The exporters publish a bundle by renaming a finished folder and then moving the
    pointer, so a manifest seen here means the export is complete (or broken for good).
    """
    return (Path(path) / MANIFEST).is_file()


def read_manifest(path: str | Path) -> Manifest:
    """The manifest of the bundle directory at ``path`` (checksums not yet verified)."""
    root = Path(path)
    if not root.is_dir():
        raise BundleError(f"{root} is not a directory")
    return Manifest.read(root / MANIFEST)


def _verified(path: str | Path, kind: str) -> tuple[Path, Manifest, Catalog]:
    """Manifest of the expected kind, every checksum matching, and the catalog."""
    root = Path(path)
    manifest = read_manifest(root)
    if manifest.kind != kind:
        raise BundleError(f"{root} is a {manifest.kind!r} bundle, expected {kind!r}")
    verify_files(root, manifest)
    try:
        catalog = Catalog.load(root / "items.json")
    except CatalogError as exc:
        raise BundleError(str(exc)) from exc
    return root, manifest, catalog


def _load_matrix(path: Path) -> np.ndarray:
    """A 2-D float32 ``.npy`` (no pickles); BundleError naming the file otherwise."""
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise BundleError(f"{path.name}: {exc}") from exc
    if array.ndim != 2 or array.dtype != np.float32:
        raise BundleError(f"{path.name} is {array.dtype} {array.shape}, expected float32 [n, d]")
    return np.ascontiguousarray(array)


def load_bundle(path: str | Path, tree_loader: Callable[[Path], Any] | None = None) -> Bundle:
    """Read and verify the SEATER bundle at ``path``; raise BundleError saying what is wrong."""
    root, manifest, catalog = _verified(path, SEATER)
    try:
        tree = (tree_loader or default_tree_loader)(root / "tree.npz")
    except BundleError:
        raise
    except Exception as exc:
        raise BundleError(f"tree.npz: {exc}") from exc
    bundle = Bundle(
        path=root,
        manifest=manifest,
        catalog=catalog,
        tree=tree,
        embeddings=_load_matrix(root / "embeddings.npy"),
        pad_id=manifest.int_config("pad_id", default=-1),
        max_history=manifest.int_config(*MAX_HISTORY_KEYS),
    )
    check_consistency(bundle)
    return bundle


def check_consistency(bundle: Bundle) -> None:
    """Cross-check sizes between items.json, tree.npz, embeddings.npy and the manifest."""
    tree, m = bundle.tree, bundle.manifest
    problems = []
    if len(bundle.catalog) != tree.n_items:
        problems.append(f"items.json has {len(bundle.catalog)} ids, tree.npz {tree.n_items} items")
    emb = bundle.embeddings
    if emb.ndim != 2 or emb.shape[0] != tree.n_nodes:
        problems.append(
            f"embeddings.npy has shape {emb.shape}, expected [n_nodes = {tree.n_nodes}, d]"
        )
    for key, actual in (("k", tree.k), ("n_items", tree.n_items), ("n_nodes", tree.n_nodes)):
        if key in m.tree and int(m.tree[key]) != int(actual):
            problems.append(f"manifest tree.{key} = {m.tree[key]}, tree.npz has {actual}")
    if bundle.pad_id != -1:
        problems.append(f"config pad_id {bundle.pad_id}: the graphs pad node ids with -1")
    if bundle.max_history < 1:
        problems.append(f"config max_history {bundle.max_history} < 1")
    if problems:
        raise BundleError("bundle is inconsistent: " + "; ".join(problems))


@dataclass(frozen=True)
class DenseBundle:
    """A verified dense-baseline bundle: user encoder graph + item embeddings + catalog."""

    path: Path
    manifest: Manifest
    catalog: Catalog
    item_emb: np.ndarray  # float32 [n_items, d], row = item index
    pad_id: int  # SASRec's padding index (= n_items, its extra embedding row)
    max_history: int

    @property
    def encoder_path(self) -> Path:
        return self.path / "encoder.onnx"

    @property
    def version(self) -> str:
        return self.manifest.model_version


def load_dense_bundle(path: str | Path) -> DenseBundle:
    """Read and verify the dense bundle at ``path``; raise BundleError saying what is wrong."""
    root, manifest, catalog = _verified(path, DENSE)
    item_emb = _load_matrix(root / "item_emb.npy")
    bundle = DenseBundle(
        path=root,
        manifest=manifest,
        catalog=catalog,
        item_emb=item_emb,
        pad_id=manifest.int_config("pad_id"),
        max_history=manifest.int_config(*MAX_HISTORY_KEYS),
    )
    problems = []
    if len(catalog) != item_emb.shape[0]:
        problems.append(f"items.json has {len(catalog)} ids, item_emb.npy {item_emb.shape[0]} rows")
    if bundle.pad_id != item_emb.shape[0]:
        problems.append(f"config pad_id {bundle.pad_id}: SASRec pads with n_items")
    if bundle.max_history < 1:
        problems.append(f"config max_history {bundle.max_history} < 1")
    if problems:
        raise BundleError("bundle is inconsistent: " + "; ".join(problems))
    return bundle


def read_bundle(path: str | Path) -> Bundle | DenseBundle:
    """Read and verify the bundle at ``path``, of whichever kind its manifest names."""
    if read_manifest(path).kind == DENSE:
        return load_dense_bundle(path)
    return load_bundle(path)
