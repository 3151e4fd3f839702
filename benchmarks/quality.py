"""Full-size quality runs (hours each on a CPU): the commands behind reports/quality/.

Each experiment is one `seater` command; its result lands in
`reports/quality/<dataset>.json` with the command, commit, seed and machine, and
`seater report` renders the tables. Runs resume from their checkpoints, so an
interrupted benchmark continues where it stopped. An experiment that builds on another's
output (a SASRec fit, the indexer's codes) is refused before anything runs until that
output exists or its experiment is named before it.

    python -m benchmarks.quality --list
    python -m benchmarks.quality sasrec-beauty seater-beauty      # named experiments
    python -m benchmarks.quality --group ablations                 # a whole group
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import option_value

ROOT = Path(__file__).resolve().parents[1]
LOGS = ROOT / "runs" / "logs"

# every experiment files its result under the project's reports/ (a run alone does not)
SASREC = ["seater", "train", "sasrec", "--reports-dir", "reports", "--refit", "--patience", "20"]
SEATER = ["seater", "train", "seater", "--reports-dir", "reports"]
RECTOOLS = ["--set", "model.init=xavier", "--set", "model.item_dropout=0.2", "--set",
            "model.mask_padded_keys=false", "--set", "train.adam_beta2=0.98"]
ABLATION_EPOCHS = 4
# the distilled arms' epoch budget, shared by every seed and variant of a dataset (set
# above the first runs' best epochs; the reports record each run's best)
DISTILL_EPOCHS = {"beauty": 55, "sports": 28, "yelp": 25}
# the SASRec runs SEATER experiments build on (Beauty and Sports under loo, Yelp under the
# seater protocol): PLAIN written by sasrec-<ds> / sasrec-yelp-seater, TUNED by
# sasrec-<ds>-rectools-batch4096 / sasrec-yelp-seater-tuned
PLAIN = {"beauty": "runs/beauty/sasrec-loo", "sports": "runs/sports/sasrec-loo",
         "yelp": "runs/yelp/sasrec-seater"}
TUNED = {"beauty": "runs/beauty/sasrec-loo-rectools-batch4096",
         "sports": "runs/sports/sasrec-loo-rectools-batch4096",
         "yelp": "runs/yelp/sasrec-seater-tuned"}


def top_flags(tag: str) -> list[str]:
    """``-top<m>`` in an experiment's name: distil the teacher's m top items' paths too."""
    return ["--set", f"losses.distill_top={tag.removeprefix('-top')}"] if tag else []


EXPERIMENTS: dict[str, tuple[str, list[str]]] = {
    # --- SASRec baselines (loo with and without refit, both written by one run)
    "sasrec-beauty": ("baselines", [*SASREC, "-d", "beauty", "-p", "loo"]),
    "sasrec-beauty-d256": ("baselines", [*SASREC, "-d", "beauty", "-p", "loo", "--d-model",
                                         "256", "--name", "sasrec-loo-d256"]),
    "sasrec-sports": ("baselines", [*SASREC, "-d", "sports", "-p", "loo"]),
    "sasrec-sports-d256": ("baselines", [*SASREC, "-d", "sports", "-p", "loo", "--d-model",
                                         "256", "--name", "sasrec-loo-d256"]),
    # RecTools' SASRec details (model.py): Xavier init, catalogue dropout, visible padding,
    # Adam beta2 0.98, with 256 negatives per sequence; and the `tuned` preset, the same
    # details with one shared set of 4096 negatives per batch (the Beauty run was started
    # with the equivalent flags, RECTOOLS + BATCH4096, which its JSON records)
    "sasrec-sports-rectools": ("baselines", [*SASREC, "-d", "sports", "-p", "loo",
                                             "--patience", "12", *RECTOOLS,
                                             "--name", "sasrec-loo-rectools"]),
    **{f"sasrec-{dataset}-rectools-batch4096": (
        "baselines", [*SASREC, "-d", dataset, "-p", "loo", "--preset", "tuned", "--patience",
                      "12", "--name", "sasrec-loo-rectools-batch4096"])
       for dataset in ("sports", "beauty")},
    # the tuned SASRec's own seed spread, the bar SEATER's seeds are held to: fit only (the
    # loo protocol without refit), each seed its own run folder, never a SEATER teacher
    **{f"sasrec-{dataset}-rectools-batch4096-s{seed}": (
        "baselines", ["seater", "train", "sasrec", "--reports-dir", "reports", "-d", dataset,
                      "-p", "loo", "--no-refit", "--preset", "tuned", "--patience", "12",
                      "--seed", str(seed), "--name", f"sasrec-loo-rectools-batch4096-s{seed}"])
       for dataset in ("sports", "beauty") for seed in (1, 2)},
    # the eSASRec study's SASRec+SS is 256 wide (1 block, 1 head, dropout 0.2, sampled
    # softmax; configs/paper/loo/s3_vanilla.yaml of blondered/transformer_benchmark), ours
    # 64: the tuned recipe at its width, fit only, tells width from recipe in the gap to
    # the published figure (a SEATER cannot build on it: it is 64 wide)
    **{f"sasrec-{dataset}-rectools-batch4096-d256": (
        "baselines", ["seater", "train", "sasrec", "--reports-dir", "reports", "-d", dataset,
                      "-p", "loo", "--no-refit", "--preset", "tuned", "--patience", "12",
                      "--d-model", "256", "--name", "sasrec-loo-rectools-batch4096-d256"])
       for dataset in ("sports", "beauty")},
    "sasrec-yelp-seater-tuned": ("baselines", [
        "seater", "train", "sasrec", "--reports-dir", "reports", "-d", "yelp", "-p", "seater",
        "--preset", "tuned", "--patience", "12", "--name", "sasrec-seater-tuned"]),
    "sasrec-yelp": ("baselines", [*SASREC, "-d", "yelp", "-p", "loo"]),
    "sasrec-yelp-seater": ("baselines", ["seater", "train", "sasrec", "--reports-dir",
                                         "reports", "-d", "yelp", "-p", "seater",
                                         "--patience", "20"]),
    # --- SEATER main results, on the plain SASRec of the same protocol (its tree, leaves
    # and encoder; named, so a run never picks whichever SASRec runs/ holds)
    # (loo: the early-stopped fit and the refit on train+validation, like SASRec's rows)
    "seater-beauty": ("main", [*SEATER, "-d", "beauty", "-p", "loo", "--refit",
                               "--sasrec-run", PLAIN["beauty"]]),
    "seater-sports": ("main", [*SEATER, "-d", "sports", "-p", "loo", "--refit",
                               "--sasrec-run", PLAIN["sports"]]),
    "seater-yelp-seater": ("main", [*SEATER, "-d", "yelp", "-p", "seater",
                                    "--sasrec-run", PLAIN["yelp"]]),
    # --- ablations on Beauty (paper Table 4/5, Fig. 4), under one fixed budget
    # (ABLATION_EPOCHS, same seed) so nine runs fit in a couple of CPU hours; each
    # compares with `ablate-base`, the main configuration under the same budget.
    **{name: ("ablations", [*SEATER, "-d", "beauty", "--epochs", str(ABLATION_EPOCHS),
                            "--sasrec-run", PLAIN["beauty"], *flags, "--name", name])
       for name, flags in {
        "ablate-base": [],
        "ablate-no-align": ["--lambda-align", "0"],
        "ablate-no-rank": ["--lambda-rank", "0"],
        "ablate-gen-only": ["--lambda-align", "0", "--lambda-rank", "0"],
        # not the paper: a cosine ranking score that cannot saturate (losses.ranking_loss)
        "ablate-rank-cosine": ["--set", "losses.rank_cosine_scale=5"],
        "ablate-kmeans-tree": ["--ids", "kmeans"],
        "ablate-random-tree": ["--ids", "random"],
        **{f"ablate-k{k}": ["-k", str(k)] for k in (4, 8, 32)},
    }.items()},
    # --- SEATER on the tuned SASRec (issue 14): its tree, leaves and encoder, under the
    # SASRec's own input conventions (no input scaling, visible padding); three seeds.
    # `-fit` stops before the refit: its row is the same run's fit row at half the cost
    # (the balanced twin of the semantic-title runs below, which are fit only)
    **{f"seater-{dataset}-tuned{tag}-s{seed}": ("tuned", [
        *SEATER, "-d", dataset, "-p", "loo", *refit, "--sasrec-run",
        TUNED[dataset], "--set", "model.scale_input=false",
        "--set", "model.mask_padded_keys=false", "--seed", str(seed),
        "--name", f"seater-loo-tuned{tag}-s{seed}"]) for dataset in ("beauty", "sports")
       for seed in (0, 1, 2) for tag, refit in (("", ["--refit"]), ("-fit", []))},
    # --- distillation from the tuned SASRec (training/seater/distill.py): its next-item
    # softmax folded onto the tree as soft child targets beside the hard path; fit only
    # (compare with the seater-<ds>-tuned-s* fit rows), and with --refit, where the
    # SASRec's refit teaches SEATER's (the SASRec run must have been trained with --refit).
    # `-top<m>`: the teacher's m most likely other items distilled along their paths too
    # (losses.distill_top), the nodes the beam ranks that the target's path never shows
    **{f"seater-{dataset}-tuned-distill{w}{top}{tag}-s{seed}": ("distill", [
        *SEATER, "-d", dataset, "-p", "loo", *refit, "--sasrec-run",
        TUNED[dataset], "--set", f"losses.lambda_distill={w}",
        *top_flags(top), "--set", f"train.epochs={DISTILL_EPOCHS[dataset]}", "--seed", str(seed),
        "--name", f"seater-loo-tuned-distill{w}{top}{tag}-s{seed}"])
       for dataset in ("beauty", "sports") for w in (1,) for top in ("", "-top4", "-top8")
       for seed in (0, 1, 2) for tag, refit in (("", []), ("-refit", ["--refit"]))},
    # --- Yelp under the seater protocol (no refit in it): SEATER on the tuned SASRec
    # (sasrec-yelp-seater-tuned first; its input conventions are adopted without flags),
    # plain and distilled, three seeds each, all on the SASRec's user split (split_seed 0)
    **{f"seater-yelp-tuned{tag}-s{seed}": ("tuned" if not tag else "distill", [
        *SEATER, "-d", "yelp", "-p", "seater", "--sasrec-run", TUNED["yelp"],
        *flags, *(["--set", f"train.epochs={DISTILL_EPOCHS['yelp']}"] if tag else []),
        "--seed", str(seed), "--name", f"seater-seater-tuned{tag}-s{seed}"])
       for seed in (0, 1, 2)
       for tag, flags in (("", []), ("-distill1", ["--set", "losses.lambda_distill=1"]),
                          *((f"-distill1{top}", ["--set", "losses.lambda_distill=1",
                                                  *top_flags(top)])
                            for top in ("-top4", "-top8")))},
    # --- the authors' configuration (docs/seater_reference.md), beside the default preset;
    # its tree from the tuned SASRec, like the default preset's arms
    **{f"seater-{dataset}-reference": ("reference", [
        *SEATER, "-d", dataset, "-p", "loo", "--refit", "--preset", "reference",
        "--sasrec-run", TUNED[dataset], "--name", "seater-loo-reference"])
       for dataset in ("beauty", "sports")},
    "seater-yelp-seater-reference": ("reference", [
        *SEATER, "-d", "yelp", "-p", "seater", "--preset", "reference-yelp",
        "--sasrec-run", TUNED["yelp"], "--name", "seater-seater-reference"]),
    # --- seeded ablation arms under both presets (issue 14 deliverable 2): arms of one
    # preset and seed see the same batches, negatives and dropout masks. Both presets take
    # their tree from the tuned SASRec (sasrec-beauty-rectools-batch4096 first): without
    # --sasrec-run the tree would come from whatever SASRec runs/ holds, or from one
    # trained on the spot at the ablation budget
    **{f"ablate-{preset}-{arm}-s{seed}": (
        "ablations-seeds", [*SEATER, "-d", "beauty", "--preset", preset, "--epochs",
                            str(ABLATION_EPOCHS), "--sasrec-run",
                            TUNED["beauty"], "--seed", str(seed),
                            *flags, "--name", f"ablate-{preset}-{arm}-s{seed}"])
       for preset in ("default", "reference") for seed in (0, 1, 2)
       for arm, flags in {"base": [], "no-align": ["--lambda-align", "0"],
                          "no-rank": ["--lambda-rank", "0"],
                          "gen-only": ["--lambda-align", "0", "--lambda-rank", "0"]}.items()},
    # --- semantic IDs measured like for like with LMIndexer (issue 15): the indexer on
    # titles alone and on title+categories, three seeds each, in the run folders
    # benchmarks/semantic_ids.py compares (Sports has no categories: title only)
    **{f"semantic-{dataset}-{slug}-s{seed}": ("semantic-ids", [
        "seater", "index", "semantic", "-d", dataset, "--fields", fields, "--seed", str(seed),
        "--name", f"semantic-{slug}-s{seed}", "--threads", "1"])
       for dataset, settings in (("beauty", ("title", "title+categories")),
                                 ("sports", ("title",)))
       for fields in settings for slug in (fields.replace("+", "-"),) for seed in (0, 1, 2)},
    # --- SEATER on title-only semantic IDs (issue 15): the same run as seater-<ds>-tuned-s*
    # (tuned SASRec's encoder and leaves, its conventions) but with the indexer's codes of
    # the same seed as the tree; fit only (loo without refit), paired with the tuned rows
    # by benchmarks/semantic_ids.py (needs semantic-<ds>-title-s<seed> run first)
    **{f"seater-{dataset}-semantic-title-s{seed}": ("semantic-seater", [
        *SEATER, "-d", dataset, "-p", "loo", "--ids", "semantic", "--codes",
        f"runs/{dataset}/semantic-title-s{seed}/codes.npy", "--sasrec-run",
        TUNED[dataset], "--seed", str(seed),
        "--name", f"seater-loo-semantic-title-s{seed}"])
       for dataset in ("beauty", "sports") for seed in (0, 1, 2)},
    # --- semantic IDs (issue 7): the indexer at its defaults (title+categories), and
    # SEATER on its codes
    "semantic-beauty": ("semantic", ["seater", "index", "semantic", "-d", "beauty", "--name",
                                     "semantic", "--threads", "1"]),
    "seater-beauty-semantic": ("semantic", [*SEATER, "-d", "beauty", "--ids", "semantic",
                                            "--codes", "runs/beauty/semantic/codes.npy",
                                            "--sasrec-run", PLAIN["beauty"],
                                            "--name", "seater-loo-semantic"]),
}


# --- Sports' distilled arms under a budget that does not bind: at 28 epochs every one
# peaked at epoch 26-28 (reports/quality/sports.json), so those rows may understate them.
# Same commands with train.epochs=45 and a run folder of their own (`-ep45`); they compare
# with each other and with their own teacher, not with the 28-epoch rows
LONG_EPOCHS = {"sports": 45}


def with_budget(cmd: list[str], epochs: int) -> list[str]:
    """A distilled arm's command under another epoch budget, in a run folder of its own."""
    out = [f"train.epochs={epochs}" if arg.startswith("train.epochs=") else arg for arg in cmd]
    at = out.index("--name") + 1
    stem, seed = out[at].rsplit("-s", 1)
    out[at] = f"{stem}-ep{epochs}-s{seed}"
    return out


EXPERIMENTS.update({
    f"seater-{dataset}-tuned-distill1-top4-ep{epochs}-s{seed}": (
        "distill", with_budget(EXPERIMENTS[f"seater-{dataset}-tuned-distill1-top4-s{seed}"][1],
                               epochs))
    for dataset, epochs in LONG_EPOCHS.items() for seed in (0, 1, 2)})


# --- refits alone (`--refit-epochs`): a seeded fit experiment's refit on train+validation
# for the best epoch its fit row in reports/quality/<dataset>.json reached (the test holds
# each count to that row), seeded afresh as a full --refit run's refit is: one training per
# refit instead of a fit and a refit. A SEATER one is taught by its SASRec run's refit.
FIT_BEST_EPOCH = {
    **{f"sasrec-beauty-rectools-batch4096-s{seed}": best for seed, best in ((1, 57), (2, 46))},
    **{f"seater-beauty-tuned-distill1-top4-s{seed}": best
       for seed, best in ((0, 35), (1, 29), (2, 40))},
    "seater-sports-tuned-distill1-top4-s0": 28,
}


def refit_alone(cmd: list[str], best_epoch: int) -> list[str]:
    """A fit experiment's command as its refit alone, in a run folder of its own."""
    out = [arg for arg in cmd if arg != "--no-refit"]
    at = out.index("--name") + 1
    out[at] += "-refit-alone"
    return [*out, "--refit", "--refit-epochs", str(best_epoch)]


EXPERIMENTS.update({f"{name}-refit-alone": (EXPERIMENTS[name][0],
                                            refit_alone(EXPERIMENTS[name][1], best))
                    for name, best in FIT_BEST_EPOCH.items()})

FIT = "fit/item_emb.npy"  # in a SASRec run folder: its finished fit, what SEATER reads


def outputs(cmd: list[str]) -> list[str]:
    """What a command leaves for others to build on: a SASRec run's finished fit (its item
    embeddings, which SEATER's tree, initialisation and teacher read) or the indexer's
    codes, as paths relative to the project. A refit alone has no fit: nothing."""
    dataset = option_value(cmd, "-d")
    if cmd[:3] == ["seater", "train", "sasrec"] and "--refit-epochs" not in cmd:
        # the run's own folder-name rule; imported here, so `--list` does not load torch
        from training.sasrec.pipeline import SASRecRun

        run = SASRecRun(protocol=option_value(cmd, "-p") or "loo",
                        name=option_value(cmd, "--name") or "")
        return [f"runs/{dataset}/{run.run_name}/{FIT}"]
    if cmd[:3] == ["seater", "index", "semantic"]:
        return [f"runs/{dataset}/{option_value(cmd, '--name')}/codes.npy"]
    return []


def inputs(cmd: list[str]) -> list[str]:
    """The files of ``outputs`` a command reads."""
    sasrec, codes = option_value(cmd, "--sasrec-run"), option_value(cmd, "--codes")
    return ([f"{sasrec}/{FIT}"] if sasrec else []) + ([codes] if codes else [])


def writers() -> dict[str, str]:
    """Each file of ``outputs`` -> the experiment that writes it."""
    return {path: name for name, (_, cmd) in EXPERIMENTS.items() for path in outputs(cmd)}


def missing_inputs(names: list[str], root: Path) -> list[str]:
    """One line per experiment that reads a file neither on disk nor written by an
    experiment before it in ``names``, naming the experiment that writes it: said before
    any run starts, instead of failing an hour into the list."""
    written_by = writers()
    planned: set[str] = set()
    problems = []
    for name in names:
        cmd = EXPERIMENTS[name][1]
        for path in inputs(cmd):
            if path in planned or (root / path).is_file():
                continue
            writer = written_by.get(path)
            fix = (f"run `python -m benchmarks.quality {writer}` first, or name it before "
                   f"{name}" if writer else "no experiment writes it")
            problems.append(f"{name} reads {path}, which does not exist yet: {fix}")
        planned.update(outputs(cmd))
    return problems


def run(name: str, extra: list[str]) -> int:
    group, cmd = EXPERIMENTS[name]
    cmd = [*cmd, *extra]
    LOGS.mkdir(parents=True, exist_ok=True)
    log = LOGS / f"{name}.log"
    print(f"[{group}] {name}: {shlex.join(cmd)}  (log: {log})", flush=True)
    start = time.monotonic()
    # the venv's console script when this runs as .venv/bin/python without activation
    beside = Path(sys.executable).parent / cmd[0]
    argv = [str(beside), *cmd[1:]] if beside.is_file() else cmd
    with log.open("a") as f:
        rc = subprocess.call(argv, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT,
                             env={**os.environ, "PYTHONUNBUFFERED": "1"})
    print(f"  -> exit {rc} after {time.monotonic() - start:.0f} s", flush=True)
    return rc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.quality", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="experiments to run")
    parser.add_argument("--group", help="run every experiment of a group")
    parser.add_argument("--list", action="store_true", help="list experiments and exit")
    parser.add_argument("--set", action="append", default=[],
                        help="extra `--set key=value` passed to every command")
    args = parser.parse_args(argv)
    if args.list:
        for name, (group, cmd) in EXPERIMENTS.items():
            print(f"{group:10s} {name:24s} {shlex.join(cmd)}")
        return 0
    names = list(args.names)
    if args.group:
        names += [n for n, (g, _) in EXPERIMENTS.items() if g == args.group]
    unknown = [n for n in names if n not in EXPERIMENTS]
    if unknown or not names:
        parser.error(f"unknown experiment(s) {unknown}; see --list" if unknown else
                     "name experiments or a --group")
    missing = missing_inputs(names, ROOT)
    if missing:
        parser.error("\n".join(missing))
    extra = [x for kv in args.set for x in ("--set", kv)]
    failed = [n for n in names if run(n, extra) != 0]
    if failed:
        print(f"failed: {failed}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
