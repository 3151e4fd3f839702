"""Reading a checkpoint: tensors and plain data only, so loading a file cannot run code.

Every ``model.pt`` / ``last.pt`` / ``best.pt`` / ``indexer.pt`` this project writes holds
state dicts, numbers, strings, lists and dicts (configs are recorded as plain data), which
``torch.load(weights_only=True)`` reads; anything else in a file is refused with a message
instead of being unpickled.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch


class CheckpointError(ValueError):
    """A checkpoint holds something other than tensors and plain data, or is unreadable."""


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"{path} holds objects other than tensors and plain data ({first[:200]}); it is "
            "not loaded because unpickling them could run code. Use a checkpoint written by "
            "this project's training commands") from None
    except (RuntimeError, EOFError, OSError) as e:
        raise CheckpointError(f"{path} cannot be read as a checkpoint: {e}") from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path} is not a checkpoint of this project (a "
                              f"{type(ckpt).__name__}, not a mapping)")
    return ckpt
