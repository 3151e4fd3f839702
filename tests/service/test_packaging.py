"""The service package stays servable without torch/training, and its CLI entry works."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from service.__main__ import parse_args, settings_from_args

ROOT = Path(__file__).resolve().parents[2]


def test_service_imports_neither_torch_nor_training():
    code = (
        "import sys, service.app, service.model.load, service.__main__\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'torch', 'training'})\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr


def test_service_source_has_no_torch_or_training_import():
    for path in (ROOT / "service").rglob("*.py"):
        text = path.read_text()
        assert "import torch" not in text and "from training" not in text, path
        assert "import training" not in text, path


def test_cli_arguments_override_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SEATER_PORT", "9001")
    monkeypatch.setenv("SEATER_HOST", "10.0.0.1")
    settings = settings_from_args(parse_args(["--artifacts", str(tmp_path), "--port", "8123"]))
    assert settings.artifacts == tmp_path and settings.port == 8123
    assert settings.host == "10.0.0.1"  # not given on the command line: env wins


def test_python_dash_m_service_help_runs():
    result = subprocess.run(
        [sys.executable, "-m", "service", "--help"], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 0 and "--artifacts" in result.stdout
