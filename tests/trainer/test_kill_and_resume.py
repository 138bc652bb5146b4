"""A training process SIGKILLed after a checkpoint and resumed with `resume_from_checkpoint=True` ends exactly where
an uninterrupted run does: every trainable weight bit-identical, the same logged values (real processes, CPU, one
thread; tests/testing_utils/resume_worker.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

WORKER = Path(__file__).resolve().parents[1] / "testing_utils" / "resume_worker.py"


def run_worker(out_dir: Path, *args: str) -> None:
    result = subprocess.run([sys.executable, str(WORKER), str(out_dir), *args], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.integration
def test_sigkill_after_a_checkpoint_then_resume_is_bit_identical(tmp_path):
    run_worker(tmp_path / "straight")

    killed_dir = tmp_path / "killed"
    process = subprocess.Popen(
        [sys.executable, str(WORKER), str(killed_dir), "--pause_after_save", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300
        line = ""
        while "saved checkpoint-3" not in line and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line and process.poll() is not None:
                break
        assert "saved checkpoint-3" in line, "the worker never reached its third checkpoint"
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == -signal.SIGKILL
    assert not (killed_dir / "final.pt").exists() and not (killed_dir / "checkpoint-4").exists()

    # Other initial weights: only loading checkpoint-3 can bring this process to the uninterrupted run's end.
    run_worker(killed_dir, "--resume", "--init_seed", "1")
    straight = torch.load(tmp_path / "straight" / "final.pt")
    resumed = torch.load(killed_dir / "final.pt")
    assert straight["weights"].keys() == resumed["weights"].keys()
    assert any(name.startswith("retriever.") for name in straight["weights"])
    for name, value in straight["weights"].items():
        assert torch.equal(resumed["weights"][name], value), name
    # The log: steps 1-3 come back with checkpoint-3's trainer state, steps 4-6 are logged again; all six equal the
    # uninterrupted run's, value for value.
    logged = {entry["step"]: entry for entry in straight["history"] if "loss" in entry}
    resumed_logged = {entry["step"]: entry for entry in resumed["history"] if "loss" in entry}
    assert sorted(resumed_logged) == sorted(logged) == [1, 2, 3, 4, 5, 6]
    for step, entry in resumed_logged.items():
        assert entry == logged[step], step
