"""Deterministic splits by a salted hash of each example's id: an example's side depends only on its id and the
salt, so a split is the same on every run and machine, and adding or removing other rows never moves an example.

[`split_by_hash`] makes train/test; [`hash_split`] names the train/validation/test split of one id with the same hash,
so that the test part of a three-way split is exactly the test part of `split_by_hash` with the same fraction.
"""

from __future__ import annotations

import hashlib

from datasets import Dataset


def hash_unit(key: str, salt: str) -> float:
    """A stable pseudo-random number in [0, 1) for `key` (unlike `hash()`, identical across runs and machines)."""
    digest = hashlib.sha256(f"{salt}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_by_hash(dataset: Dataset, test_fraction: float, salt: str = "jmlr") -> tuple[Dataset, Dataset]:
    """Split `dataset` into `(train, test)` by a salted SHA-256 hash of its `id` column.

    An example's side depends only on its id and the salt, so the split is the same on every run and machine, and
    adding or removing other rows never moves an example across it. The test part holds about `test_fraction` of
    the rows; both parts keep the original order.
    """
    if not 0.0 <= test_fraction <= 1.0:
        raise ValueError(f"test_fraction must be in [0, 1], got {test_fraction}")
    if "id" not in dataset.column_names:
        raise ValueError(f"split_by_hash needs an 'id' column, got {dataset.column_names}")
    train_indices: list[int] = []
    test_indices: list[int] = []
    for index, example_id in enumerate(dataset["id"]):
        (test_indices if hash_unit(str(example_id), salt) < test_fraction else train_indices).append(index)
    return dataset.select(train_indices), dataset.select(test_indices)


def check_fractions(validation_fraction: float, test_fraction: float) -> None:
    """Raise a `ValueError` naming the argument unless both fractions are in [0, 1] and add up to at most 1."""
    for name, value in (("validation_fraction", validation_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {value}")
    if validation_fraction + test_fraction > 1.0:
        raise ValueError(
            f"validation_fraction + test_fraction must be at most 1, got {validation_fraction} + {test_fraction}"
        )


def hash_split(example_id: str, validation_fraction: float, test_fraction: float, salt: str = "jmlr") -> str:
    """`"test"` when the id's hash is below `test_fraction`, `"validation"` below `test_fraction +
    validation_fraction`, else `"train"`: the three-way split of one id, consistent with [`split_by_hash`]."""
    unit = hash_unit(example_id, salt)
    if unit < test_fraction:
        return "test"
    if unit < test_fraction + validation_fraction:
        return "validation"
    return "train"


__all__ = ["check_fractions", "hash_split", "hash_unit", "split_by_hash"]
