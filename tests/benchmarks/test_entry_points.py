"""Every benchmark is a module whose import does nothing: ``python -m benchmarks.<name>``."""

from __future__ import annotations

import importlib
import os
import sys

import pytest

MODULES = ["ablations", "bundle_parity", "engine", "indexer", "quality", "scale",
           "semantic_ids", "service"]
# what benchmarks once set at import (libraries they import may set their own, e.g. KMP_*)
OWN_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "HF_HUB_OFFLINE")


@pytest.mark.parametrize("name", MODULES)
def test_import_reads_no_argv_and_leaves_the_environment_alone(name, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["benchmark", "--not-an-option"])
    for var in OWN_VARS:
        monkeypatch.delenv(var, raising=False)
    module = importlib.reload(importlib.import_module(f"benchmarks.{name}"))
    assert [v for v in OWN_VARS if v in os.environ] == []
    assert str(module.__file__).endswith(f"benchmarks/{name}.py")


@pytest.mark.parametrize("name", MODULES)
def test_main_parses_the_argv_it_is_given(name, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["benchmark", "--not-an-option"])  # must not be read
    module = importlib.import_module(f"benchmarks.{name}")
    with pytest.raises(SystemExit) as stop:
        module.main(["--help"])
    assert stop.value.code == 0
    assert f"python -m benchmarks.{name}" in capsys.readouterr().out
