"""Start a test worker in two CPU processes, as a GPU user runs DDP: `accelerate launch --multi_gpu --num_processes 2`
starts them through torchrun, and with no GPU they talk over gloo. (`accelerate launch --cpu` takes accelerate's
single-process launcher: it would run one process.)"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_two_processes(worker: Path, *worker_args: str, timeout: int = 240) -> subprocess.CompletedProcess:
    """Run `worker` with `worker_args` in two processes; a hang fails the test at `timeout` instead of blocking the
    suite, and a failure shows the end of the workers' stderr."""
    accelerate = Path(sys.executable).with_name("accelerate")
    command = [
        str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
        str(worker), *worker_args,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    env.pop("PYTHONPATH", None)
    try:
        run = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"the 2-process run did not finish in {timeout} s (a hang?): {str(err.stderr)[-3000:]}")
    assert run.returncode == 0, run.stderr[-5000:]
    return run
