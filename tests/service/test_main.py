"""``python -m service``: a user's mistake is one ``error:`` line and exit 2 before any work
(bad flags or settings, a bundle with a missing or corrupt file, a folder of bundles);
no bundle yet is not a mistake: the real server runs live, not ready, until one appears."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from service.__main__ import main
from tests.service.bundles import copy_bundle, tamper
from tests.service.server import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]


def refused(capsys, argv: list[str]) -> str:
    """The one stderr line of a run that must stop with exit status 2."""
    with pytest.raises(SystemExit) as stop:
        main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.mark.parametrize("port", ["99999", "0", "-1", "65536", "http"])
def test_a_bad_port_is_one_error_line_before_anything_is_read(capsys, tmp_path, port):
    bad = tamper(tmp_path, "manifest.json")  # a broken bundle too: the port is refused first
    line = refused(capsys, ["--artifacts", str(bad), "--port", port])
    assert "--port" in line and "Traceback" not in line


def test_a_bad_setting_from_the_environment_names_the_variable(capsys, monkeypatch):
    monkeypatch.setenv("SEATER_RELOAD_ENABLED", "true")
    monkeypatch.delenv("SEATER_RELOAD_TOKEN", raising=False)
    assert "SEATER_RELOAD_TOKEN must be set" in refused(capsys, ["--port", "8000"])
    monkeypatch.setenv("SEATER_RELOAD_ENABLED", "false")
    monkeypatch.setenv("SEATER_MAX_BATCH_SIZE", "0")
    assert "SEATER_MAX_BATCH_SIZE '0'" in refused(capsys, [])


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        (lambda b: tamper(b, "decoder.onnx"), "checksum mismatch for decoder.onnx"),
        (lambda b: (b / "embeddings.npy").unlink(), "embeddings.npy is listed in manifest.json "
                                                    "but missing"),
        (lambda b: (b / "manifest.json").write_text("{"), "manifest.json is not readable JSON"),
    ],
)
def test_a_damaged_bundle_names_the_file_and_the_fix(capsys, tiny_bundle, tmp_path, damage,
                                                     named):
    bundle = copy_bundle(tiny_bundle.path, tmp_path / "v1")
    damage(bundle)
    line = refused(capsys, ["--artifacts", str(bundle), "--port", "8000"])
    assert named in line and "re-export it (`seater export --run RUN --out DIR`)" in line


def test_a_folder_of_bundles_is_refused_with_the_one_to_pass(capsys, tiny_bundle, tmp_path):
    copy_bundle(tiny_bundle.path, tmp_path / "tiny-v1")
    (tmp_path / "current").symlink_to("tiny-v1")
    line = refused(capsys, ["--artifacts", str(tmp_path)])
    assert "holds 2: current, tiny-v1" in line and f"--artifacts {tmp_path / 'current'}" in line


def test_the_real_entry_point_answers_a_corrupt_bundle_with_exit_2_and_no_traceback(
    tiny_bundle, tmp_path
):
    bundle = tamper(copy_bundle(tiny_bundle.path, tmp_path / "v1"), "encoder.onnx")
    run = subprocess.run(
        [sys.executable, "-m", "service", "--artifacts", str(bundle), "--port", str(free_port())],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.startswith("error: bundle ") and run.stderr.count("\n") == 1, run.stderr
    assert "checksum mismatch for encoder.onnx" in run.stderr


def wait_for(url: str, status: int, seconds: float = 30.0) -> httpx.Response:
    return wait_until(lambda: (r := httpx.get(url, timeout=2)).status_code == status and r,
                      seconds, f"{url} to answer {status}")


def test_served_before_the_first_export_it_waits_live_then_serves_the_pointer(
    tiny_bundle, tmp_path
):
    """The container's case: ``artifacts/current`` does not exist when the service starts."""
    root = tmp_path / "artifacts"
    root.mkdir()
    port = free_port()
    env = {**os.environ, "SEATER_ARTIFACTS_POLL_S": "0.1", "SEATER_PROVIDERS": "cpu",
           "SEATER_LOG_JSON": "true", "REDIS_URL": ""}  # fmt: skip
    server = subprocess.Popen(
        [sys.executable, "-m", "service", "--artifacts", str(root / "current"), "--port",
         str(port)], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        live = wait_for(f"{url}/v2/health/live", 200)
        not_ready = httpx.get(f"{url}/v2/health/ready")
        copy_bundle(tiny_bundle.path, root / "tiny-v1")
        (root / "current").symlink_to("tiny-v1")  # what `seater export` maintains
        ready = wait_for(f"{url}/v2/health/ready", 200)
    finally:
        server.terminate()
        _, err = server.communicate(timeout=30)
    assert live.json() == {"live": True}
    assert not_ready.status_code == 503 and not_ready.json()["ready"] is False
    # every worker (one per core by default) found the pointer's bundle
    workers = ready.json().get("workers", 1)
    assert ready.json() == {"ready": True, "model_version": "tiny-v1",
                            **({"workers": workers, "workers_serving": workers}
                               if workers > 1 else {})}
    logs = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    waiting = next(x for x in logs if x["msg"].startswith("no bundle at"))
    assert str(root / "current") in waiting["msg"] and waiting["level"] == "WARNING"
    assert any(f"{root / 'current'} -> {root / 'tiny-v1'}" in x["msg"] for x in logs)


@pytest.mark.parametrize("workers", ["-1", "257", "many"])
def test_a_bad_worker_count_is_one_error_line(capsys, workers):
    line = refused(capsys, ["--workers", workers])
    assert "--workers" in line and "Traceback" not in line
