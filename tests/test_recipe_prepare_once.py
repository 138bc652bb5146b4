"""The recipe's index and pre-retrieval run once per filesystem across nodes (`run_once_per_filesystem`), with the
barriers of `TrainingArguments.main_process_first` simulated by threads: 2 nodes x 2 processes."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import dataclass

import pytest

from jmlr_hf.scripts.train import run_once_per_filesystem

NODES, PER_NODE = 2, 2


@dataclass
class FakeArgs:
    """What `run_once_per_filesystem` reads of `TrainingArguments`, with `main_process_first`'s barrier semantics:
    the main process (global, or of its node with `local=True`) runs the block first, the others after it."""

    process_index: int
    local_process_index: int
    node: int
    barriers: dict

    @contextlib.contextmanager
    def main_process_first(self, local: bool = True, desc: str = ""):
        barrier = self.barriers[f"node{self.node}"] if local else self.barriers["all"]
        is_main = (self.local_process_index if local else self.process_index) == 0
        if not is_main:
            barrier.wait()
        yield
        if is_main:
            barrier.wait()


@pytest.mark.parametrize("shared", [True, False], ids=["shared filesystem", "one filesystem per node"])
def test_prepared_once_per_filesystem(tmp_path, shared):
    barriers = {"all": threading.Barrier(NODES * PER_NODE)}
    barriers |= {f"node{node}": threading.Barrier(PER_NODE) for node in range(NODES)}
    builds: list[tuple[int, str]] = []
    running: dict[str, int] = {}
    lock = threading.Lock()
    errors: list[BaseException] = []

    def folder(node: int) -> str:
        return str(tmp_path / ("shared" if shared else f"node{node}"))

    def process(rank: int) -> None:
        node, local = divmod(rank, PER_NODE)
        args = FakeArgs(rank, local, node, barriers)
        marker = os.path.join(folder(node), "prepared", "eval")

        def build() -> None:
            with lock:
                running[folder(node)] = running.get(folder(node), 0) + 1
                assert running[folder(node)] == 1, "two processes build into one folder at once"
                builds.append((rank, folder(node)))
            time.sleep(0.05)
            os.makedirs(marker)
            with lock:
                running[folder(node)] -= 1

        try:
            run_once_per_filesystem(args, marker, build, "test")
            assert os.path.exists(marker)  # every process finds the result when it goes on
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=process, args=(rank,)) for rank in range(NODES * PER_NODE)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    if shared:
        assert builds == [(0, folder(0))]  # once, by the global main process
    else:
        assert sorted(builds) == [(0, folder(0)), (PER_NODE, folder(1))]  # once per node, by its local main
