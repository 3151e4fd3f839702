"""The semantic-ID run folders the comparison reads: which exist, which match, which to train.

Training an indexer is the expensive part of ``benchmarks.semantic_ids`` and the AMI
comparison the cheap one, so they meet only through run folders with fixed names,
``runs/<dataset>/semantic-<slug>-s<seed>`` (slug ``title`` or ``title-categories``), which
``seater index semantic ... --name`` writes as well as this module does. A folder is
used only when it holds a finished run (``report.json`` is written last) whose recorded
config is the one this benchmark would train; anything else is reported, and neither a
finished run of another config nor a run another process is training is overwritten.
"""

from __future__ import annotations

import json
import logging
import shlex
import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

from benchmarks.common import option_value
from training.config import build, flat_keys
from training.data import InteractionData
from training.lmindexer.config import SemanticRun, TextFields, fields_slug
from training.lmindexer.pipeline import run_semantic

log = logging.getLogger(__name__)

FIELDS: tuple[TextFields, ...] = ("title", "title+categories")
SLUG = {fields: fields_slug(fields) for fields in FIELDS}
QUICK_EPOCHS = 2
LEGACY_NAME = "semantic"  # the title+categories seed-0 run from before seeds were named
# keys that say where or how fast a run went, not what it learned, and d_text, which
# the pipeline always sets from the encoder (text.model_path names the encoder)
IGNORED = ("name", "out_dir", "train.threads", "train.progress", "model.d_text")
# resolved at run time when 0 (automatic): a recorded value then stands for the default
RESOLVED = ("model.levels",)

Status = Literal["finished", "missing", "unfinished", "mismatched"]


@dataclass(frozen=True)
class RunSpec:
    """One indexer run of the comparison: its text fields, seed and folder name."""

    fields: TextFields
    seed: int
    name: str


@dataclass(frozen=True)
class RunState:
    """What a run folder holds for a spec.

    Attributes:
        spec: the run asked for.
        folder: the folder that holds it (or would).
        status: finished (usable), missing (no folder), unfinished (no report.json:
            running now or interrupted), mismatched (finished under another config).
        reason: one line for the report when not finished.
        report: the run's report.json when finished.
    """

    spec: RunSpec
    folder: Path
    status: Status
    reason: str = ""
    report: dict[str, Any] | None = None


def parse_fields(text: str) -> list[TextFields]:
    """``title,title+categories`` -> the fields settings, in order, each known."""
    out = [f.strip() for f in text.split(",") if f.strip()]
    unknown = [f for f in out if f not in FIELDS]
    if unknown or not out:
        raise ValueError(f"--fields: unknown {unknown}; choose from {', '.join(FIELDS)}")
    return out  # type: ignore[return-value]


def run_name(fields: TextFields, seed: int, quick: bool = False) -> str:
    """Folder name of a run; quick smoke runs get their own, so they never shadow
    (or are mistaken for) full ones."""
    return f"semantic-{SLUG[fields]}-s{seed}" + ("-quick" if quick else "")


def specs(fields: list[TextFields], seeds: list[int], quick: bool) -> list[RunSpec]:
    return [RunSpec(f, s, run_name(f, s, quick)) for f in fields for s in seeds]


def expected_config(spec: RunSpec, dataset: str, runs_dir: str, threads: int, quick: bool,
                    overrides: list[str] | None = None) -> SemanticRun:
    """The config this benchmark trains a spec with: ``seater index semantic``'s, built
    the same way (defaults < flags < ``--set`` overrides), for the spec's fields and seed
    (and the epochs of a quick run)."""
    flags = {"dataset": dataset, "out_dir": runs_dir, "name": spec.name,
             "text.fields": spec.fields, "train.seed": spec.seed, "train.threads": threads,
             "train.progress": False, "train.epochs": QUICK_EPOCHS if quick else None}
    return build(SemanticRun, None, flags, overrides)


def config_mismatch(recorded: dict[str, Any], expected: SemanticRun) -> list[str]:
    """Dotted keys where a recorded run config differs from ``expected`` (what it learned
    from and how; where it was written does not count). A key the run did not record
    (an option added since) counts as its default, which is what the run did then."""
    want, got = flat_keys(asdict(expected)), flat_keys(recorded)
    default = flat_keys(asdict(SemanticRun()))
    diff = []
    for key in sorted(set(want) | set(got)):
        if key in IGNORED or (key in RESOLVED and not want.get(key)):
            continue
        if key not in got and want.get(key) == default.get(key):
            continue
        if want.get(key) != got.get(key):
            diff.append(f"{key}: recorded {got.get(key)!r}, expected {want.get(key)!r}")
    return diff


def candidates(spec: RunSpec, dataset_dir: Path, quick: bool) -> list[Path]:
    """Folders that may hold the run: its own name, and for title+categories seed 0 the
    folder ``seater index semantic`` writes by default (where the first run lives)."""
    out = [dataset_dir / spec.name]
    if spec.fields == "title+categories" and spec.seed == 0 and not quick:
        out.append(dataset_dir / LEGACY_NAME)
    return out


def inspect(folder: Path, spec: RunSpec, expected: SemanticRun) -> RunState:
    """The state of one folder for ``spec``."""
    if not folder.is_dir():
        return RunState(spec, folder, "missing", f"{folder} does not exist")
    needed = [n for n in ("report.json", "codes.npy", "indexer.pt") if not (folder / n).is_file()]
    if needed:
        return RunState(spec, folder, "unfinished",
                        f"{folder} has no {', '.join(needed)} (running now, or interrupted)")
    report = json.loads((folder / "report.json").read_text())
    diff = config_mismatch(report.get("config", {}), expected)
    if diff:
        return RunState(spec, folder, "mismatched",
                        f"{folder} was trained with another config: {'; '.join(diff)}")
    return RunState(spec, folder, "finished", report=report)


def find_run(spec: RunSpec, dataset_dir: Path, expected: SemanticRun, quick: bool
             ) -> RunState:
    """The first candidate folder with a matching finished run, else the state of the
    run's own folder (what is missing there)."""
    states = [inspect(f, spec, expected) for f in candidates(spec, dataset_dir, quick)]
    return next((s for s in states if s.status == "finished"), states[0])


def running_elsewhere(name: str, dataset: str, proc: Path = Path("/proc")) -> bool:
    """Whether a live ``seater index semantic`` process on this machine is writing the
    run ``name`` of ``dataset`` (a background job): its folder is unfinished because it
    is being trained, and training it here too would overwrite it mid-run."""
    for entry in proc.glob("[0-9]*"):
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue  # the process ended meanwhile
        if "index" in argv and "semantic" in argv and option_value(argv, "--name") == name and (
                option_value(argv, "-d") or option_value(argv, "--dataset")) == dataset:
            return True
    return False


def share_embeddings(target: Path, siblings: list[Path]) -> Path | None:
    """Copy a sibling run's cached MiniLM vectors (same fields, another seed) into
    ``target`` before it trains: encoding is most of a run's time and the seed does not
    change it. The cache checks the texts' hash and the encoder itself, so a copy that
    does not fit is simply recomputed."""
    if (target / "text_emb.npy").is_file():
        return None
    for sib in siblings:
        if (sib / "text_emb.npy").is_file() and (sib / "text_emb.json").is_file():
            target.mkdir(parents=True, exist_ok=True)
            for name in ("text_emb.npy", "text_emb.json"):
                shutil.copyfile(sib / name, target / name)
            log.info("text embeddings for %s copied from %s", target, sib)
            return sib
    return None


def train_run(state: RunState, expected: SemanticRun, data: InteractionData,
              siblings: list[Path], command: str) -> RunState:
    """Train a missing or unfinished run through the pipeline (``seater index semantic``
    with the same config) and return its finished state; a mismatched finished run is
    left alone (an error names it)."""
    if state.status == "finished":
        return state
    if state.status == "mismatched":
        raise SystemExit(f"{state.reason}: move it away (or pass another --runs) to train "
                         f"{state.spec.name} here")
    if running_elsewhere(state.spec.name, expected.dataset):
        log.info("%s is being trained by another process: left to it", state.folder)
        return replace(state, reason=f"{state.reason}; another process is training it now")
    folder = Path(expected.out_dir) / data.name / state.spec.name
    share_embeddings(folder, [s for s in siblings if s != folder])
    log.info("training %s (%s, seed %d)", folder, state.spec.fields, state.spec.seed)
    run_semantic(expected, data=data, command=command)
    return inspect(folder, state.spec, expected)


def training_command(spec: RunSpec, dataset: str, quick: bool,
                     overrides: list[str] | None = None, runs_dir: str = "runs") -> str:
    """The ``seater`` command that trains a spec by hand (same folder, same config)."""
    extra = f" --epochs {QUICK_EPOCHS}" if quick else ""
    extra += f" --out {shlex.quote(runs_dir)}" if runs_dir != "runs" else ""
    sets = "".join(f" --set {shlex.quote(kv)}" for kv in overrides or [])
    return (f"seater index semantic -d {shlex.quote(dataset)} --fields {spec.fields} "
            f"--seed {spec.seed} --name {spec.name} --threads 1{extra}{sets}")
