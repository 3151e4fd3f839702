"""``seater train seater``: embeddings -> ID tree -> SEATER (3 losses) -> test -> report.

Item embeddings come from a SASRec run on the same dataset and protocol (its early-
stopped fit, which saw no validation targets); when none exists one is trained first.
The tree is cached in the run folder next to the model, so ``seater export`` and the
evaluation use exactly the tree the model was trained on.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from indexer import BuildConfig, IdTree, build_tree, from_codes, node_centroids
from training.data import InteractionData, Sequences, load_dataset
from training.reports import update_quality_report
from training.runner import fit_and_test, report_entries
from training.sasrec.model import SASRecParams
from training.sasrec.pipeline import SASRecRun, exclude_seen_for, run_sasrec, write_items
from training.seater.model import Seater, SeaterParams
from training.seater.task import LossConfig, SeaterTask
from training.trainer import TrainConfig, barrier, is_main_process, resolve_device

log = logging.getLogger(__name__)

Ids = Literal["balanced", "kmeans", "random", "semantic"]


@dataclass(frozen=True)
class TreeParams:
    """Which identifiers: a balanced k-ary tree (Algorithm 1) over SASRec embeddings,
    the imbalanced k-means and random trees of the ablations, or semantic IDs learned
    from item text (``codes``: an ``.npy`` of [n_items, L] codes from ``seater index``)."""

    ids: Ids = "balanced"
    k: int = 16
    splitter: Literal["auto", "exact", "fast"] = "auto"
    seed: int = 0
    codes: str = ""


@dataclass(frozen=True)
class SeaterRun:
    dataset: str = "beauty"
    protocol: Literal["loo", "seater"] = "loo"
    refit: bool = False
    exclude_seen: Literal["auto", "yes", "no"] = "auto"
    out_dir: str = "runs"
    name: str = ""
    report: bool = True
    sasrec_run: str = ""
    init_from_sasrec: bool = True
    beam_size: int = 50
    tree: TreeParams = field(default_factory=TreeParams)
    model: SeaterParams = field(default_factory=SeaterParams)
    losses: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    @property
    def run_name(self) -> str:
        return self.name or f"seater-{self.protocol}-{self.tree.ids}-k{self.tree.k}"

    def excludes_seen(self) -> bool:
        return exclude_seen_for(self.exclude_seen, self.protocol)


def sasrec_embeddings(cfg: SeaterRun, data: InteractionData) -> tuple[np.ndarray, Path]:
    """The fit's item embeddings (and its folder), training SASRec first if needed."""
    folder = Path(cfg.sasrec_run or Path(cfg.out_dir) / data.name / f"sasrec-{cfg.protocol}")
    path = folder / "fit" / "item_emb.npy"
    if not path.is_file():
        if cfg.sasrec_run:
            raise FileNotFoundError(f"{path} not found: run `seater train sasrec` first or "
                                    "point --sasrec-run at a SASRec run folder")
        log.info("no SASRec run at %s: training one (seater train sasrec -d %s -p %s)",
                 folder, data.name, cfg.protocol)
        m = cfg.model
        run_sasrec(SASRecRun(
            dataset=cfg.dataset, protocol=cfg.protocol, out_dir=cfg.out_dir, report=cfg.report,
            model=replace(SASRecParams(), d_model=m.d_model, max_len=m.max_len,
                          n_layers=m.enc_layers, n_heads=m.enc_heads, ff_mult=m.enc_ff_mult),
            train=replace(TrainConfig(), seed=cfg.train.seed, progress=cfg.train.progress,
                          patience=10, device=cfg.train.device)), data=data)
    emb = np.load(path)
    if emb.shape[0] != data.n_items:
        raise ValueError(f"{path} has {emb.shape[0]} rows but {data.name} has "
                         f"{data.n_items} items")
    return emb, folder


def make_tree(cfg: TreeParams, emb: np.ndarray | None, n_items: int) -> tuple[IdTree, dict]:
    if cfg.ids == "semantic":
        if not cfg.codes:
            raise ValueError("ids=semantic needs tree.codes: the .npy written by "
                             "`seater index semantic`")
        tree, rep = from_codes(np.load(cfg.codes), k=cfg.k)
        if tree.n_items != n_items:
            raise ValueError(f"{cfg.codes} has codes for {tree.n_items} items, need {n_items}")
        return tree, asdict(rep)
    x = emb if emb is not None else np.zeros((n_items, 1), np.float32)
    tree, rep = build_tree(x, BuildConfig(k=cfg.k, method=cfg.ids, splitter=cfg.splitter,
                                          seed=cfg.seed))
    return tree, asdict(rep)


def init_from_sasrec(model: Seater, tree: IdTree, sasrec_folder: Path, emb: np.ndarray) -> None:
    """Leaves <- SASRec item embeddings, internal nodes <- their leaves' centroid, and the
    encoder <- SASRec's encoder when the shapes match (same stack, same width)."""
    if emb.shape[1] != model.p.d_model:
        raise ValueError(f"SASRec embeddings in {sasrec_folder} are {emb.shape[1]}-d but "
                         f"SEATER has d_model={model.p.d_model}: match them or use --scratch")
    with torch.no_grad():
        model.node_emb.weight.copy_(torch.from_numpy(node_centroids(tree, emb)))
    state = torch.load(sasrec_folder / "fit" / "model.pt", map_location="cpu",
                       weights_only=False)["model"]
    enc = {k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.")}
    own = model.encoder.state_dict()
    if enc.keys() == own.keys() and all(enc[k].shape == own[k].shape for k in own):
        model.encoder.load_state_dict(enc)
        log.info("encoder initialised from SASRec (%s)", sasrec_folder)
    else:
        log.info("SASRec encoder shape differs: encoder starts from scratch")


def variant_name(cfg: SeaterRun) -> str:
    p, lo, t = cfg.model, cfg.losses, cfg.tree
    parts = [t.ids, f"k{t.k}", f"d{p.d_model}", f"beam{cfg.beam_size}"]
    if lo.lambda_align == 0 and lo.lambda_rank == 0:
        parts.append("gen-only")
    elif lo.lambda_align == 0:
        parts.append("no-align")
    elif lo.lambda_rank == 0:
        parts.append("no-rank")
    if lo.lambda_rank > 0 and lo.rank_cosine_scale > 0:
        parts.append(f"rankcos{lo.rank_cosine_scale:g}")
    if not cfg.init_from_sasrec:
        parts.append("scratch")
    if cfg.train.epochs < TrainConfig.epochs:  # a budgeted run is not the converged one
        parts.append(f"ep{cfg.train.epochs}")
    return "-".join(parts)


def load_run(run_dir: Path, device: torch.device | str = "cpu"
             ) -> tuple[Seater, IdTree, SeaterRun, dict[str, Any]]:
    """A trained SEATER run folder -> (model, tree, config, checkpoint extras)."""
    from training.config import from_dict

    ckpt_path = Path(run_dir) / "model.pt"
    if not ckpt_path.is_file():
        raise FileNotFoundError(f"{ckpt_path} not found: train with `seater train seater`")
    ckpt = torch.load(ckpt_path, map_location=device, weights_only=False)
    cfg = from_dict(SeaterRun, ckpt["config"], str(ckpt_path))
    tree = IdTree.load(Path(run_dir) / "tree.npz")
    model = Seater(tree.n_nodes, tree.max_depth, tree.root, cfg.model)
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), tree, cfg, ckpt


def run_seater(cfg: SeaterRun, resume: bool = True, data: InteractionData | None = None
               ) -> list[dict[str, Any]]:
    data = data or load_dataset(cfg.dataset)
    device = resolve_device(cfg.train.device)
    run_dir = Path(cfg.out_dir) / data.name / cfg.run_name
    main = is_main_process()  # under torchrun, rank 0 alone writes files and reports
    run_dir.mkdir(parents=True, exist_ok=True)
    if main:
        (run_dir / "config.json").write_text(json.dumps(asdict(cfg), indent=2))

    needs_emb = cfg.tree.ids in ("balanced", "kmeans") or cfg.init_from_sasrec
    emb, sasrec_folder = sasrec_embeddings(cfg, data) if needs_emb else (None, None)
    tree_path = run_dir / "tree.npz"
    if main and not (resume and tree_path.is_file()):
        tree, tree_report = make_tree(cfg.tree, emb, data.n_items)
        tree.save(tree_path)
        (run_dir / "tree.json").write_text(json.dumps(tree_report, indent=2))
    if main:
        write_items(run_dir, data)
    barrier()  # every rank trains on the tree rank 0 built
    tree = IdTree.load(tree_path)
    tree_report = json.loads((run_dir / "tree.json").read_text())
    log.info("tree %s: %s", cfg.tree.ids, tree.summary())
    extra = {"config": asdict(cfg), "n_items": data.n_items, "tree": tree.summary()}

    def build(train_seqs: Sequences) -> SeaterTask:
        model = Seater(tree.n_nodes, tree.max_depth, tree.root, cfg.model)
        if cfg.init_from_sasrec and sasrec_folder is not None and emb is not None:
            init_from_sasrec(model, tree, sasrec_folder, emb)
        return SeaterTask(model.to(device), tree, train_seqs, device, cfg.losses,
                          beam_size=cfg.beam_size)

    out = fit_and_test(build, data, cfg.protocol, cfg.train, run_dir, cfg.refit,
                       cfg.excludes_seen(), resume, extra)
    entries = report_entries(
        out, "seater", variant_name(cfg), data, cfg.excludes_seen(), cfg.model.max_len,
        asdict(cfg), run_dir, device,
        extra={"tree": {**tree.summary(), "build": tree_report}},
    )
    if not main:
        return entries
    torch.save({"model": out.task.model.state_dict(), **extra}, run_dir / "model.pt")
    (run_dir / "result.json").write_text(json.dumps(entries, indent=2))
    if cfg.report:
        for entry in entries:
            log.info("report updated: %s", update_quality_report(data.name, entry))
    return entries
