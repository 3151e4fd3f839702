"""Bundle verification on copies of a REAL bundle: checksums, missing and unlisted files,
path escapes, mixed exports and bundle kinds, each refused with the file named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.model.bundle import (
    BundleError,
    SeaterBundle,
    load_bundle,
    load_seater_bundle,
    sha256_file,
)
from service.model.load import load_engine
from service.settings import Settings
from tests.service.bundles import copy_bundle, tamper


def test_checksum_mismatch_names_the_file(tiny_bundle, tmp_path):
    bad = tamper(copy_bundle(tiny_bundle.path, tmp_path / "bad"), "decoder.onnx")
    with pytest.raises(BundleError, match="checksum mismatch for decoder.onnx"):
        load_seater_bundle(bad)


def test_missing_file_and_missing_manifest_are_named(tiny_bundle, tmp_path):
    gone = copy_bundle(tiny_bundle.path, tmp_path / "gone")
    (gone / "items.json").unlink()
    with pytest.raises(BundleError, match="items.json is listed in manifest.json but missing"):
        load_seater_bundle(gone)
    (gone / "manifest.json").unlink()
    with pytest.raises(BundleError, match="manifest.json is missing"):
        load_seater_bundle(gone)


def edit_manifest(bundle: Path, edit) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    edit(manifest)
    (bundle / "manifest.json").write_text(json.dumps(manifest))


def test_unlisted_required_file_is_refused(tiny_bundle, tmp_path):
    partial = copy_bundle(tiny_bundle.path, tmp_path / "partial")
    edit_manifest(partial, lambda m: m["files"].pop("embeddings.npy"))
    with pytest.raises(BundleError, match="does not list \\['embeddings.npy'\\]"):
        load_seater_bundle(partial)


def test_path_escape_in_manifest_is_refused(tiny_bundle, tmp_path):
    evil = copy_bundle(tiny_bundle.path, tmp_path / "evil")
    edit_manifest(evil, lambda m: m["files"].update({"../../etc/passwd": {"sha256": "0" * 64}}))
    with pytest.raises(BundleError, match="escapes the bundle directory"):
        load_seater_bundle(evil)


def test_a_catalog_from_another_export_is_inconsistent(tiny_bundle, tmp_path):
    mixed = copy_bundle(tiny_bundle.path, tmp_path / "mixed")
    (mixed / "items.json").write_text(json.dumps({"ids": [str(i) for i in range(27)]}))
    edit_manifest(mixed, lambda m: m["files"].update(
        {"items.json": {"sha256": sha256_file(mixed / "items.json")}}))
    with pytest.raises(BundleError, match="items.json has 27 ids, tree.npz 90 items"):
        load_seater_bundle(mixed)


def test_a_bundle_of_another_kind_is_refused_by_the_seater_loader(tiny_bundle, tmp_path):
    other = copy_bundle(tiny_bundle.path, tmp_path / "other")
    edit_manifest(other, lambda m: m.update(kind="dense"))
    with pytest.raises(BundleError, match="is a 'dense' bundle, expected 'seater'"):
        load_seater_bundle(other)
    edit_manifest(other, lambda m: m.update(kind="mystery"))
    with pytest.raises(BundleError, match="unknown bundle kind 'mystery'"):
        load_engine(other, Settings(providers="cpu"))


def test_a_format_this_service_cannot_read_is_named_with_the_fix(tiny_bundle, tmp_path):
    """Formats are per kind: dense bundles have a format 2, SEATER bundles do not."""
    newer = copy_bundle(tiny_bundle.path, tmp_path / "newer")
    edit_manifest(newer, lambda m: m.update(format_version=2))
    with pytest.raises(BundleError, match=r"seater bundle format 2, this service reads \[1\]: "
                                          "re-export it with this version's `seater export`"):
        load_seater_bundle(newer)


def test_the_exporters_manifest_loads_and_other_shapes_of_it_are_named(tiny_bundle, tmp_path):
    bundle = load_bundle(tiny_bundle.path)  # the kind is read from the manifest
    assert isinstance(bundle, SeaterBundle) and bundle.max_history == 12
    bare = copy_bundle(tiny_bundle.path, tmp_path / "bare")
    edit_manifest(bare, lambda m: m["files"].update(
        {"tree.npz": m["files"]["tree.npz"]["sha256"]}))  # a bare hex, not {"sha256": ...}
    with pytest.raises(BundleError, match="bad 'files' entry for 'tree.npz'"):
        load_seater_bundle(bare)
    renamed = copy_bundle(tiny_bundle.path, tmp_path / "renamed")
    edit_manifest(renamed, lambda m: m["config"].update(max_len=m["config"].pop("max_history")))
    with pytest.raises(BundleError, match="config has no 'max_history'"):
        load_seater_bundle(renamed)
