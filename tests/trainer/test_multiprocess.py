"""Joint training in several processes, on CPU, as a GPU user runs DDP: `accelerate launch --multi_gpu --num_processes 2`
starts two processes through torchrun, and with no GPU they train on CPU over gloo. (`accelerate launch --cpu` takes
accelerate's single-process launcher: it would run one process.) Each launch runs `tests/testing_utils/ddp_worker.py`,
which writes every rank's final weights and samples."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.testing_utils.launch import ROOT, launch_two_processes

WORKER = ROOT / "tests" / "testing_utils" / "ddp_worker.py"


def launch(out_dir: Path, *worker_args: str, timeout: int = 240) -> list[dict]:
    """Run the worker on two CPU processes; a hang fails the test at `timeout` instead of blocking the suite."""
    launch_two_processes(WORKER, str(out_dir), *worker_args, timeout=timeout)
    ranks = [torch.load(out_dir / f"rank{rank}.pt", weights_only=False) for rank in range(2)]
    assert [rank["world"] for rank in ranks] == [2, 2]
    return ranks


def assert_same_weights(ranks: list[dict]) -> None:
    first, second = ranks[0]["weights"], ranks[1]["weights"]
    assert first.keys() == second.keys() and first
    different = [name for name in first if not torch.equal(first[name], second[name])]
    assert not different, f"the ranks disagree on {different[:5]}"


def test_joint_training_with_lora_keeps_the_ranks_identical_and_a_tied_rank_does_not_hang(tmp_path):
    # Rank 1's sampled NLLs all tie (undefined agreement) at every step: it must still join every collective.
    ranks = launch(tmp_path, "--peft", "--gradient_checkpointing", "--tie_nlls_on_rank", "1")
    assert_same_weights(ranks)
    names = ranks[0]["weights"].keys()
    assert any("lora_" in name for name in names) and any(name.startswith("retriever.") for name in names)
    # Each rank draws its own documents, from a stream that is the same on every run.
    assert ranks[0]["sampled"] != ranks[1]["sampled"]
    again = launch(tmp_path / "again", "--peft", "--gradient_checkpointing", "--tie_nlls_on_rank", "1")
    assert [rank["sampled"] for rank in again] == [rank["sampled"] for rank in ranks]
    # Metrics are gathered across ranks: both report the same logged values.
    logs = [[entry for entry in rank["log_history"] if "lm_loss" in entry] for rank in ranks]
    assert logs[0] == logs[1] and len(logs[0]) == 3
    assert all("retrieval_agreement" in entry for entry in logs[0])  # rank 0's, since rank 1 has none


@pytest.mark.parametrize("num_context_documents", [0, 2], ids=["sft", "rag-sft"])
def test_the_baselines_run_under_ddp_with_gradient_checkpointing(tmp_path, num_context_documents):
    """λ = 0: the retriever gets no gradient. Trainable, it was an unused parameter for DDP's reducer."""
    ranks = launch(
        tmp_path,
        "--retrieval_loss_weight", "0", "--num_context_documents", str(num_context_documents),
        "--gradient_checkpointing",
    )  # fmt: skip
    assert_same_weights(ranks)
    assert not any(name.startswith("retriever.") for name in ranks[0]["weights"])  # frozen, not trained


def test_candidate_refresh_under_ddp(tmp_path):
    """The main process refreshes the candidates, the other waits and trains on the same ones."""
    ranks = launch(tmp_path, "--refresh_every", "1")
    assert_same_weights(ranks)
    assert ranks[0]["overrides"] == ranks[1]["overrides"] and set(ranks[0]["overrides"]) == {"q1", "q2"}
    assert sorted((tmp_path / "out" / "refreshed_candidates").iterdir())  # written once, by the main process


def test_a_skipped_last_micro_batch_under_gradient_accumulation_keeps_the_ranks_identical(tmp_path):
    """Gradient accumulation under DDP: the earlier micro-batches run under `no_sync`, only the last one all-reduces.
    A NaN loss on rank 0 at that last micro-batch (`nonfinite_loss="skip_step"`) skips it on both ranks; were the
    optimizer step then taken, each rank would apply its own unreduced gradients and the replicas would diverge. The
    whole optimizer step is skipped on every rank instead: after step 1 no weight has changed, and step 2 trains."""
    ranks = launch(
        tmp_path,
        "--gradient_accumulation_steps", "2", "--nonfinite_loss", "skip_step", "--nan_at_micro_batch", "2",
        "--nan_on_rank", "0", "--max_steps", "1",
    )  # fmt: skip
    assert_same_weights(ranks)
    assert all(torch.equal(ranks[0]["initial"][name], ranks[0]["weights"][name]) for name in ranks[0]["weights"])
    logs = [entry for entry in ranks[0]["log_history"] if "loss" in entry and "train_runtime" not in entry]
    assert logs and logs[-1]["nonfinite_steps_skipped"] == 1.0

    ranks = launch(
        tmp_path / "two_steps",
        "--gradient_accumulation_steps", "2", "--nonfinite_loss", "skip_step", "--nan_at_micro_batch", "2",
        "--nan_on_rank", "0", "--max_steps", "2",
    )  # fmt: skip
    assert_same_weights(ranks)
    assert any(not torch.equal(ranks[0]["initial"][name], ranks[0]["weights"][name]) for name in ranks[0]["weights"])


def test_candidate_refresh_needs_no_filesystem_shared_between_the_processes(tmp_path):
    """Nodes of a multi-node run need not share a filesystem: here each rank has its own output_dir, as each node
    would. The main process's refreshed candidates reach the other over torch.distributed, integer row ids included,
    and only the main process writes them to disk (for a resume)."""
    ranks = launch(tmp_path, "--refresh_every", "1", "--output_dir_per_rank", "--integer_ids")
    assert_same_weights(ranks)
    assert ranks[0]["overrides"] == ranks[1]["overrides"] and set(ranks[0]["overrides"]) == {"0", "1"}
    assert sorted((tmp_path / "rank0" / "out" / "refreshed_candidates").iterdir())
    assert not (tmp_path / "rank1" / "out" / "refreshed_candidates").exists()


def test_the_recipes_index_and_refresh_are_encoded_by_every_rank_without_a_shared_filesystem(tmp_path):
    """The recipe's initial index and `--refresh_index_steps` refresh under DDP: each rank re-encodes its share of the
    15-passage corpus (8 + 7 rows; no rank waits alone on the whole corpus) at the start and at the refreshes of steps
    1 and 2, the main process alone writes the index into its own output_dir, and both ranks train on the same
    refreshed candidates and the same prepared rows, received over torch.distributed (each rank has its own
    output_dir, as nodes without a shared filesystem would)."""
    ranks = launch(tmp_path, "--index_refresh", "--refresh_every", "1", "--output_dir_per_rank")
    assert_same_weights(ranks)
    assert [rank["initial_encoded"] for rank in ranks] == [8, 7]
    assert [rank["initial_index"] for rank in ranks] == ["DocumentIndex", "NoneType"]
    assert [sum(rank["encoded"]) for rank in ranks] == [3 * 8, 3 * 7]  # the initial build and 2 refreshes
    assert [rank["index_on_disk"] for rank in ranks] == [True, False]
    assert [rank["prepared_on_disk"] for rank in ranks] == [True, False]
    assert ranks[0]["prepared"] == ranks[1]["prepared"] and len(ranks[0]["prepared"]["train"]) == 2
    assert ranks[0]["overrides"] == ranks[1]["overrides"] and set(ranks[0]["overrides"]) == {"q1", "q2"}
    assert all(len(candidates) == 4 for candidates in ranks[0]["overrides"].values())
    assert sorted((tmp_path / "rank0" / "out" / "refreshed_candidates").iterdir())
