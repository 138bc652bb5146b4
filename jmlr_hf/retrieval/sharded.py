"""Sharded corpus encoding: under `accelerate launch` / torchrun, every process encodes its own share of the corpus and
the main process assembles the one index a single process would have built.

Encoding is what an index build costs (MedQuAD's 30k passages take minutes on a CPU, PubMed's 23.9M days on one GPU),
and it divides among processes with no loss; the faiss index is then assembled, trained (IVF) and written by the main
process alone, from the same vectors in the same order, so the folder is the one a one-process build writes.

Who encodes what:

* an in-memory `Dataset` (every process has the same rows): process `r` encodes the contiguous block
  [`shard_bounds`]`(n, world_size, r)`, the first `n % world_size` processes one row more than the others (a process may
  have none, when there are fewer rows than processes);
* a stream (rows that no process holds at once): every process reads the stream, `chunk_size` rows at a time, in
  rounds of `world_size` chunks; the `j`-th chunk of a round is process `j`'s. A process keeps only its own chunk;
  the main process also writes every chunk's documents to the store as it reads them, so no process holds the corpus.

The vectors travel over `torch.distributed` (gloo on CPU, NCCL on GPU, on the device its backend needs), never through
files: the nodes of a multi-node job need not share a filesystem. The main process receives them process by process,
at most `_TRANSFER_ROWS` rows (or one stream chunk) at a time, so no process holds more than that of another's vectors.

Failures: before any vector is sent every process reports its state (rows, dimension, the error it met) to all the
others, so that an encoder failing on one process raises on every process (there its own error, elsewhere a
`RuntimeError` naming it), instead of leaving the others blocked in a collective until the process group's timeout.
The same holds for checks only the main process can make (its output folder, its faiss).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

if TYPE_CHECKING:
    import torch
    from datasets import Dataset

T = TypeVar("T")

# Rows of another process's vectors the main process receives at once (24 MiB of 768-d float32 vectors).
_TRANSFER_ROWS = 8192


@dataclass(frozen=True)
class ShardGroup:
    """The processes that share an index build: this one's `rank` among `world_size`, and the `device` the process
    group's backend exchanges tensors on (CUDA for NCCL, CPU for gloo)."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """The process that assembles, writes and returns the index."""
        return self.rank == 0

    def all_gather(self, value: Any) -> list[Any]:
        """`value` of every process (a small picklable object), in rank order, on every process."""
        import torch.distributed as dist

        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, value)
        return gathered

    def broadcast(self, value: Any, src: int = 0) -> Any:
        """Process `src`'s `value` (a small picklable object), on every process."""
        import torch.distributed as dist

        message = [value]
        dist.broadcast_object_list(message, src=src)
        return message[0]


def process_group(distributed: bool | None = None) -> ShardGroup | None:
    """The processes to share an index build with, or `None` to build in this process alone.

    `distributed=None` (what `jmlr index` and the training recipe pass) shares it when this process is one of several: a
    `torch.distributed` process group of more than one process is initialised, or the launcher's environment says
    there are several (`WORLD_SIZE` > 1, as `accelerate launch` and torchrun set it), in which case the group is
    initialised here through accelerate's `PartialState` (gloo on CPU, NCCL on GPU). `False` builds alone (for code
    that runs on one process of a group); `True` requires a group of several processes.
    """
    if distributed is False:
        return None
    import torch
    import torch.distributed as dist

    if dist.is_available() and not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from accelerate import PartialState

        PartialState()
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        if distributed:
            raise RuntimeError(
                "distributed=True needs several processes: run under `accelerate launch --num_processes N` or "
                "torchrun, or pass distributed=None to build in this process alone"
            )
        return None
    backend = str(dist.get_backend()).lower()
    device = torch.device("cuda", torch.cuda.current_device()) if "nccl" in backend else torch.device("cpu")
    return ShardGroup(dist.get_rank(), dist.get_world_size(), device)


def close_process_group(group: ShardGroup | None) -> None:
    """End a process group that `process_group` started for a command of its own (`jmlr index`): wait for every
    process, then destroy the group. A process that exits with the group alive can abort in gloo's teardown
    ("terminate called without an active exception") while another still uses it. No-op without a group."""
    import torch.distributed as dist

    if group is not None and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def shard_bounds(num_rows: int, world_size: int, rank: int) -> tuple[int, int]:
    """`(start, stop)` of process `rank`'s contiguous block of `num_rows` rows: the first `num_rows % world_size`
    processes get one row more than the others (`np.array_split`'s rule), so blocks differ by at most one row."""
    base, extra = divmod(num_rows, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def ids_digest(ids: Iterable[Any], digest: Any = None) -> Any:
    """A blake2b digest of `ids` in order (of each id's type and value): two processes that read different rows,
    or the same rows in another order, disagree on it. Pass `digest` to go on updating an earlier one."""
    digest = digest if digest is not None else hashlib.blake2b(digest_size=16)
    for doc_id in ids:
        digest.update(repr(doc_id).encode("utf-8"))
        digest.update(b"\x00")
    return digest


def run_on_main(group: ShardGroup, fn: Callable[[], T]) -> T | None:
    """`fn()` on the main process (its result there, `None` elsewhere). If it raises, every process raises: the main
    its own error, the others a `RuntimeError` naming it, so that no process waits in a collective for the others."""
    result, error = None, None
    if group.is_main:
        try:
            result = fn()
        except Exception as err:  # noqa: BLE001 - re-raised below, after the others have been told
            error = err
    _agree(group, {}, error, "checking the index settings")
    return result


def encode_blocks(
    dataset: Dataset, encode_rows: Callable[[Dataset], Iterable[np.ndarray]], group: ShardGroup
) -> Iterator[np.ndarray] | None:
    """Encode this process's block of `dataset`; on the main process, return the vectors of every row in row
    order (an iterator of arrays of at most `_TRANSFER_ROWS` rows from the other processes); elsewhere, send this
    block's vectors to the main process and return `None`.

    Every process must pass the same rows in the same order (checked: the number of rows and a digest of the ids).
    `encode_rows(block)` yields the normalised vectors of `block`'s rows in order (the index's own encoding loop).
    """
    from ._corpus import iter_column

    num_rows = len(dataset)
    corpora = group.all_gather((num_rows, ids_digest(iter_column(dataset, "id")).hexdigest()))
    for rank, corpus in enumerate(corpora):
        if corpus != corpora[0]:
            raise ValueError(
                f"process {rank} indexes another corpus than process 0 ({corpus[0]} rows against {corpora[0][0]}, or "
                "other ids or another order): every process must pass the same documents in the same order"
            )
    start, stop = shard_bounds(num_rows, group.world_size, group.rank)
    vectors, error = None, None
    try:
        # `select([])` for a process without rows: `datasets` refuses an empty range that starts past the end.
        block = dataset.select(range(start, stop) if stop > start else [])
        vectors = _collect(encode_rows(block), stop - start)
    except Exception as err:  # noqa: BLE001 - re-raised by `_agree` once every process knows
        error = err
    states = _agree(
        group,
        {"rows": stop - start, "dim": None if vectors is None else vectors.shape[1]},
        error,
        f"encoding its {stop - start} rows of the corpus (from row {start})",
    )
    dim = _common_dim(states)
    if not group.is_main:
        if vectors is not None:
            for offset in range(0, len(vectors), _TRANSFER_ROWS):
                _send(group, vectors[offset : offset + _TRANSFER_ROWS])
        return None
    return _receive_blocks(group, vectors, [state["rows"] for state in states], dim)


def encode_stream(
    chunks: Iterable[Dataset],
    encode_chunk: Callable[[Dataset], np.ndarray],
    group: ShardGroup,
    on_chunk: Callable[[Dataset], None] | None = None,
) -> Iterator[np.ndarray]:
    """Encode this process's chunks of a stream (the `j`-th chunk of each round of `world_size` chunks is process
    `j`'s); on the main process, yield the vectors of every chunk in stream order, one array per chunk (as a
    one-process build sees them, so that an IVF index trains on the same first chunks), and call `on_chunk` on every
    chunk as it is read (e.g. to write its documents). Elsewhere, send this process's vectors to the main process and
    yield nothing; run the generator to its end on every process.

    Every process must read the same stream (checked in every round: a digest of the ids read). An empty stream is a
    `ValueError` on every process.
    """
    iterator = iter(chunks)
    total_chunks = 0
    first_row = 0
    while True:
        own: Dataset | None = None
        count, rows_read, digest, error = 0, 0, ids_digest(()), None
        vectors = None
        try:
            for position in range(group.world_size):
                chunk = next(iterator, None)
                if chunk is None:
                    break
                count += 1
                rows_read += len(chunk)
                ids_digest(chunk["id"], digest)
                if group.is_main and on_chunk is not None:
                    on_chunk(chunk)
                if position == group.rank:
                    own = chunk  # the other chunks of the round are dropped here: this process keeps only its own
            if own is not None:
                vectors = np.asarray(encode_chunk(own), dtype=np.float32)
                if len(vectors) != len(own):
                    raise ValueError(f"encoding a chunk of {len(own)} rows gave {len(vectors)} vectors")
        except Exception as err:  # noqa: BLE001 - re-raised by `_agree` once every process knows
            error = err
        last_row = first_row + rows_read - 1
        state = {
            "chunks": count,
            "ids": digest.hexdigest(),
            "rows": 0 if own is None else len(own),
            "dim": None if vectors is None else vectors.shape[1],
        }
        states = _agree(group, state, error, f"reading or encoding rows {first_row} to {last_row} of the stream")
        for rank, other in enumerate(states):
            if (other["chunks"], other["ids"]) != (states[0]["chunks"], states[0]["ids"]):
                raise ValueError(
                    f"process {rank} read other rows than process 0 from the stream after row {first_row}: every "
                    "process must read the same stream in the same order (seed any shuffle the same way)"
                )
        if count == 0:
            break
        total_chunks += count
        first_row += rows_read
        dim = _common_dim(states)
        if group.is_main:
            yield vectors
            for rank in range(1, count):
                chunk_vectors = np.empty((states[rank]["rows"], dim), dtype=np.float32)
                for offset, part in _receive_rows(group, rank, states[rank]["rows"], dim):
                    chunk_vectors[offset : offset + len(part)] = part
                yield chunk_vectors
        elif vectors is not None:
            for offset in range(0, len(vectors), _TRANSFER_ROWS):
                _send(group, vectors[offset : offset + _TRANSFER_ROWS])
    if total_chunks == 0:
        raise ValueError("Cannot build an index from an empty corpus.")


def _collect(parts: Iterable[np.ndarray], num_rows: int) -> np.ndarray | None:
    """The arrays of `parts` stacked into one `[num_rows, d]` array, filled as they come (no second copy); `None`
    for no rows."""
    vectors: np.ndarray | None = None
    offset = 0
    for part in parts:
        if vectors is None:
            vectors = np.empty((num_rows, part.shape[1]), dtype=np.float32)
        if part.shape[1] != vectors.shape[1]:
            raise ValueError(
                f"The encoder returned dimension {part.shape[1]} after returning dimension {vectors.shape[1]}."
            )
        vectors[offset : offset + len(part)] = part
        offset += len(part)
    if offset != num_rows:
        raise ValueError(f"encoding {num_rows} rows gave {offset} vectors")
    return vectors


def _agree(group: ShardGroup, state: dict[str, Any], error: BaseException | None, what: str) -> list[dict[str, Any]]:
    """Every process's `state`, on every process, once each knows whether any failed: then this process raises its
    own `error`, or, when another failed, a `RuntimeError` naming that process, `what` it was doing and its error."""
    message = None if error is None else f"{type(error).__name__}: {error}"
    states = group.all_gather({**state, "error": message, "doing": what})
    if error is not None:
        raise error
    for rank, other in enumerate(states):
        if other["error"] is not None:
            raise RuntimeError(
                f"process {rank} failed {other['doing']} (its own traceback says more): {other['error']}"
            )
    return states


def _common_dim(states: list[dict[str, Any]]) -> int | None:
    """The dimension of the vectors every process encoded (processes without rows have none)."""
    dims = {state["dim"] for state in states if state["dim"] is not None}
    if len(dims) > 1:
        per_process = {rank: state["dim"] for rank, state in enumerate(states) if state["dim"] is not None}
        raise ValueError(f"the processes' encoders return vectors of different dimensions: {per_process}")
    return dims.pop() if dims else None


def _send(group: ShardGroup, vectors: np.ndarray) -> None:
    import torch
    import torch.distributed as dist

    dist.send(torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32)).to(group.device), dst=0)


def _receive_rows(group: ShardGroup, rank: int, num_rows: int, dim: int | None) -> Iterator[tuple[int, np.ndarray]]:
    """`(offset, vectors)` of process `rank`'s `num_rows` vectors, `_TRANSFER_ROWS` at a time, as `_send` sent them."""
    import torch
    import torch.distributed as dist

    for offset in range(0, num_rows, _TRANSFER_ROWS):
        buffer = torch.empty((min(_TRANSFER_ROWS, num_rows - offset), dim), dtype=torch.float32, device=group.device)
        dist.recv(buffer, src=rank)
        yield offset, buffer.cpu().numpy()


def _receive_blocks(
    group: ShardGroup, own: np.ndarray | None, rows: list[int], dim: int | None
) -> Iterator[np.ndarray]:
    """The main process's own block, then every other process's, in row order, `_TRANSFER_ROWS` rows at a time."""
    for rank, num_rows in enumerate(rows):
        if rank == group.rank:
            for offset in range(0, num_rows, _TRANSFER_ROWS):
                yield own[offset : offset + _TRANSFER_ROWS]
        else:
            for _, part in _receive_rows(group, rank, num_rows, dim):
                yield part


__all__ = [
    "ShardGroup",
    "close_process_group",
    "encode_blocks",
    "encode_stream",
    "ids_digest",
    "process_group",
    "run_on_main",
    "shard_bounds",
]
