"""``seater train seater``: embeddings -> ID tree -> SEATER (3 losses) -> test -> report.

Item embeddings come from a SASRec run on the same dataset and protocol (its early-
stopped fit, which saw no validation targets): ``--sasrec-run``, else the best one by
validation metric among the dataset's SASRec runs of SEATER's width, else one trained
first with the run's own budget. The tree is cached in the run folder next to the
model, so ``seater export`` and the evaluation use exactly the tree the model was
trained on.

When SEATER's encoder starts from that SASRec's, it runs under the SASRec's input
conventions (input scaling, masked or visible padding): the model flags at their
defaults take the SASRec's values (so the strongest, RecTools-style SASRec is usable as
is), flags set to something else that contradicts it are refused. ``config.json`` keeps
the flags as asked (what a resume compares); ``result.json`` and the checkpoint hold the
ones the run used.
"""

from __future__ import annotations

import json
import logging
import shlex
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from indexer import BuildConfig, IdTree, build_tree, from_codes, node_centroids
from training.checkpoint import load_checkpoint
from training.config import ConfigError, from_saved
from training.data import InteractionData, Sequences
from training.lmindexer.config import TEXT_FIELDS, codes_fields, fields_slug
from training.run_folder import FINGERPRINT, data_fingerprint
from training.runner import (
    RunSettings,
    finish_run,
    fit_and_test,
    read_results,
    report_entries,
    start_run,
)
from training.sasrec.model import SASRecParams
from training.sasrec.pipeline import SASRecRun, run_sasrec
from training.seater.distill import load_teacher, teacher_checkpoint
from training.seater.model import Seater, SeaterParams
from training.seater.task import LossConfig, SeaterTask, check_losses
from training.trainer import TrainConfig, barrier

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
class SeaterRun(RunSettings):
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


def sasrec_embeddings(cfg: SeaterRun, data: InteractionData) -> tuple[np.ndarray, Path]:
    """The chosen SASRec fit's item embeddings and its folder (see the module doc)."""
    folder = Path(cfg.sasrec_run) if cfg.sasrec_run else best_sasrec_run(cfg, data)
    if folder is None:
        folder = train_sasrec_for(cfg, data)
    path = folder / "fit" / "item_emb.npy"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: --sasrec-run must be a folder written by "
                                "`seater train sasrec` with its fit (fit/item_emb.npy; a "
                                "--refit-epochs run skips the fit and has none)")
    conf = folder / "config.json"
    if conf.is_file():
        check_same_split(cfg, folder, json.loads(conf.read_text()))
    emb = np.load(path)
    if emb.shape[0] != data.n_items:
        raise ValueError(f"{path} has {emb.shape[0]} rows but {data.name} has "
                         f"{data.n_items} items: that SASRec run was trained on other data")
    return emb, folder


def split_of(conf: dict[str, Any]) -> tuple[str, int]:
    """A saved run config's protocol and split seed (runs from before ``split_seed`` split
    the `seater` protocol's users by their training seed)."""
    seed = conf.get("split_seed", conf.get("train", {}).get("seed", 0))
    return conf.get("protocol", "loo"), int(seed) if conf.get("protocol") == "seater" else 0


def check_same_split(cfg: SeaterRun, folder: Path, conf: dict[str, Any]) -> None:
    """SEATER's tree, initialisation and teacher come from the SASRec, so the SASRec must
    not have trained on SEATER's test users: same protocol, and under `seater` the same
    user split. Raises ConfigError before any training otherwise."""
    theirs, mine = split_of(conf), split_of(asdict(cfg))
    if theirs != mine:
        raise ConfigError(
            f"{folder} was trained under protocol {theirs[0]} with split seed {theirs[1]}, "
            f"this run evaluates under {mine[0]} with split seed {mine[1]}: that SASRec trained "
            "on users this run tests on, so its embeddings, tree and weights would carry their "
            "held-out items. Pick a SASRec run of the same protocol and split (`--set "
            "split_seed=N` selects the split; training seeds leave it alone) or train one")


def best_sasrec_run(cfg: SeaterRun, data: InteractionData) -> Path | None:
    """Among ``<out_dir>/<dataset>/*/`` SASRec runs with a finished fit on this data and
    protocol and SEATER's width, the best by validation ``train.metric``."""
    want = data_fingerprint(data)["sha256"]
    found: list[tuple[float, Path]] = []
    for folder in sorted((Path(cfg.out_dir) / data.name).glob("*/")):
        try:
            conf = json.loads((folder / "config.json").read_text())
        except (OSError, ValueError):
            continue
        results = read_results(folder)
        if not results:
            continue
        fit = results[0]
        if not (folder / "fit" / "item_emb.npy").is_file() or "tree" in conf:
            continue
        prints = folder / FINGERPRINT  # absent in folders of older versions: items must match
        same_data = (json.loads(prints.read_text()).get("sha256") == want if prints.is_file()
                     else fit.get("dataset") == data.name
                     and np.load(folder / "fit" / "item_emb.npy", mmap_mode="r").shape[0]
                     == data.n_items)
        if (not same_data or split_of(conf) != split_of(asdict(cfg))
                or conf.get("model", {}).get("d_model") != cfg.model.d_model):
            continue
        score = fit.get("metrics", {}).get("valid", {}).get(cfg.train.metric)
        if score is not None:
            found.append((float(score), folder))
    if not found:
        return None
    score, best = max(found)
    log.info("SASRec for the tree and the initialisation: %s (valid %s %.4f, best of %d)",
             best, cfg.train.metric, score, len(found))
    return best


def train_sasrec_for(cfg: SeaterRun, data: InteractionData) -> Path:
    """No SASRec run yet: train one of SEATER's width with this run's budget, device and
    threads, and say the command that does the same by hand."""
    m, t = cfg.model, cfg.train
    sasrec = SASRecRun(
        dataset=cfg.dataset, protocol=cfg.protocol, out_dir=cfg.out_dir, data=cfg.data,
        reports_dir=cfg.reports_dir, split_seed=cfg.split_seed,
        model=replace(SASRecParams(), d_model=m.d_model, max_len=m.max_len,
                      n_layers=m.enc_layers, n_heads=m.enc_heads, ff_mult=m.enc_ff_mult),
        train=replace(TrainConfig(), seed=t.seed, progress=t.progress, device=t.device,
                      threads=t.threads, epochs=t.epochs, max_batches=t.max_batches,
                      max_eval_users=t.max_eval_users, final_eval_users=t.final_eval_users,
                      patience=min(10, t.patience) if t.patience else 10))
    folder = Path(cfg.out_dir) / data.name / sasrec.run_name
    log.info("no SASRec run of width %d in %s: training one, as `%s`", m.d_model,
             folder.parent, sasrec_command(sasrec))
    run_sasrec(sasrec, data=data)
    return folder


def sasrec_command(run: SASRecRun) -> str:
    """The ``seater train sasrec`` command line for ``run``'s settings that matter here."""
    p, t, d = run.model, run.train, run.data
    args = ["seater", "train", "sasrec", "-d", run.dataset, "-p", run.protocol,
            "--d-model", str(p.d_model), "--max-len", str(p.max_len), "--layers",
            str(p.n_layers), "--heads", str(p.n_heads), "--epochs", str(t.epochs),
            "--patience", str(t.patience), "--seed", str(t.seed)]
    if run.out_dir != "runs":
        args += ["--out", run.out_dir]
    for flag, value, default in (("--user-col", d.user_col, "user"),
                                 ("--item-col", d.item_col, "item"),
                                 ("--time-col", d.time_col, "timestamp"),
                                 ("--items", d.items, "")):
        if value != default:
            args += [flag, value]
    if p.ff_mult != SASRecParams.ff_mult:
        args += ["--set", f"model.ff_mult={p.ff_mult}"]
    if run.split_seed:
        args += ["--set", f"split_seed={run.split_seed}"]
    for key in ("threads", "max_batches", "max_eval_users", "final_eval_users"):
        if getattr(t, key):
            args += ["--set", f"train.{key}={getattr(t, key)}"]
    if t.device != "auto":
        args += ["--device", t.device]
    return shlex.join(args)


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


def sasrec_conventions(sasrec_folder: Path) -> dict[str, bool]:
    """The encoder input conventions a SASRec run was trained under, by SEATER's names."""
    conf = sasrec_folder / "config.json"
    sasrec = from_saved(SASRecRun, json.loads(conf.read_text()), str(conf)).model
    return {"scale_input": sasrec.init == "sasrec", "mask_padded_keys": sasrec.mask_padded_keys}


def follow_sasrec_conventions(cfg: SeaterRun, sasrec_folder: Path | None) -> SeaterRun:
    """``cfg`` with the SASRec's input conventions where SEATER's flags are at their
    defaults and its encoder is initialised from that SASRec (see the module doc)."""
    if not cfg.init_from_sasrec or sasrec_folder is None:
        return cfg
    defaults = SeaterParams()
    adopt = {k: v for k, v in sasrec_conventions(sasrec_folder).items()
             if getattr(cfg.model, k) != v and getattr(cfg.model, k) == getattr(defaults, k)}
    if not adopt:
        return cfg
    log.info("SEATER's encoder takes %s's input conventions: %s", sasrec_folder,
             ", ".join(f"model.{k}={str(v).lower()}" for k, v in adopt.items()))
    return replace(cfg, model=replace(cfg.model, **adopt))


def sasrec_results(sasrec_folder: Path | None) -> list[dict[str, Any]]:
    """The SASRec run's own report entries (fit, then refit), cut to what identifies it and
    its test figures, for SEATER's entry to carry.

    A teacher retrained in another session is not bit-for-bit the committed row of the same
    key, so a SEATER entry is read against the SASRec it was actually built on."""
    if sasrec_folder is None:
        return []
    keep = ("key", "commit", "date", "best_epoch", "epochs_run")
    return [{**{k: e.get(k) for k in keep}, "test": e.get("metrics", {}).get("test", {})}
            for e in read_results(sasrec_folder)]


def init_from_sasrec(model: Seater, tree: IdTree, sasrec_folder: Path, emb: np.ndarray) -> None:
    """Leaves <- SASRec item embeddings, internal nodes <- their leaves' centroid, and the
    encoder <- SASRec's encoder when the stacks match.

    A SASRec with other input scaling or padding masking (the RecTools-style options)
    would run its weights under the wrong conditions here, so that is refused."""
    if emb.shape[1] != model.p.d_model:
        raise ConfigError(f"SASRec embeddings in {sasrec_folder} are {emb.shape[1]}-d but "
                          f"SEATER has d_model={model.p.d_model}: pass --d-model "
                          f"{emb.shape[1]}, another --sasrec-run, or --scratch")
    want = sasrec_conventions(sasrec_folder)
    have = {"scale_input": model.encoder.scale != 1.0,
            "mask_padded_keys": model.encoder.mask_padded_keys}
    if want != have:
        diff = ", ".join(f"{k}: SASRec {want[k]}, SEATER {have[k]}" for k in want
                         if want[k] != have[k])
        raise ConfigError(f"{sasrec_folder} was trained with another encoder input ({diff}); "
                          "SEATER's encoder cannot take its weights as they are. Leave "
                          "model.scale_input / model.mask_padded_keys at their defaults (they "
                          "then follow the SASRec), pick another --sasrec-run, or --scratch")
    with torch.no_grad():
        model.node_emb.weight.copy_(torch.from_numpy(node_centroids(tree, emb)))
    state = load_checkpoint(sasrec_folder / "fit" / "model.pt")["model"]
    enc = {k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.")}
    own = model.encoder.state_dict()
    if enc.keys() == own.keys() and all(enc[k].shape == own[k].shape for k in own):
        model.encoder.load_state_dict(enc)
        log.info("encoder initialised from SASRec (%s)", sasrec_folder)
    else:
        log.info("SASRec encoder shape differs: encoder starts from scratch")


def variant_name(cfg: SeaterRun) -> str:
    p, lo, t = cfg.model, cfg.losses, cfg.tree
    ids = t.ids
    if ids == "semantic":  # codes learned from titles alone vs with the category words
        fields = codes_fields(t.codes)
        if fields in TEXT_FIELDS:
            ids = f"semantic-{fields_slug(fields)}"
    parts = [ids, f"k{t.k}", f"d{p.d_model}", f"beam{cfg.beam_size}"]
    if lo.lambda_align == 0 and lo.lambda_rank == 0:
        parts.append("gen-only")
    elif lo.lambda_align == 0:
        parts.append("no-align")
    elif lo.lambda_rank == 0:
        parts.append("no-rank")
    if lo.lambda_rank > 0 and lo.rank_cosine_scale > 0:
        parts.append(f"rankcos{lo.rank_cosine_scale:g}")
    if lo.lambda_distill > 0:
        parts.append(f"distill{lo.lambda_distill:g}" + (
            f"t{lo.distill_temperature:g}" if lo.distill_temperature != 1 else "") + (
            f"top{lo.distill_top}" if lo.distill_top else ""))
    if not cfg.init_from_sasrec:
        parts.append("scratch")
    if not p.scale_input:  # the input conventions of a RecTools-style SASRec
        parts.append("noscale")
    if not p.mask_padded_keys:
        parts.append("padkeys")
    if cfg.train.epochs < TrainConfig.epochs:  # a budgeted run is not the converged one
        parts.append(f"ep{cfg.train.epochs}")
    # Rows written before presets existed carry neither tag; today's default preset is
    # not their configuration, so every new row names its preset, and seeds apart.
    parts.append(cfg.preset)
    if cfg.train.seed:
        parts.append(f"s{cfg.train.seed}")
    return "-".join(parts)


def load_run(run_dir: Path, device: torch.device | str = "cpu"
             ) -> tuple[Seater, IdTree, SeaterRun, dict[str, Any]]:
    """A trained SEATER run folder -> (model, tree, config, checkpoint extras).

    The checkpoint is read with ``weights_only``: it holds tensors and plain data only,
    so loading a run cannot execute code from it."""
    run_dir = Path(run_dir)
    ckpt_path = run_dir / "model.pt"
    if not ckpt_path.is_file():
        raise FileNotFoundError(f"{ckpt_path} not found: train with `seater train seater`")
    ckpt = load_checkpoint(ckpt_path, device)
    config = ckpt.get("config", {})
    if ckpt.get("kind", "seater") != "seater" or "tree" not in config:
        raise ValueError(f"{run_dir} is a SASRec run, not a SEATER run: `seater evaluate` "
                         "takes runs of `seater train seater`; SASRec runs report their test "
                         "metrics in result.json and export with `seater export`")
    cfg = from_saved(SeaterRun, config, str(ckpt_path))
    tree_path = run_dir / "tree.npz"
    if not tree_path.is_file():
        raise FileNotFoundError(f"{tree_path} not found: the SEATER run {run_dir} is "
                                "incomplete (its tree is written before training starts); "
                                "train it again with `seater train seater`")
    tree = IdTree.load(tree_path)
    model = Seater(tree.n_nodes, tree.max_depth, tree.root, cfg.model)
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), tree, cfg, ckpt


def run_seater(cfg: SeaterRun, resume: bool = True, data: InteractionData | None = None
               ) -> list[dict[str, Any]]:
    check_losses(cfg.losses)
    run = start_run(cfg, resume, data)
    data, run_dir = run.data, run.dir
    needs_emb = (cfg.tree.ids in ("balanced", "kmeans") or cfg.init_from_sasrec
                 or cfg.losses.lambda_distill > 0)
    emb, sasrec_folder = sasrec_embeddings(cfg, data) if needs_emb else (None, None)
    cfg = follow_sasrec_conventions(cfg, sasrec_folder)
    built_on = sasrec_results(sasrec_folder)  # as it stands when its weights are read
    tree_path = run_dir / "tree.npz"
    if run.main and not (resume and tree_path.is_file()):
        tree, tree_report = make_tree(cfg.tree, emb, data.n_items)
        tree.save(tree_path)
        (run_dir / "tree.json").write_text(json.dumps(tree_report, indent=2))
    barrier()  # every rank trains on the tree rank 0 built
    tree = IdTree.load(tree_path)
    tree_report = json.loads((run_dir / "tree.json").read_text())
    log.info("tree %s: %s", cfg.tree.ids, tree.summary())
    distil = cfg.losses.lambda_distill > 0
    if distil:
        if sasrec_folder is None:
            raise ConfigError("losses.lambda_distill > 0 distils a SASRec run: pass "
                              "--sasrec-run or train one on this dataset first")
        for stage in cfg.stages():
            teacher_checkpoint(sasrec_folder, stage)  # no refit to teach: say so before work
        log.info("distilling from %s (weight %g, temperature %g)", sasrec_folder,
                 cfg.losses.lambda_distill, cfg.losses.distill_temperature)
    extra = {"kind": "seater", "config": asdict(cfg), "n_items": data.n_items,
             "tree": tree.summary(), "sasrec_run": str(sasrec_folder or "")}

    def build(train_seqs: Sequences, stage: str) -> SeaterTask:
        model = Seater(tree.n_nodes, tree.max_depth, tree.root, cfg.model)
        if cfg.init_from_sasrec and sasrec_folder is not None and emb is not None:
            init_from_sasrec(model, tree, sasrec_folder, emb)
        teacher = (load_teacher(sasrec_folder, tree, cfg.losses.distill_temperature,
                                run.device, stage) if distil and sasrec_folder else None)
        return SeaterTask(model.to(run.device), tree, train_seqs, run.device, cfg.losses,
                          beam_size=cfg.beam_size, teacher=teacher,
                          exclude_seen=cfg.excludes_seen())

    out = fit_and_test(build, data, cfg.protocol, cfg.train, run_dir, cfg.refit,
                       cfg.excludes_seen(), resume, extra, split_seed=cfg.split_seed,
                       refit_epochs=cfg.refit_epochs)
    entries = report_entries(
        out, "seater", variant_name(cfg), data, cfg.excludes_seen(), cfg.model.max_len,
        asdict(cfg), run_dir, run.device,
        extra={"tree": {**tree.summary(), "build": tree_report},
               "sasrec_run": str(sasrec_folder or ""),
               "sasrec_results": built_on},
    )
    if run.main:
        torch.save({"model": out.task.model.state_dict(), **extra}, run_dir / "model.pt")
    finish_run(run, entries, cfg.reports_dir)
    return entries
