"""The one check of an evaluation's settings, shared by `jmlr evaluate` (its flags, before anything loads) and
[`jmlr_hf.evaluation.evaluate_dataset`] (its arguments, with the model's config filling what is not given).

A count that cannot be meant is an error naming the flag or the argument, never a silent fallback: `batch_size=0`
used to fail inside `range()`, a negative one with an `AttributeError`, `num_candidates=0` fell back to the model's
default, `num_documents=-1` ran closed book, and more documents than candidates gave fewer documents than asked.
"""

from __future__ import annotations

from ..models.configuration_jmlr import check_count


def check_evaluation_settings(
    *,
    batch_size: object = 16,
    num_candidates: object = None,
    num_documents: object = None,
    max_new_tokens: object = None,
    config_candidates: int | None = None,
    config_documents: int | None = None,
    prefix: str = "",
) -> None:
    """Raise a `TypeError` / `ValueError` starting with the flag (`prefix` + name, e.g. `--batch_size`) of the first
    bad setting, in this order: `batch_size` >= 1, `num_candidates` >= 1, `num_documents` >= 0, `max_new_tokens`
    >= 1 (each a whole number, `None` meaning the default); then `num_documents` <= `num_candidates`, each taken from the model's config (`config_documents`,
    `config_candidates`) when not given and the config is known.
    """
    check_count(batch_size, f"{prefix}batch_size", 1)
    for value, name, minimum in ((num_candidates, "num_candidates", 1), (num_documents, "num_documents", 0)):
        if value is not None:
            check_count(value, f"{prefix}{name}", minimum)
    if max_new_tokens is not None:
        check_count(max_new_tokens, f"{prefix}max_new_tokens", 1)
    documents, documents_from = (
        (num_documents, "") if num_documents is not None else (config_documents, " (the model's config)")
    )
    candidates, candidates_from = (
        (num_candidates, "") if num_candidates is not None else (config_candidates, " (the model's config)")
    )
    if documents is not None and candidates is not None and documents > candidates:
        raise ValueError(
            f"{prefix}num_documents {documents}{documents_from} is more than {prefix}num_candidates "
            f"{candidates}{candidates_from}: the documents in the prompt are the best of the candidates"
        )


__all__ = ["check_evaluation_settings"]
