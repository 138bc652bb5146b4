"""Publishing to the Hugging Face Hub (and pulling whole repositories): JMLR models, their document indices, data sets.

Every push stages the complete set of files in a local folder first and then uploads it as ONE commit
(`HfApi.upload_folder`). A failure at any point — a network error while LFS files upload, a rejected token, a
missing repository — therefore leaves the repository exactly as it was, and running the same push again is safe.
A model push then makes a second commit that changes only README.md: its snippets pin `revision=` to the first
commit, whose sha did not exist before (a failure there leaves a published model whose card says `"main"`).
Pushing over an existing repository adds a commit; files that are not part of the upload stay unless
`delete_patterns` asks otherwise.

* a model repository holds the remote code (`configuration_jmlr.py`, `modeling_jmlr.py`, `auto_map` in the config),
  the generator (merged full weights, or a LoRA adapter in `generator_adapter/` plus the base model's id), the
  retriever, both tokenizers (the retriever's in `retriever_tokenizer/`) and a model card;
* an index is a data set repository (`index.faiss`, `documents.parquet`, `index_config.json`, a card); the model's
  config records its id and commit (`index_repo_id`, `index_revision`), so that one model id gives both;
* a data set repository holds `data/<split>-00000-of-00001.parquet` and a data set card (see
  `jmlr_hf.data.medqa_reason`).

Loading goes the other way and needs nothing of this module: a model by `JMLRForCausalLM.from_pretrained` (or
`jmlr_hf.models.load_jmlr_checkpoint` with its tokenizers), an index by `jmlr_hf.retrieval.load_index`.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from httpx2 import HTTPError  # the HTTP client of huggingface_hub 2.x; network errors derive from it
from huggingface_hub import HfApi, snapshot_download
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

from ..models.utils import (
    GeneratorWeights,
    adapter_base_model,
    has_generator_adapter,
    load_jmlr_checkpoint,
    save_model,
)
from ..retrieval.index import CONFIG_FILE, DOCUMENTS_FILE, INDEX_FILE, INDEX_REPO_TYPE, DocumentIndex
from ..utils.atomic import atomic_directory
from .model_card import eval_results_from_evaluation, render_index_card, render_model_card

logger = logging.getLogger(__name__)


class HubError(RuntimeError):
    """A push or pull failed; the message says why and what state it left (a push never half-publishes)."""


@dataclass
class PushResult:
    """Where a push went: the repository, the commit it made, and (for a model) the index it records."""

    repo_id: str
    repo_type: str
    commit: str
    url: str
    index_repo_id: str | None = None
    index_revision: str | None = None


_PUSH_CONSEQUENCE = "Nothing was published (a push is one commit); retrying is safe."


def _hub_failure(err: BaseException | None) -> BaseException | None:
    """The HTTP or network error behind `err`, if any (huggingface_hub wraps a failed LFS upload in a RuntimeError)."""
    while err is not None:
        if isinstance(err, (HTTPError, OSError)):
            return err
        err = err.__cause__
    return None


def _why(err: BaseException) -> str:
    if isinstance(err, RepositoryNotFoundError):
        return "the repository does not exist or your token cannot see it"
    if isinstance(err, RevisionNotFoundError):
        return "no such branch or revision"
    status = err.response.status_code if isinstance(err, HfHubHTTPError) and err.response is not None else None
    if status in (401, 403):
        return f"the Hub refused it (HTTP {status}): the token was rejected or has no write access (set HF_TOKEN)"
    return f"{type(err).__name__}: {err}".strip()


@contextmanager
def _explained(action: str, repo_id: str, consequence: str = _PUSH_CONSEQUENCE) -> Iterator[None]:
    """Turn Hub and network errors into one message that says what failed, why, and what state it left."""
    try:
        yield
    except Exception as err:
        cause = _hub_failure(err)
        if cause is None:
            raise
        raise HubError(f"{action} {repo_id} failed: {_why(cause)}. {consequence}") from err


def _upload(
    folder: Path,
    repo_id: str,
    repo_type: str,
    *,
    private: bool,
    revision: str | None,
    commit_message: str,
    delete_patterns: Sequence[str] | None,
    token: str | None,
) -> PushResult:
    api = HfApi(token=token)
    with _explained("Pushing to", repo_id):
        api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
        if revision not in (None, "main"):
            api.create_branch(repo_id, repo_type=repo_type, branch=revision, exist_ok=True)
        info = api.upload_folder(
            repo_id=repo_id,
            repo_type=repo_type,
            folder_path=folder,
            revision=revision,
            commit_message=commit_message,
            delete_patterns=list(delete_patterns) if delete_patterns else None,
        )
    logger.info("Pushed %s to %s (commit %s)", folder, info.commit_url, info.oid)
    return PushResult(repo_id=repo_id, repo_type=repo_type, commit=info.oid, url=info.commit_url)


# --------------------------------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------------------------------


def push_model(
    model: str | os.PathLike[str] | Any,
    repo_id: str,
    *,
    tokenizer=None,
    retriever_tokenizer=None,
    generator_weights: GeneratorWeights = "merged",
    base_model: str | None = None,
    base_revision: str | None = None,
    index: str | os.PathLike[str] | None = None,
    index_repo_id: str | None = None,
    index_revision: str | None = None,
    push_index_from_config: bool = True,
    eval_results: Sequence[Any] = (),
    datasets: Sequence[str] = (),
    license: str = "apache-2.0",
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    delete_patterns: Sequence[str] | None = None,
    token: str | None = None,
) -> PushResult:
    """Publish a JMLR model (a saved folder, or a model with its two tokenizers) to `repo_id` in one commit.

    Args:
        generator_weights: `"merged"` (full weights) or `"adapter"` (LoRA adapter + `base_model` reference).
        base_model: the Hub id of the base generator, for `"adapter"` (required when the adapter records a local
            folder, which nobody else could load).
        index: a local index folder to publish as its own repository (`index_repo_id`, default `<repo_id>-index`)
            before the model; or a Hub id of an index already published. The model's config records the index's
            repository and commit. By default the index the config already records is used: a local folder is
            published, a Hub id is kept (`push_index_from_config=False` drops a local one instead).
        eval_results: `jmlr evaluate` result files/dicts or `EvalResult`s for the card's `model-index`.
        delete_patterns: files of the repository to delete in the same commit (default: none).
    """
    from huggingface_hub import EvalResult

    if isinstance(model, (str, os.PathLike)):
        model, tokenizer, retriever_tokenizer = load_jmlr_checkpoint(model)
    if tokenizer is None or retriever_tokenizer is None:
        raise ValueError("push_model needs the model's tokenizer and retriever_tokenizer (or a saved model folder)")
    config = model.config
    if generator_weights == "adapter":
        recorded = adapter_base_model(model, base_model) if has_generator_adapter(model) else base_model
        if recorded is not None and os.path.isdir(recorded):
            raise ValueError(
                f"The adapter's base model is the local folder {recorded}, which Hub users cannot load: pass the "
                "base model's Hub id (base_model=... / --base-model)"
            )
    flat_results: list[EvalResult] = []
    for item in eval_results:
        flat_results.extend([item] if isinstance(item, EvalResult) else eval_results_from_evaluation(item))

    index_source = index if index is not None else (config.index_repo_id if push_index_from_config else None)
    pushed_index = None
    if index_source is not None and os.path.isdir(index_source):
        pushed_index = push_index(
            index_source,
            index_repo_id or f"{repo_id}-index",
            model_repo_id=repo_id,
            private=private,
            token=token,
        )
        config.index_repo_id, config.index_revision = pushed_index.repo_id, pushed_index.commit
    elif index_source is not None:
        config.index_repo_id = str(index_source)
        config.index_revision = index_revision or _current_commit(str(index_source), INDEX_REPO_TYPE, token)
    else:
        config.index_repo_id = config.index_revision = None

    with tempfile.TemporaryDirectory(prefix="jmlr-push-") as staging:
        folder = Path(staging) / "model"
        save_model(
            model,
            tokenizer,
            retriever_tokenizer,
            folder,
            generator_weights=generator_weights,
            base_model=base_model,
            base_revision=base_revision,
        )
        saved_config = type(config).from_pretrained(folder)
        card = render_model_card(saved_config, repo_id, eval_results=flat_results, datasets=datasets, license=license)
        card.save(folder / "README.md")
        result = _upload(
            folder,
            repo_id,
            "model",
            private=private,
            revision=revision,
            commit_message=commit_message or f"Upload JMLR model ({generator_weights} generator weights)",
            delete_patterns=delete_patterns,
            token=token,
        )
        pinned = render_model_card(
            saved_config,
            repo_id,
            eval_results=flat_results,
            datasets=datasets,
            license=license,
            revision=result.commit,
        )
        _pin_card(pinned, repo_id, revision=revision, token=token)
    result.index_repo_id, result.index_revision = config.index_repo_id, config.index_revision
    return result


def _pin_card(card, repo_id: str, *, revision: str | None, token: str | None) -> None:
    """Replace the card of the commit just made with one whose snippets pin `revision=` to that commit.

    `trust_remote_code` runs the repository's code, so the card should load the commit it was published with; its
    sha exists only once the commit does, hence this second commit, which changes README.md alone (the pinned commit
    has the same code and weights). If it fails, the model is published all the same and its card says
    `revision="main"`.
    """
    try:
        with _explained("Pinning the card's revision in", repo_id, "The model itself was published."):
            HfApi(token=token).upload_file(
                path_or_fileobj=str(card).encode("utf-8"),
                path_in_repo="README.md",
                repo_id=repo_id,
                revision=revision,
                commit_message="Model card: pin revision= to the commit of the upload",
            )
    except HubError as err:
        logger.warning("%s", err)


def _current_commit(repo_id: str, repo_type: str, token: str | None) -> str:
    with _explained("Reading", repo_id, "Nothing was published."):
        return HfApi(token=token).repo_info(repo_id, repo_type=repo_type).sha


# --------------------------------------------------------------------------------------------------------------------
# Indices
# --------------------------------------------------------------------------------------------------------------------


def push_index(
    index_dir: str | os.PathLike[str],
    repo_id: str,
    *,
    model_repo_id: str | None = None,
    license: str | None = None,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    delete_patterns: Sequence[str] | None = None,
    token: str | None = None,
) -> PushResult:
    """Publish a saved `DocumentIndex` folder as a data set repository, in one commit, with its card.

    The folder is loaded first (checksums verified), so a corrupt index is never published.
    """
    index = DocumentIndex.load(index_dir)
    with tempfile.TemporaryDirectory(prefix="jmlr-push-") as staging:
        folder = Path(staging)
        for name in (INDEX_FILE, DOCUMENTS_FILE, CONFIG_FILE):
            shutil.copy2(Path(index_dir) / name, folder / name)
        render_index_card(index, repo_id, model_repo_id=model_repo_id, license=license).save(folder / "README.md")
        return _upload(
            folder,
            repo_id,
            INDEX_REPO_TYPE,
            private=private,
            revision=revision,
            commit_message=commit_message or f"Upload JMLR document index ({len(index)} documents)",
            delete_patterns=delete_patterns,
            token=token,
        )


# --------------------------------------------------------------------------------------------------------------------
# Data sets and downloads
# --------------------------------------------------------------------------------------------------------------------


def push_dataset_folder(
    folder: str | os.PathLike[str],
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    delete_patterns: Sequence[str] | None = None,
    token: str | None = None,
) -> PushResult:
    """Publish a data set folder in the Hub layout (`data/*.parquet` + `README.md`) as one commit."""
    folder = Path(folder)
    if not (folder / "README.md").exists() or not any((folder / "data").glob("*.parquet")):
        raise ValueError(f"{folder} is not a data set folder: it needs README.md and data/*.parquet")
    return _upload(
        folder,
        repo_id,
        "dataset",
        private=private,
        revision=revision,
        commit_message=commit_message or "Upload data set",
        delete_patterns=delete_patterns,
        token=token,
    )


def pull(
    repo_id: str,
    local_dir: str | os.PathLike[str],
    *,
    repo_type: Literal["model", "dataset"] = "model",
    revision: str | None = None,
    token: str | None = None,
) -> Path:
    """Download a repository into `local_dir`, crash-safely (an interrupted pull leaves no partial folder)."""
    consequence = f"{local_dir} was left as it was."
    with _explained("Pulling", repo_id, consequence), atomic_directory(local_dir) as tmp:
        snapshot_download(repo_id, repo_type=repo_type, revision=revision, local_dir=tmp, token=token)
        shutil.rmtree(Path(tmp) / ".cache", ignore_errors=True)  # download bookkeeping, not repository content
    return Path(local_dir)


__all__ = [
    "HubError",
    "PushResult",
    "pull",
    "push_dataset_folder",
    "push_index",
    "push_model",
]
