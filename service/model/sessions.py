"""ONNX Runtime sessions as every engine opens them: providers, threads, graph checks.

Shared by the SEATER engine (:mod:`service.model.seater`) and the dense baseline
(:mod:`service.model.dense`), so both are measured under the same runtime settings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path

import onnxruntime as ort

from service.model.bundle import BundleError
from service.settings import Settings

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
_OPT_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


@dataclass(frozen=True)
class RuntimeOptions:
    """How sessions are built: the ONNX Runtime part of :class:`Settings`, under the same
    names (defaults and documentation live there). ``intra_op_threads=0`` is ONNX
    Runtime's default (one per physical core)."""

    providers: str  # auto | cpu | cuda
    intra_op_threads: int
    inter_op_threads: int
    graph_optimization: str
    allow_spinning: bool
    encoder_intra_op_threads: int
    small_step_rows: int

    @classmethod
    def from_settings(cls, settings: Settings) -> RuntimeOptions:
        return cls(**{f.name: getattr(settings, f.name) for f in fields(cls)})

    def for_encoder(self) -> RuntimeOptions:
        """The SEATER encoder's session: its own thread count, never spinning.

        The encoder runs once per request over at most ``max_history`` tokens, too little
        to split; and each session has its own pool, so a second spinning pool fights the
        decoder's for the cores.
        """
        return replace(self, intra_op_threads=self.encoder_intra_op_threads,
                       allow_spinning=False)

    def small_steps_apart(self) -> bool:
        """Whether decoder steps under ``small_step_rows`` rows get a one-thread session.

        A step of a few dozen rows (B=1, or the first steps of a batch) is too small to
        split across threads: the pool's hand-offs cost more than they save, while a
        step of thousands of rows gains from every core. Two sessions over the same graph
        give each step its best.
        """
        return self.intra_op_threads != 1 and self.small_step_rows > 0

    def single_threaded(self) -> RuntimeOptions:
        return replace(self, intra_op_threads=1, allow_spinning=False)


def choose_providers(choice: str, available: Sequence[str]) -> list[str]:
    """CUDA (with CPU fallback for unsupported ops) when asked or auto-detected, else CPU."""
    if choice == "cpu":
        return [CPU]
    if CUDA in available:
        return [CUDA, CPU]
    if choice == "cuda":
        raise BundleError(f"SEATER_PROVIDERS=cuda but onnxruntime offers only {list(available)}")
    return [CPU]


def session_options(opts: RuntimeOptions) -> ort.SessionOptions:
    so = ort.SessionOptions()
    so.graph_optimization_level = _OPT_LEVELS[opts.graph_optimization]
    so.intra_op_num_threads = opts.intra_op_threads
    so.inter_op_num_threads = opts.inter_op_threads
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    spin = "1" if opts.allow_spinning else "0"
    so.add_session_config_entry("session.intra_op.allow_spinning", spin)
    return so


def open_session(
    path: Path, opts: RuntimeOptions, inputs: set[str], outputs: Sequence[str]
) -> ort.InferenceSession:
    """A session for the graph at ``path`` whose names match the bundle contract."""
    providers = choose_providers(opts.providers, ort.get_available_providers())
    try:
        session = ort.InferenceSession(str(path), session_options(opts), providers=providers)
    except Exception as exc:  # onnxruntime raises its own exception types
        raise BundleError(f"onnxruntime cannot load {path.name}: {exc}") from exc
    got_in = {i.name for i in session.get_inputs()}
    got_out = {o.name for o in session.get_outputs()}
    if got_in != inputs or not set(outputs) <= got_out:
        raise BundleError(
            f"{path.name} does not match the contract: inputs {sorted(got_in)} (want "
            f"{sorted(inputs)}), outputs {sorted(got_out)} (want {list(outputs)})"
        )
    return session


def device_of(session: ort.InferenceSession) -> str:
    return "cuda" if CUDA in session.get_providers() else "cpu"
