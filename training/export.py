"""``seater export``: a trained run folder -> the serving bundle, whichever model it holds.

A SEATER run (``training/seater/export.py``) becomes the generative bundle; a SASRec run
(``training/sasrec/export.py``) the dense brute-force baseline bundle served by the same
service. Both go through ``training.publish``, which also moves ``<out>/current``.
"""

from __future__ import annotations

import json
from pathlib import Path

from training.publish import default_version


def run_kind(run_dir: Path) -> str:
    """``seater`` or ``sasrec``, from the run's recorded config (a SEATER config has a
    ``tree`` section); raises FileNotFoundError when the folder is not a trained run."""
    run_dir = Path(run_dir)
    if not (run_dir / "model.pt").is_file():
        raise FileNotFoundError(f"{run_dir / 'model.pt'} not found: --run takes a folder "
                                "written by `seater train sasrec` or `seater train seater`")
    conf = run_dir / "config.json"
    if conf.is_file():
        return "seater" if "tree" in json.loads(conf.read_text()) else "sasrec"
    return "seater" if (run_dir / "tree.npz").is_file() else "sasrec"


def export_run(run_dir: Path, out_root: Path, version: str | None = None) -> Path:
    """The run's final model (the refit one when it refit) as ``out_root/<version>``.

    The default version is ``<dataset>[-sasrec]-<UTC time>``, the dataset named as the
    run folder's parent (``runs/<dataset>/<run>``), never as a path."""
    run_dir = Path(run_dir)
    kind = run_kind(run_dir)
    from training.runner import read_results

    # the final entry (the refit's when the run refit); a run that never finished has none
    result = (read_results(run_dir) or [{}])[-1]
    label = result.get("dataset") or run_dir.resolve().parent.name
    version = version or default_version(label, "sasrec" if kind == "sasrec" else "")
    metrics = result.get("metrics", {})
    items = json.loads((run_dir / "items.json").read_text())
    if kind == "sasrec":
        from training.sasrec.export import export_sasrec_bundle, load_sasrec_run

        model, cfg, _ = load_sasrec_run(run_dir)
        return export_sasrec_bundle(model, items, out_root, version, label, metrics,
                                    extra={"run": str(run_dir)})
    from training.seater.export import export_bundle
    from training.seater.pipeline import load_run

    model, tree, cfg, _ = load_run(run_dir)
    return export_bundle(model, tree, items, out_root, version, label, metrics,
                         extra={"run": str(run_dir)})
