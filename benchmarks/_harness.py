"""What every benchmark here shares: variants timed side by side (A B A B ...), medians, spreads, paired ratios, and
the peak memory a call adds.

These machines are noisy (other jobs share the cores), so absolute times move from run to run; ratios of variants
timed in alternation, pair by pair, move much less. Each benchmark prints its figures; `docs/PERFORMANCE.md` holds
the ones measured for the project.
"""

from __future__ import annotations

import ctypes
import os
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class Timing:
    """The times (seconds) of one variant, and what its last call returned."""

    seconds: list[float] = field(default_factory=list)
    result: Any = None

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    def describe(self, unit: str = "s") -> str:
        return f"median {self.median:.3f} {unit} (min {min(self.seconds):.3f}, max {max(self.seconds):.3f})"


def interleave(variants: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1) -> dict[str, Timing]:
    """Run every variant `warmup` times, then `repeats` rounds of each in turn; time each call."""
    timings = {name: Timing() for name in variants}
    for _ in range(warmup):
        for name, fn in variants.items():
            timings[name].result = fn()
    for _ in range(repeats):
        for name, fn in variants.items():
            start = time.perf_counter()
            timings[name].result = fn()
            timings[name].seconds.append(time.perf_counter() - start)
    return timings


def paired_ratios(numerator: Timing, denominator: Timing) -> list[float]:
    """`numerator / denominator` round by round (the two were timed next to each other)."""
    return [a / b for a, b in zip(numerator.seconds, denominator.seconds, strict=True)]


def describe_ratios(ratios: list[float]) -> str:
    return f"median {statistics.median(ratios):.2f}x (min {min(ratios):.2f}, max {max(ratios):.2f})"


def _resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@contextmanager
def large_allocations_mapped() -> Iterator[None]:
    """Inside the block, the C allocator maps every allocation of 64 KiB or more on its own and unmaps it on free,
    so the process's resident size follows the tensors alive (glibc otherwise raises its mmap threshold after the
    first large free and keeps freed memory in its heap). Slow (a page fault per page): for measuring memory only.
    Afterwards, the thresholds glibc's own adjustment ends at (32 MiB to map, twice that to trim)."""
    libc = ctypes.CDLL("libc.so.6")
    m_trim_threshold, m_mmap_threshold = -1, -3  # mallopt's parameter numbers (malloc.h)
    libc.mallopt(m_mmap_threshold, 64 * 1024)
    libc.mallopt(m_trim_threshold, 64 * 1024)
    libc.malloc_trim(0)  # hand back what the heap holds free: reusing it would not show in the resident size
    try:
        yield
    finally:
        libc.mallopt(m_mmap_threshold, 32 * 2**20)
        libc.mallopt(m_trim_threshold, 64 * 2**20)


def peak_extra_memory(fn: Callable[[], Any], device: torch.device) -> int:
    """Bytes that one call of `fn` adds at its peak, over what was in use before it.

    On a GPU, the CUDA allocator's peak; on a CPU, the process's resident memory sampled every millisecond by a
    thread, with large allocations mapped and unmapped one by one (`large_allocations_mapped`).
    """
    if device.type == "cpu":
        with large_allocations_mapped():
            return _peak_resident_growth(fn)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    raise ValueError(f"no memory measurement for device {device}")


def _peak_resident_growth(fn: Callable[[], Any]) -> int:
    before = _resident_bytes()
    peak = before
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _resident_bytes())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        fn()
    finally:
        done.set()
        sampler.join()
    return max(peak, _resident_bytes()) - before


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def machine() -> str:
    """One line on where the figures come from."""
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()} (CUDA {torch.version.cuda}), torch {torch.__version__}"
    return f"CPU, {torch.get_num_threads()} threads ({os.cpu_count()} cores), torch {torch.__version__}"


def demo_retriever_model() -> tuple[Any, Any]:
    """The demo's JMLR model (SmolLM2-135M-Instruct + all-MiniLM-L6-v2, N = 8, S = 4, K = 2, documents cut at 128
    tokens) in eval mode, and the retriever's tokenizer: what the retrieval benchmarks encode with."""
    from transformers import AutoTokenizer

    from jmlr_hf.models import JMLRForCausalLM
    from jmlr_hf.utils.demo_models import minilm_path, smollm2_path

    model = JMLRForCausalLM.from_components(
        str(smollm2_path()),
        str(minilm_path()),
        num_candidates=8,
        num_sampled=4,
        num_context_documents=2,
        max_document_length=128,
    )
    return model.eval(), AutoTokenizer.from_pretrained(minilm_path())
