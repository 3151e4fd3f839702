"""Reading an artifact bundle: manifest, checksums, catalog, ID tree and embeddings.

The bundle (``artifacts/<version>/``, see docs/architecture.md) is the only contract
between training and serving. Two kinds exist, named by the manifest's ``kind``:
``"seater"`` (the default when absent: encoder + one-step decoder + ID tree, written by
the SEATER exporter) and ``"dense"`` (the brute-force baseline: a SASRec user encoder +
item embeddings, scored against every item; written by the SASRec exporter).

Nothing in a bundle is trusted until ``manifest.json`` lists every required file and
each file's sha256 matches; mismatches name the file. Shapes are cross-checked
(items.json vs tree vs embedding table) so that a bundle assembled from two exports
fails here, at load time, rather than as wrong answers later.

Manifest fields read here (as the exporters write them)::

    {"format_version": 1, "model_version": "...", "dataset": "beauty", "kind": "seater",
     "files": {"encoder.onnx": {"sha256": "<hex>", "bytes": 123}, ...},
     "config": {"pad_id": <int>, "max_history": <int>, ...},
     "tree": {"k": 16, "depth": 4, "n_items": 12101, "n_nodes": 12908},
     "metrics": {...}, "exported_at": "2024-01-01T00:00:00Z"}
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from indexer.tree import IdTree
from service.model.catalog import Catalog, CatalogError

SEATER, DENSE = "seater", "dense"
# the formats this service reads, per kind (dense 2: the item table an encoder input)
BUNDLE_FORMAT_VERSIONS = {SEATER: (1,), DENSE: (1, 2)}
REQUIRED_FILES = {
    SEATER: ("encoder.onnx", "decoder.onnx", "tree.npz", "items.json", "embeddings.npy"),
    DENSE: ("encoder.onnx", "item_emb.npy", "items.json"),
}
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
        kind = data.get("kind") or SEATER
        if kind not in REQUIRED_FILES:
            known = list(REQUIRED_FILES)
            raise BundleError(f"{path}: unknown bundle kind {kind!r}; known: {known}")
        if data["format_version"] not in BUNDLE_FORMAT_VERSIONS[kind]:
            raise BundleError(
                f"{path}: {kind} bundle format {data['format_version']!r}, this service "
                f"reads {list(BUNDLE_FORMAT_VERSIONS[kind])}: re-export it with this "
                "version's `seater export`"
            )
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

    def config_int(self, key: str) -> int:
        """``config[key]`` as an int; BundleError naming the key when absent."""
        if self.config.get(key) is None:
            raise BundleError(f"manifest.json config has no {key!r}")
        return int(self.config[key])


def _file_hashes(files: Any, where: Path) -> dict[str, str]:
    """``{name: sha}`` from the manifest's ``{name: {"sha256": sha, "bytes": n}}``."""
    if not isinstance(files, dict):
        raise BundleError(f"{where}: 'files' must map file names to {{'sha256': ...}}")
    out = {}
    for name, entry in files.items():
        pure = PurePosixPath(name)
        if pure.is_absolute() or ".." in pure.parts:
            raise BundleError(f"{where}: file name {name!r} escapes the bundle directory")
        sha = entry.get("sha256") if isinstance(entry, dict) else None
        if not isinstance(sha, str) or len(sha) != 64:
            raise BundleError(f"{where}: bad 'files' entry for {name!r} (need a sha256 hex)")
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


@dataclass(frozen=True)
class Bundle:
    """What every verified bundle has: the folder (the ONNX graphs stay files for the
    runtime), its manifest and catalog, and how histories are fed to its encoder."""

    path: Path
    manifest: Manifest
    catalog: Catalog
    pad_id: int  # history padding: -1 (SEATER's node ids) or n_items (SASRec's pad row)
    max_history: int

    @property
    def encoder_path(self) -> Path:
        return self.path / "encoder.onnx"

    @property
    def version(self) -> str:
        return self.manifest.model_version


@dataclass(frozen=True)
class SeaterBundle(Bundle):
    """A SEATER bundle: encoder, one-step decoder, ID tree and node embeddings."""

    tree: IdTree
    embeddings: np.ndarray  # float32 [n_nodes, d], row = node id

    @property
    def decoder_path(self) -> Path:
        return self.path / "decoder.onnx"


@dataclass(frozen=True)
class DenseBundle(Bundle):
    """A dense-baseline bundle: user encoder graph + item embeddings."""

    item_emb: np.ndarray  # float32 [n_items, d], row = item index


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


def load_bundle(path: str | Path) -> SeaterBundle | DenseBundle:
    """Read and verify the bundle at ``path``, of whichever kind its manifest names."""
    if read_manifest(path).kind == DENSE:
        return load_dense_bundle(path)
    return load_seater_bundle(path)


def load_seater_bundle(path: str | Path) -> SeaterBundle:
    """Read and verify the SEATER bundle at ``path``; raise BundleError saying what is wrong."""
    shared = _verified(path, SEATER)
    root, m = shared["path"], shared["manifest"]
    try:
        tree = IdTree.load(root / "tree.npz")
    except Exception as exc:
        raise BundleError(f"tree.npz: {exc}") from exc
    bundle = SeaterBundle(**shared, tree=tree, embeddings=_load_matrix(root / "embeddings.npy"))
    emb = bundle.embeddings
    problems = _shared_problems(bundle, tree.n_items, "tree.npz", "items", pad_id=-1)
    if emb.shape[0] != tree.n_nodes:
        problems.append(
            f"embeddings.npy has shape {emb.shape}, expected [n_nodes = {tree.n_nodes}, d]"
        )
    for key, actual in (("k", tree.k), ("n_items", tree.n_items), ("n_nodes", tree.n_nodes)):
        if key in m.tree and int(m.tree[key]) != int(actual):
            problems.append(f"manifest tree.{key} = {m.tree[key]}, tree.npz has {actual}")
    _refuse(problems)
    return bundle


def load_dense_bundle(path: str | Path) -> DenseBundle:
    """Read and verify the dense bundle at ``path``; raise BundleError saying what is wrong."""
    shared = _verified(path, DENSE)
    bundle = DenseBundle(**shared, item_emb=_load_matrix(shared["path"] / "item_emb.npy"))
    n_items = bundle.item_emb.shape[0]
    _refuse(_shared_problems(bundle, n_items, "item_emb.npy", "rows", pad_id=n_items))
    return bundle


def _verified(path: str | Path, kind: str) -> dict[str, Any]:
    """The :class:`Bundle` fields, once the manifest is of the expected kind and every
    checksum matches."""
    root = Path(path)
    manifest = read_manifest(root)
    if manifest.kind != kind:
        raise BundleError(f"{root} is a {manifest.kind!r} bundle, expected {kind!r}")
    verify_files(root, manifest)
    try:
        catalog = Catalog.load(root / "items.json")
    except CatalogError as exc:
        raise BundleError(str(exc)) from exc
    return {"path": root, "manifest": manifest, "catalog": catalog,
            "pad_id": manifest.config_int("pad_id"),
            "max_history": manifest.config_int("max_history")}


def _load_matrix(path: Path) -> np.ndarray:
    """A 2-D float32 ``.npy`` (no pickles); BundleError naming the file otherwise."""
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise BundleError(f"{path.name}: {exc}") from exc
    if array.ndim != 2 or array.dtype != np.float32:
        raise BundleError(f"{path.name} is {array.dtype} {array.shape}, expected float32 [n, d]")
    return np.ascontiguousarray(array)


def _shared_problems(bundle: Bundle, n_items: int, source: str, unit: str,
                     pad_id: int) -> list[str]:
    """The checks every kind needs: catalog size, padding id, history length."""
    problems = []
    if len(bundle.catalog) != n_items:
        problems.append(f"items.json has {len(bundle.catalog)} ids, {source} {n_items} {unit}")
    if bundle.pad_id != pad_id:
        problems.append(f"config pad_id {bundle.pad_id}: the encoder pads with {pad_id}")
    if bundle.max_history < 1:
        problems.append(f"config max_history {bundle.max_history} < 1")
    return problems


def _refuse(problems: list[str]) -> None:
    if problems:
        raise BundleError("bundle is inconsistent: " + "; ".join(problems))
